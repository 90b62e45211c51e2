"""The demo build in a process of its own, for a program that does other torch work meanwhile.

A build is deterministic from its seed (:func:`.world.build_demo_world`) only while nothing else
in its process touches torch's global random generator or its thread count: model and SAE
initialisation draw from that generator, and the thread count sets how float sums are split.
In a server with several sessions, another session's generation (which seeds the generator),
an SAE being loaded (which initialises one) or a training run can do either at any moment, and
the world built would silently be another model than the stored one. A child process has its own
generator and threads; its progress bars are passed on as this process's own (so a page that
tracks tqdm shows them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import deque
from pathlib import Path

from tqdm.auto import tqdm

from .. import checks
from ..errors import YapoError
from .world import DemoWorld, load_demo_world

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds the ``yapo_core`` package."""
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BAR = re.compile(r"^(?P<desc>[^:|]+):\s+\d+%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)")
"""A tqdm bar's line: ``training demo LM:  83%|████▎ | 1496/1800 [05:54<00:43, ...]``."""


def parse_bar(line: str) -> tuple[str, int, int] | None:
    """``(description, done, total)`` of a tqdm progress line, or None for any other line."""
    match = _BAR.match(_ANSI.sub("", line).strip())
    if match is None:
        return None
    return match["desc"].strip(), int(match["n"]), int(match["total"])


class _Bars:
    """This process's tqdm bars mirroring a child's, one per description."""

    def __init__(self, enabled: bool):
        self.enabled, self.bars = enabled, {}

    def show(self, desc: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(desc)
        if bar is None or bar.total != total or done < bar.n:  # a new bar under an old name starts afresh
            if bar is not None:
                bar.close()
            bar = self.bars[desc] = tqdm(total=total, desc=desc, leave=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def build_demo_world_isolated(cache_dir: str | os.PathLike | None = None, seed: int = 0, size: str = "full",
                              progress: bool = True) -> DemoWorld:
    """The demo world of ``seed`` and ``size``, built with ``yapo demo build`` in a child process
    (or reused when finished): the same files as :func:`.world.build_demo_world` in a quiet
    process, whatever this process does meanwhile. Raises :class:`YapoError` with the end of the
    child's output when the build fails."""
    checks.whole("seed", seed, 0, 2**32 - 1)
    world = load_demo_world(cache_dir, seed, size)
    if world is not None:
        return world
    command = [sys.executable, "-m", "yapo_core", "demo", "build", "--seed", str(seed), "--size", size]
    if cache_dir is not None:
        command += ["--cache-dir", str(Path(cache_dir).expanduser())]
    bars, tail = _Bars(progress), deque(maxlen=20)
    # the child imports this very yapo_core, installed or not (``python app.py`` from another folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)}
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                          errors="replace", env=env) as child:
        pending = ""
        try:
            while chunk := child.stderr.read(256):
                *lines, pending = re.split(r"[\r\n]", pending + chunk)
                for line in lines:
                    bar = parse_bar(line)
                    if bar is not None:
                        bars.show(*bar)
                    elif line.strip():
                        tail.append(_ANSI.sub("", line).rstrip())
            if pending.strip():
                tail.append(_ANSI.sub("", pending).rstrip())
        except BaseException:  # this process stops (an interrupt): the build stops with it, unfinished
            child.kill()
            raise
        finally:
            bars.close()
        code = child.wait()
    world = load_demo_world(cache_dir, seed, size)
    if code != 0 or world is None:
        said = "\n".join(tail) or "(no output)"
        raise YapoError(f"building the demo world ({' '.join(command[1:])}) failed with exit code {code}:\n{said}")
    return world
