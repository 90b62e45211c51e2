"""Choose the demo world's training settings for MCQ pairs on validation data, never on the test split.

    python scripts/choose_mcq_lr.py --methods yapo --candidates 0.01:1200:16,0.01:2400:16 --jobs 2 \
        --out assets/results/demo-mcq-lr.md    # about 25 min on 2 cores
    python scripts/choose_mcq_lr.py --size mini --candidates 0.01:2:32      # checks the script in seconds

A candidate is a learning rate, a number of steps and a batch size (``LR:STEPS:BATCH``). Each
culture of ``--countries`` has its non-localized MCQ training pairs split 80/20 (seeded); YaPO and
BiPO vectors are trained on the 80 % with each candidate (the demo's other settings: 20 warm-up
steps) under each construction of the MCQ pairs (``--constructions``: against every wrong option,
as the app trains, and against the given rejected answer only, as in the papers' data) and scored
on the held-out 20 % at multiplier 1 (the answer letter's likelihood). For each method the chosen
candidate is the one with the highest mean validation accuracy over the cultures and
constructions; on a tie, the one that reads the fewest training examples (steps × batch), then the
smaller rate. ``yapo_core.demo.TRAINING`` uses YaPO's choice, and ``scripts/evaluate_demo_world.py``
reports the test splits.

The default candidates keep the rate within 20x of the public runs' 5e-4 (design target 6) and
trade the batch for steps at about the same cost: at a given rate, Adam's steps (not the gradient's
size) set how far a vector moves, so a small rate needs more steps, and the public runs' batches
are 2 to 4 pairs. The general-question accuracy of each vector is reported, and not chosen on.
``--jobs 2`` measures on two worker processes (:mod:`world_pool`), half the time on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from yapo_core.data import split_pairs
from yapo_core.demo import TRAINING
from yapo_core.demo.config import parse_knobs
from yapo_core.evaluation import get_metric
from yapo_core.methods import make_vector
from yapo_core.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import world_pool  # noqa: E402
from choose_open_lr import (  # noqa: E402
    candidate_cost,
    checked_choices,
    choose_best,
    label,
    load_world,
    parse_candidates,
    world_arguments,
    write_report,
)
from evaluate_demo_world import capability_at, general  # noqa: E402

VALIDATION = 0.2
CANDIDATES = "0.01:600:32,0.01:1200:16"
CONSTRUCTIONS = ("every_option", "given")  # the app's MCQ pairs; the papers' (the given rejected answer only)


def candidate_row(world, model, tokenizer, sae, country: str, method: str, candidate, rejected: str) -> dict:
    """One validation figure: ``method``'s vector for ``country`` trained with ``candidate`` against
    ``rejected`` answers (every wrong option, or the given one), scored at multiplier 1."""
    capability, unsteered = general(world, model, tokenizer)
    fit, held = split_pairs(list(world.culture(country).pairs("train")), VALIDATION, seed=0)
    lr, steps, batch = candidate
    settings = {**TRAINING, "lr": lr, "max_steps": steps, "batch_size": batch, "mcq_rejected": rejected}
    vector = make_vector(method, model, tokenizer, fit, sae=sae, config=TrainConfig(epochs=10_000, **settings))
    row = {"country": country, "method": method, "lr": lr, "steps": steps, "batch": batch, "rejected": rejected,
           "n_validation": len(held), "norm": round(vector.norm(), 2),
           "accuracy": get_metric("mcq").score(model, tokenizer, held, vector, 1.0, sae, "all"),
           "capability_change": capability_at(capability, unsteered, model, vector, 1.0, sae)}
    print(f"{country} {method} {label(candidate)} against {rejected}: validation {row['accuracy']:.2f}, "
          f"norm {row['norm']:g}, general questions {row['capability_change']:+.2f}", file=sys.stderr, flush=True)
    return row


def measure(loaded: tuple, where: tuple, countries: list[str], candidates, methods=("yapo", "bipo"),
            constructions=CONSTRUCTIONS, jobs: int = 1) -> list[dict]:
    """Every :func:`candidate_row`, run on ``jobs`` worker processes (:mod:`world_pool`)."""
    tasks = [(candidate_row, (country, method, c, rejected)) for country in countries for method in methods
             for c in candidates for rejected in constructions]
    return world_pool.run(tasks, jobs, loaded, where, cost=candidate_cost)


def choose(rows: list[dict], candidates) -> dict[str, tuple[tuple[float, int, int], dict]]:
    """For each method, the candidate with the best mean validation accuracy over the cultures and
    constructions (on a tie, the fewest steps × batch, then the smaller rate) and every candidate's mean."""
    return choose_best(rows, candidates, key=lambda r: (r["lr"], r["steps"], r["batch"]), score="accuracy",
                       tiebreak=lambda c: (c[1] * c[2], c[0]))


