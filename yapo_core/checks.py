"""Checks of the plain values users pass in (numbers, seeds, multipliers, folders), one function
per kind, each raising :class:`~.errors.SettingsError` with the name, the value and what is
accepted. Settings classes and functions call these at their boundary instead of repeating them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable

from .errors import SettingsError

MAX_SEED = 2**63 - 1
MAX_MULTIPLIER = 1000.0
"""The largest multiplier in size: far beyond any useful steering, and small enough that the
scaled vector stays finite in float32 and bfloat16."""


def whole(name: str, value, least: int, most: int | None = None) -> int:
    """``value`` as an int in ``[least, most]``; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least or (most is not None and value > most):
        bound = f"between {least} and {most}" if most is not None else f"of at least {least}"
        raise SettingsError(f"{name}={value!r} must be a whole number {bound}.")
    return value


def number(name: str, value, above: float | None = None, least: float | None = None,
           most: float | None = None) -> float:
    """``value`` as a finite float, ``> above`` / ``>= least`` / ``<= most`` where given."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (above is None or value > above) and (least is None or value >= least) and (most is None or value <= most)
    if not ok:
        parts = [f"above {above:g}" if above is not None else "", f"at least {least:g}" if least is not None else "",
                 f"at most {most:g}" if most is not None else ""]
        bound = " and ".join(p for p in parts if p)
        raise SettingsError(f"{name}={value!r} must be a finite number{' ' + bound if bound else ''}.")
    return float(value)


def seed(value, name: str = "seed") -> int:
    """A random seed: a whole number from 0 to 2**63 - 1."""
    return whole(name, value, 0, MAX_SEED)


def multipliers(values: Iterable, name: str = "multipliers") -> list[float]:
    """Multipliers as floats: at least one, each finite and at most :data:`MAX_MULTIPLIER` in size."""
    if isinstance(values, (str, bytes)) or values is None:
        raise SettingsError(f"{name} must be a list of numbers, not {values!r}; e.g. [0, 1].")
    out = []
    for m in values:
        try:
            m = float(m)
        except (TypeError, ValueError):
            raise SettingsError(f"multiplier {m!r} is not a number; give numbers such as 0, 0.5, 1.") from None
        if not math.isfinite(m) or abs(m) > MAX_MULTIPLIER:
            raise SettingsError(f"multiplier {m!r} must be a finite number between -{MAX_MULTIPLIER:g} and "
                                f"{MAX_MULTIPLIER:g}.")
        out.append(m)
    if not out:
        raise SettingsError(f"give at least one multiplier, e.g. {name}=[0, 1].")
    return out


def folder(name: str, value, probe: bool = True) -> Path | None:
    """A folder to write into: None, or a path that is a folder or does not exist yet (and whose
    nearest existing parent is a folder); with ``probe``, one where a file can be made
    (:func:`unwritable`). A folder that may only be read from (a finished activation cache on
    read-only storage) is checked without it."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise SettingsError(f"{name}={value!r} must be a folder path.")
    path = Path(value).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == path else f"is inside {str(existing)!r}, which is a file"
        raise SettingsError(f"{name}={str(value)!r} {where}; give a folder.")
    problem = unwritable(existing or Path(".")) if probe else None
    if problem:
        raise SettingsError(f"{name}={str(value)!r} cannot be written ({problem}); choose another folder.")
    return path


def unwritable(folder: Path) -> str | None:
    """Why no file can be made in the existing ``folder``, or None when one can: found by making
    (and removing) one, since permissions alone miss read-only mounts and places such as ``/proc``
    where even root cannot write. A full disk still takes a file this small."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"{str(folder)!r}: {exc.strerror or exc}"
    return None


def _umask() -> int:
    """This process's umask, read without setting it (``os.umask`` sets it for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def made_as_usual(path: str | os.PathLike) -> None:
    """Give ``path`` the modes a file or folder made by ``open``/``mkdir`` gets (the umask's), where
    ``tempfile`` made it owner-only; a file system without modes is left as it is."""
    try:
        os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())
    except OSError:
        pass
