"""Where a demo world is built: one build of a world at a time (a lock beside it), in a staging
folder of its own, moved into place when whole."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from ..errors import YapoError

COMPLETE_MARKER = "COMPLETE"
"""The file a finished world holds last (its absence marks a build that did not finish)."""


@contextmanager
def no_transformers_bars():
    """No progress bar from transformers (its "Writing model shards") while a quiet build saves."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def lock_path(root: Path) -> Path:
    """The lock file of the world at ``root``: beside it, so that it outlives the world's folder."""
    return root.parent / f".{root.name}.lock"


@contextmanager
def one_build_at_a_time(root: Path):
    """Hold the lock of the world at ``root`` (a file beside it; processes, containers that share
    the cache and threads alike wait for it), and remove what a build that was killed left."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(root), "a") as lock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock between processes
            fcntl = None
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for stale in root.parent.glob(f".{root.name}.building-*") if fcntl is not None else ():
                shutil.rmtree(stale, ignore_errors=True)  # with the lock held, no build of it runs but this one
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)


def build_running(root: Path) -> bool:
    """Whether a build of the world at ``root`` holds its lock now, in any process. The probe asks
    for a shared lock, which only a build's exclusive one refuses (two probes never see each
    other), on a read-only handle (a cache it cannot write is read, not an error); False where locks
    between processes are not available (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    try:
        with open(lock_path(root), "rb") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
            return False
    except OSError:  # no lock file yet, or none this process may open
        return False


_WORLD_ENTRIES = {"model", "sae", "tasks", "stats.json", COMPLETE_MARKER}


def replace_world(staging: Path, root: Path) -> None:
    """Move a finished build to ``root``, removing an older world there but nothing else (a link
    there is replaced, and the world it points to is left as it is)."""
    if root.is_symlink():
        root.unlink()
    elif root.exists():
        unknown = sorted(p.name for p in root.iterdir() if p.name not in _WORLD_ENTRIES)
        if unknown:
            raise YapoError(
                f"cannot build the demo world into {str(root)!r}: it holds files the build did not "
                f"write ({', '.join(unknown[:5])}); choose an empty or new folder."
            )
        (root / COMPLETE_MARKER).unlink(missing_ok=True)
        shutil.rmtree(root)
    os.replace(staging, root)