def report(rows: list[dict], chosen: dict, world) -> str:
    lines = [f"## The demo's training settings for MCQ pairs, chosen on validation data (world `{world.root.name}`)", "",
             f"Written by `python scripts/choose_mcq_lr.py`. Each culture's MCQ training pairs split "
             f"{1 - VALIDATION:.0%} / {VALIDATION:.0%} (seed 0); vectors trained on the first part with each "
             f"candidate ({TRAINING['warmup_steps']} warm-up steps), against every wrong option (the app's MCQ "
             "pairs) or the given rejected answer only (the papers'), and scored on the held-out part at "
             "multiplier 1 (the answer letter's likelihood). General questions: "
             "the change of their accuracy with the vector at 1 (reported, not chosen on).", "",
             "| culture | method | lr | steps | batch | against | validation questions | vector norm | "
             "validation accuracy | general questions, change |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['country']} | {r['method']} | {r['lr']:g} | {r['steps']} | {r['batch']} | "
                     f"{r.get('rejected', 'every_option').replace('_', ' ')} | "
                     f"{r['n_validation']} | {r['norm']:g} | {r['accuracy']:.2f} | {r['capability_change']:+.2f} |")
    lines.append("")
    for method, (c, means) in chosen.items():
        lines.append(f"- {method}: mean validation accuracy per candidate "
                     + "; ".join(f"{label(k)}: {m:.2f}" for k, m in means.items()) + f". **Chosen: {label(c)}.**")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default=CANDIDATES, help="LR:STEPS:BATCH, comma-separated")
    parser.add_argument("--countries", default="egypt,morocco,india", help="cultures whose MCQ is measured")
    parser.add_argument("--methods", default="yapo,bipo", help="yapo, bipo or both (the default)")
    parser.add_argument("--constructions", default=",".join(CONSTRUCTIONS),
                        help="MCQ pairs against every_option (the app's), given (the papers'), or both (the default)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes, one thread each (default 1: run here)")
    world_arguments(parser)
    args = parser.parse_args(argv)
    candidates, methods = checked_choices(parser, args, lambda: parse_candidates(args.candidates))
    constructions = [c.strip() for c in args.constructions.split(",") if c.strip()]
    if not constructions or set(constructions) - set(CONSTRUCTIONS):
        parser.error(f"--constructions {args.constructions!r}: use every_option, given or both")
    loaded = load_world(parser, args)
    countries = [c.strip() for c in args.countries.split(",") if c.strip()]
    where = (args.cache_dir, args.seed, args.size, parse_knobs(args.build_with or []))
    rows = measure(loaded, where, countries, candidates, methods, constructions, args.jobs)
    world = loaded[0]
    chosen = choose(rows, candidates)
    write_report(args.out, report(rows, chosen, world), {
        "chosen": {m: dict(zip(("lr", "max_steps", "batch_size"), c)) for m, (c, _) in chosen.items()},
        "means": {m: {label(k): v for k, v in means.items()} for m, (_, means) in chosen.items()},
        "rows": rows, "world": world.root.name})
    return 0


if __name__ == "__main__":
    sys.exit(main())
