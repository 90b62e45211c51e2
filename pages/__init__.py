"""The app's pages, one module per page; each builds its components and wires its callbacks, and
calls :mod:`yapo_core` only. ``app.py`` assembles them."""
