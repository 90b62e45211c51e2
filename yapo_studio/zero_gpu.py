"""``spaces.GPU`` on Hugging Face ZeroGPU Spaces, a no-op everywhere else.

ZeroGPU attaches a GPU only inside functions decorated with ``@spaces.GPU``; keep each such call
short (a chunk of training steps, one generation). Outside a Space the ``spaces`` package is
absent and the decorator returns the function unchanged, so the same app runs locally.
"""

from __future__ import annotations

import functools

from .settings import current


def on_zero_gpu() -> bool:
    """On a Hugging Face ZeroGPU Space (``SPACES_ZERO_GPU``)."""
    return current().zero_gpu


def zero_gpu_active() -> bool:
    """On a ZeroGPU Space with the ``spaces`` package: ``@gpu`` calls run in worker processes."""
    if not on_zero_gpu():
        return False
    try:
        import spaces  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


def gpu(fn=None, *, duration=None):
    """Decorate GPU work: ``@gpu``, ``@gpu(duration=120)``, or ``@gpu(duration=f)`` where ``f``
    takes the call's arguments and returns seconds (``spaces.GPU``'s dynamic duration)."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        spaces = None

    def wrap(f):
        if spaces is None:
            return f
        decorated = spaces.GPU(duration=duration)(f) if duration else spaces.GPU(f)
        return functools.wraps(f)(decorated)

    return wrap(fn) if fn is not None else wrap
