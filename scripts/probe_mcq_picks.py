"""Which culture's option a culture's MCQ vector makes a demo world pick, in a few minutes per culture.

A vector's MCQ accuracy says how often the model picks the target culture's option, not where it
lands when it misses: on the default culture's (the vector did not move that answer) or on another
culture's (it moved the answer elsewhere, e.g. past the target at too large a multiplier, or to a
related culture). For each culture named, this trains a YaPO vector on the culture's non-localized
MCQ training pairs with the app's defaults (``yapo_core.demo.TRAINING``, against every wrong option;
``--rejected given`` for the papers' construction) and counts, at each multiplier, whose option the
model picks (the letter of highest likelihood) on the culture's held-out questions, with the median
margin of the culture's option's log-probability over the best other option's.

    python scripts/probe_mcq_picks.py --countries nepal,brazil [--cache-dir DIR --build-with KNOB=VALUE ...] [--out PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path

import torch

from yapo_core.demo import TRAINING, corpus
from yapo_core.evaluation import parse_multipliers, steered
from yapo_core.mcq import letter_logprobs, mcq_items_from_pairs
from yapo_core.methods import make_vector
from yapo_core.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_behaviour_paths import load_world, world_arguments, write_report  # noqa: E402

MULTIPLIERS = "0,0.5,1,1.5"


def picks(model, tokenizer, sae, items, vector, multiplier: float, country: str) -> dict:
    """Whose option the model picks on ``items`` with ``vector`` at ``multiplier``: counts per country
    (``"other"`` for an option no country answers), the accuracy, and the median margin of
    ``country``'s option over the best other option (log-probabilities; above 0 where it is picked)."""
    with steered(model, vector, multiplier, sae):
        scores = letter_logprobs(model, tokenizer, items)
    counts, margins = Counter(), []
    for item, score in zip(items, scores):
        picked = item.letters[int(score.argmax())]
        counts[corpus.option_country(item.prompt, picked) or "other"] += 1
        gold = item.letters.index(item.gold)
        margins.append((score[gold] - torch.cat([score[:gold], score[gold + 1:]]).max()).item())
    return {"accuracy": round(counts[country] / len(items), 4), "picks": dict(counts.most_common()),
            "median_margin": round(statistics.median(margins), 3)}


def probe(world, model, tokenizer, sae, country: str, multipliers, rejected: str, steps: int | None) -> dict:
    """:func:`picks` at each multiplier for a YaPO vector trained on ``country``'s MCQ training pairs."""
    task = world.culture(country)
    train, test = list(task.pairs("train")), list(task.pairs("test"))
    settings = {**TRAINING, "mcq_rejected": rejected, **({"max_steps": steps} if steps else {})}
    vector = make_vector("yapo", model, tokenizer, train, sae=sae, config=TrainConfig(epochs=10_000, **settings))
    items = mcq_items_from_pairs(test)
    row = {"n_test": len(items), "norm": round(float(vector.values.norm()), 2),
           "at": {f"{m:g}": picks(model, tokenizer, sae, items, vector, m, country) for m in multipliers}}
    print(f"  {country}: {row}", file=sys.stderr, flush=True)
    return row


def report(stats: dict, rows: dict, rejected: str) -> str:
    """The Markdown report of :func:`probe`'s rows for a world of these build ``stats``."""
    knobs = ", ".join(f"{k} {v:g}" for k, v in stats.get("knobs", {}).items()) or "none"
    lines = [f"## Whose option a culture's MCQ vector picks (seed {stats['seed']}; research knobs: {knobs})", "",
             f"YaPO vectors trained with the app's defaults against {rejected.replace('_', ' ')}; held-out "
             "non-localized MCQ questions; picks per country, and the median margin of the culture's option over "
             "the best other (log-probability):", "",
             "| culture | vector norm | multiplier | accuracy | picks | median margin |", "|---|---|---|---|---|---|"]
    for country, row in rows.items():
        for m, at in row["at"].items():
            counts = ", ".join(f"{c} {n}" for c, n in at["picks"].items())
            lines.append(f"| {country} | {row['norm']:.1f} | {m} | {at['accuracy']:.2f} | {counts} | "
                         f"{at['median_margin']:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = world_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--countries", required=True, help="comma-separated cultures of the world")
    parser.add_argument("--multipliers", default=MULTIPLIERS, help=f"comma-separated (default {MULTIPLIERS})")
    parser.add_argument("--rejected", choices=["every_option", "given"], default=TRAINING["mcq_rejected"],
                        help="the rejected answers the vectors train against (default the app's)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.countries.split(",")) - set(corpus.TARGET_COUNTRIES))
    if unknown:
        parser.error(f"--countries {','.join(unknown)}: not target cultures of the demo world; use some of "
                     f"{','.join(corpus.TARGET_COUNTRIES)}.")
    multipliers = parse_multipliers(args.multipliers)
    world, model, tokenizer, sae = load_world(args)
    rows = {c: probe(world, model, tokenizer, sae, c, multipliers, args.rejected, args.steps)
            for c in args.countries.split(",")}
    write_report(report(world.stats, rows, args.rejected), args.out,
                 {"build": world.stats, "rejected": args.rejected, "countries": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
