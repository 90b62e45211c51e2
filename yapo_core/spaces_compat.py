"""``spaces.GPU`` on Hugging Face ZeroGPU Spaces, a no-op everywhere else.

ZeroGPU attaches a GPU only inside functions decorated with ``@spaces.GPU``; keep each such call
short (a chunk of training steps, one generation). Outside a Space the ``spaces`` package is
absent and the decorator returns the function unchanged, so the same app runs locally.
"""

from __future__ import annotations

import functools
import os


def on_zero_gpu() -> bool:
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def gpu(fn=None, *, duration: int | None = None):
    """Decorate GPU work: ``@gpu`` or ``@gpu(duration=120)``."""
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
