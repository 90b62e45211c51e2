"""Run independent measurements on one demo world in worker processes, one thread each.

The demo model is small enough that a training step is bound by per-operation overhead, not by
arithmetic: a second thread barely speeds one run up, while a second process running another
culture's vectors doubles the throughput on 2 cores. :func:`run` gives each task (a function of the
world, its model, tokenizer and SAE, plus the task's own arguments) to the next free worker and
returns the results in the order of the tasks, so a report does not depend on ``jobs``. With
``jobs=1`` the tasks run here, one after another, on the world already loaded.

Each worker loads the world from the demo cache (built once by the parent, so nothing is built
twice) and runs torch on one thread. Vectors are seeded per run, so a task's figures are the same
whichever worker runs it, up to the float rounding of one thread against several.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

_LOADED: tuple | None = None


def load(cache_dir: str | None, seed: int, size: str, knobs: dict) -> tuple:
    """The finished world at ``cache_dir`` (built on first use), its model, tokenizer and SAE, on the CPU."""
    from yapo_core.demo import build_demo_world
    from yapo_core.models import load_model
    from yapo_core.saes import load_sae

    world = build_demo_world(cache_dir, seed=seed, size=size, progress=False, knobs=knobs)
    model, tokenizer = load_model(world.model_dir, device="cpu")
    return world, model, tokenizer, load_sae(path=world.sae_dir, device="cpu")


def _exit_with(parent: int, every: float = 2.0) -> None:
    """End this worker once ``parent`` is no longer its parent: a killed parent (``kill PID``, no
    Ctrl-C to the whole process group) would otherwise leave its pool's workers computing."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _start(where: tuple) -> None:
    global _LOADED
    import torch

    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    torch.set_num_threads(1)
    _LOADED = load(*where)


def _call(task: tuple[Callable, tuple]) -> Any:
    fn, args = task
    return fn(*_LOADED, *args)


def run(tasks: Sequence[tuple[Callable, tuple]], jobs: int, loaded: tuple, where: tuple,
        cost: Callable[[tuple[Callable, tuple]], float] | None = None) -> list:
    """The result of each ``(fn, args)`` in ``tasks``, as ``fn(world, model, tokenizer, sae, *args)``,
    in the tasks' order. ``loaded`` is this process's ``(world, model, tokenizer, sae)``, used when
    ``jobs`` is 1; ``where`` is :func:`load`'s arguments, from which each of ``jobs`` workers loads
    its own copy. ``fn`` must be importable by name (a module-level function). ``cost`` (of a task)
    orders the work, the costliest first, so that no worker is left alone with a long one at the end."""
    if jobs < 1:
        raise ValueError(f"jobs={jobs}: use 1 (run here) or more worker processes")
    order = sorted(range(len(tasks)), key=lambda i: -cost(tasks[i])) if cost else list(range(len(tasks)))
    if jobs == 1 or len(tasks) <= 1:
        done = [tasks[i][0](*loaded, *tasks[i][1]) for i in order]
    else:
        os.environ["OMP_NUM_THREADS"] = "1"  # read by each worker's torch before it starts its threads
        context = multiprocessing.get_context("spawn")  # a fork would copy this process's torch threads' state
        with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=context, initializer=_start,
                                 initargs=(where,)) as pool:
            done = list(pool.map(_call, [tasks[i] for i in order]))
    out: list = [None] * len(tasks)
    for i, result in zip(order, done):
        out[i] = result
    return out
