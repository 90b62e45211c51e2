"""Fair sharing: how long a short generation takes while a training run uses the same model.

The app shares one loaded model between its sessions; a training run takes the model's lock for
one step at a time. This script loads the demo world the way the app does (a
:class:`yapo_studio.session.Session`, the demo preset and a demo task), trains a first short
vector, and times a short steered generation (the Compare page's call: unsteered and steered, a
few tokens) alone, then again while a second run trains, and prints the slowdown ratio (goal: at
most 3x). Requests arrive at random moments (a seeded pause of up to one training step between
them), as users' clicks do.

A training step runs beside the requests that arrive while it runs (hooks act only in their own
thread), and the next step waits for them; only a step whose SAE keeps state between encode and
decode holds the model, first come, first served (:class:`yapo_studio.fair_lock.FairLock`).

    python scripts/benchmark_sharing.py                    # the demo world of $YAPO_DEMO_SIZE (default full)
    python scripts/benchmark_sharing.py --engine simple    # the straightforward engine's steps

Writes the figures as Markdown and JSON (``--out``, default ``assets/results/sharing.md``).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

from report import write_report  # scripts/report.py

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "assets" / "results" / "sharing.md"


def timed_generation(session, label: str, prompt: str, tokens: int) -> float:
    start = time.perf_counter()
    for _ in session.generate_stream(label, prompt, [0.0, 1.0], max_new_tokens=tokens):
        pass
    return time.perf_counter() - start


def measure(args) -> dict:
    from yapo_studio.catalog import load_catalog
    from yapo_studio.session import Session
    from yapo_studio.settings import current
    from yapo_studio.tasks import TaskSpec, demo_task_kinds

    catalog = load_catalog(current().presets_file)
    session = Session(catalog=catalog)
    preset = next(p for p in catalog.presets if p.demo)
    session.load_preset(preset)
    task_name = args.task or next(iter(demo_task_kinds()))
    task = session.load_task(TaskSpec(source="demo", name=task_name))
    first = session.start_run(session.default_config(max_steps=args.first_steps), name="first")
    first.join()
    if first.status != "finished":
        sys.exit(f"the first run did not finish: {first.describe()}")
    prompt = task.test.pairs[0].prompt
    timed_generation(session, "first", prompt, args.tokens)  # warm-up
    alone = [timed_generation(session, "first", prompt, args.tokens) for _ in range(args.repeats)]

    run = session.start_run(session.default_config(max_steps=100_000, engine=args.engine), name="background")
    while run.step < 3:  # past tokenising and caching: the run is stepping
        if not run.active:
            sys.exit(f"the background run ended early: {run.describe()}")
        time.sleep(0.05)
    steps_before, start = run.step, time.perf_counter()
    pause = random.Random(0)
    during = []
    for _ in range(args.repeats):
        time.sleep(pause.uniform(0, run.history[-1].step_time))
        during.append(timed_generation(session, "first", prompt, args.tokens))
    steps_during, seconds = run.step - steps_before, time.perf_counter() - start
    run.stop()
    run.join()
    step_seconds = statistics.median(m.step_time for m in run.history[3:]) if len(run.history) > 3 else float("nan")
    session.close()
    return {
        "engine": run.trainer.objective.engine, "task": task_name, "tokens": args.tokens, "repeats": args.repeats,
        "alone_seconds": alone, "during_seconds": during,
        "alone_median": statistics.median(alone), "during_median": statistics.median(during),
        "ratio": statistics.median(during) / statistics.median(alone),
        "training_steps_while_generating": steps_during, "generating_seconds": seconds,
        "training_step_seconds": step_seconds, "torch_threads": _threads(),
    }


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", help="demo task (default: the first)")
    p.add_argument("--tokens", type=int, default=16, help="new tokens per generation (default 16)")
    p.add_argument("--engine", choices=["auto", "simple"], default="auto", help="the background run's engine")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--first-steps", type=int, default=10, help="steps of the vector that is generated with")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Markdown report, with a .json beside it ('' for none)")
    args = p.parse_args()
    r = measure(args)
    lines = [
        f"short generation ({r['tokens']} tokens at m = 0 and 1, task {r['task']}), median of {r['repeats']}:",
        f"  alone:                      {r['alone_median']:.3f} s",
        f"  while a run trains:         {r['during_median']:.3f} s "
        f"({r['training_steps_while_generating']} training steps of {r['training_step_seconds']:.3f} s meanwhile)",
        f"slowdown ratio ({r['engine']} engine): {r['ratio']:.2f}x (goal: at most 3x)",
    ]
    print("\n".join(lines))
    if args.out:
        write_report(args.out, "Fair sharing: a generation while a run trains on the same model",
                     "python scripts/benchmark_sharing.py " + " ".join(sys.argv[1:]), ["```", *lines, "```"], r,
                     note=f" (demo world `{os.environ.get('YAPO_DEMO_SIZE', 'full')}`, {r['torch_threads']} torch threads)")


if __name__ == "__main__":
    main()
