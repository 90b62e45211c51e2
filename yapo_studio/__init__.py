"""The app's side of YaPO Studio: per-browser sessions, the preset catalogue, the shared model store,
tasks and uploads, background runs, and the environment settings, over the :mod:`yapo_core`
library. The Gradio pages (``pages/``) call only this package and the core."""
