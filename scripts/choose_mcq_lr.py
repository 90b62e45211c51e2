"""Choose the demo world's training settings for MCQ pairs on validation data, never on the test split.

    python scripts/choose_mcq_lr.py --methods yapo --out assets/results/demo-mcq-lr.md     # about 20 min
    python scripts/choose_mcq_lr.py --size mini --candidates 0.01:2:32      # checks the script in seconds

A candidate is a learning rate, a number of steps and a batch size (``LR:STEPS:BATCH``). Each
culture of ``--countries`` has its non-localized MCQ training pairs split 80/20 (seeded); YaPO and
BiPO vectors are trained on the 80 % with each candidate (the demo's other settings: 20 warm-up
steps, MCQ pairs against every wrong option) and scored on the held-out 20 % at multiplier 1 (the
answer letter's likelihood). For each method the chosen candidate is the one with the highest mean
validation accuracy over the cultures; on a tie, the one that reads the fewest training examples
(steps × batch), then the smaller rate. YaPO's choice is the candidate for
``yapo_core.demo.TRAINING``, which the app adopts once ``scripts/evaluate_demo_world.py`` has
measured it on the test splits.

The default candidates keep the rate within 20x of the public runs' 5e-4 (design target 6) and
trade the batch for steps at about the same cost: at a given rate, Adam's steps (not the gradient's
size) set how far a vector moves, so a small rate needs more steps, and the public runs' batches
are 2 to 4 pairs. The general-question accuracy of each vector is reported, and not chosen on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from yapo_core.data import split_pairs
from yapo_core.demo import TRAINING
from yapo_core.evaluation import capability_change, get_metric
from yapo_core.methods import make_vector
from yapo_core.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from choose_open_lr import load_world, world_arguments, write_report  # noqa: E402
from evaluate_demo_world import capability_of  # noqa: E402

VALIDATION = 0.2
CANDIDATES = "0.01:600:32,0.01:1200:16"


def parse_candidates(text: str) -> list[tuple[float, int, int]]:
    """``"0.01:1200:16,..."`` as ``[(lr, steps, batch), ...]``."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        fields = part.split(":")
        if len(fields) != 3:
            raise ValueError(f"candidate {part!r}: write LR:STEPS:BATCH, e.g. 0.01:1200:16")
        out.append((float(fields[0]), int(fields[1]), int(fields[2])))
    return out


def label(candidate: tuple[float, int, int]) -> str:
    lr, steps, batch = candidate
    return f"lr {lr:g}, {steps} steps, batch {batch}"


def measure(world, model, tokenizer, sae, countries: list[str], candidates, methods=("yapo", "bipo")) -> list[dict]:
    capability = capability_of(world, model, tokenizer)
    unsteered = capability()
    metric = get_metric("mcq")
    rows = []
    for country in countries:
        fit, held = split_pairs(list(world.culture(country).pairs("train")), VALIDATION, seed=0)
        for method in methods:
            for lr, steps, batch in candidates:
                settings = {**TRAINING, "lr": lr, "max_steps": steps, "batch_size": batch}
                vector = make_vector(method, model, tokenizer, fit, sae=sae, config=TrainConfig(epochs=10_000, **settings))
                row = {"country": country, "method": method, "lr": lr, "steps": steps, "batch": batch,
                       "n_validation": len(held), "norm": round(vector.norm(), 2),
                       "accuracy": metric.score(model, tokenizer, held, vector, 1.0, sae, "all"),
                       "capability_change": round(capability_change(capability, model, vector, 1.0, sae,
                                                                    unsteered)["change"], 4)}
                rows.append(row)
                print(f"{country} {method} {label((lr, steps, batch))}: validation {row['accuracy']:.2f}, "
                      f"norm {row['norm']:g}, general questions {row['capability_change']:+.2f}",
                      file=sys.stderr, flush=True)
    return rows


def choose(rows: list[dict], candidates) -> dict[str, tuple[tuple[float, int, int], dict]]:
    """For each method, the candidate with the best mean validation accuracy (on a tie, the fewest
    steps × batch, then the smaller rate) and every candidate's mean."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        means = {}
        for c in candidates:
            scores = [r["accuracy"] for r in mine if (r["lr"], r["steps"], r["batch"]) == c]
            means[c] = sum(scores) / len(scores) if scores else float("nan")
        best = max(m for m in means.values() if m == m)
        out[method] = (min((c for c, m in means.items() if m == best), key=lambda c: (c[1] * c[2], c[0])), means)
    return out


def report(rows: list[dict], chosen: dict, world) -> str:
    lines = [f"## The demo's training settings for MCQ pairs, chosen on validation data (world `{world.root.name}`)", "",
             f"Written by `python scripts/choose_mcq_lr.py`. Each culture's MCQ training pairs split "
             f"{1 - VALIDATION:.0%} / {VALIDATION:.0%} (seed 0); vectors trained on the first part with each "
             f"candidate ({TRAINING['warmup_steps']} warm-up steps, MCQ pairs against every wrong option) and "
             "scored on the held-out part at multiplier 1 (the answer letter's likelihood). General questions: "
             "the change of their accuracy with the vector at 1 (reported, not chosen on).", "",
             "| culture | method | lr | steps | batch | validation questions | vector norm | validation accuracy | "
             "general questions, change |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['country']} | {r['method']} | {r['lr']:g} | {r['steps']} | {r['batch']} | "
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
    world_arguments(parser)
    args = parser.parse_args(argv)
    try:
        candidates = parse_candidates(args.candidates)
    except ValueError as e:
        parser.error(f"--candidates: {e}")
    if not candidates:
        parser.error("--candidates: name at least one LR:STEPS:BATCH")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or set(methods) - {"yapo", "bipo"}:
        parser.error(f"--methods {args.methods!r}: use yapo, bipo or yapo,bipo")
    world, model, tokenizer, sae = load_world(parser, args)
    countries = [c.strip() for c in args.countries.split(",") if c.strip()]
    rows = measure(world, model, tokenizer, sae, countries, candidates, methods)
    chosen = choose(rows, candidates)
    write_report(args.out, report(rows, chosen, world), {
        "chosen": {m: dict(zip(("lr", "max_steps", "batch_size"), c)) for m, (c, _) in chosen.items()},
        "means": {m: {label(k): v for k, v in means.items()} for m, (_, means) in chosen.items()},
        "rows": rows, "world": world.root.name})
    return 0


if __name__ == "__main__":
    sys.exit(main())
