"""Which culture's option a culture's MCQ vector makes a demo world pick, or whose answer its
open-answer vector makes the world give, in a few minutes per culture.

A vector's MCQ accuracy says how often the model picks the target culture's option, not where it
lands when it misses: on the default culture's (the vector did not move that answer) or on another
culture's (it moved the answer elsewhere, e.g. past the target at too large a multiplier, or to a
related culture). For each culture named, this trains a YaPO vector on the culture's non-localized
MCQ training pairs with the app's defaults (``yapo_core.demo.TRAINING``, against every wrong option;
``--rejected given`` for the papers' construction) and counts, at each multiplier, whose option the
model picks (the letter of highest likelihood) on the culture's held-out questions, with the median
margin of the culture's option's log-probability over the best other option's.

``--form open_ended`` asks the same of open answers: a YaPO vector trained on the culture's
non-localized open-ended pairs with the app's defaults for them (``yapo_core.demo.open_training("sparse", "culture")``),
steering every token, and, per multiplier, whose answer (to any question of the corpus,
``corpus.answer_country``) each greedy held-out answer names first, beside the share that contains
the culture's own answer to its question (``scripts/evaluate_demo_world.py``'s accuracy).

    python scripts/probe_mcq_picks.py --countries nepal,brazil [--form open_ended] [--cache-dir DIR --build-with KNOB=VALUE ...] [--out PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path

import torch

from yapo_core.demo import TRAINING, corpus, open_training
from yapo_core.evaluation import parse_multipliers, steered
from yapo_core.mcq import letter_logprobs, mcq_items_from_pairs
from yapo_core.methods import make_vector
from yapo_core.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_demo_world import OPEN_REPLY_TOKENS, open_picks  # noqa: E402
from probe_behaviour_paths import load_world, world_arguments, write_report  # noqa: E402

MULTIPLIERS = "0,0.5,1,1.5"
MISSES_SHOWN = 3  # per row of the open answers' report (the JSON holds every one)


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


def probe(world, model, tokenizer, sae, country: str, multipliers, rejected: str, steps: int | None,
          form: str = "mcq") -> dict:
    """:func:`picks` (``form="mcq"``) or ``evaluate_demo_world.open_picks`` (``"open_ended"``) at each multiplier
    for a YaPO vector trained on ``country``'s training pairs of that form."""
    task = world.culture(country)
    train, test = list(task.pairs("train", form=form)), list(task.pairs("test", form=form))
    defaults = {**TRAINING, "mcq_rejected": rejected} if form == "mcq" else open_training("sparse", "culture")
    settings = {**defaults, **({"max_steps": steps} if steps else {})}
    vector = make_vector("yapo", model, tokenizer, train, sae=sae, config=TrainConfig(epochs=10_000, **settings))
    if form == "mcq":
        test = mcq_items_from_pairs(test)
        at = {f"{m:g}": picks(model, tokenizer, sae, test, vector, m, country) for m in multipliers}
    else:
        at = {f"{m:g}": open_picks(model, tokenizer, sae, test, vector, m) for m in multipliers}
        for figures in at.values():
            figures["accuracy"] = round(figures["accuracy"], 4)
    row = {"n_test": len(test), "norm": round(float(vector.values.norm()), 2), "at": at}
    print(f"  {country}: {row}", file=sys.stderr, flush=True)
    return row


def report(stats: dict, rows: dict, rejected: str, form: str = "mcq") -> str:
    """The Markdown report of :func:`probe`'s rows for a world of these build ``stats``."""
    knobs = ", ".join(f"{k} {v:g}" for k, v in stats.get("knobs", {}).items()) or "none"
    if form == "mcq":
        lines = [f"## Whose option a culture's MCQ vector picks (seed {stats['seed']}; research knobs: {knobs})", "",
                 f"YaPO vectors trained with the app's defaults against {rejected.replace('_', ' ')}; held-out "
                 "non-localized MCQ questions; picks per country, and the median margin of the culture's option over "
                 "the best other (log-probability):", "",
                 "| culture | vector norm | multiplier | accuracy | picks | median margin |", "|---|---|---|---|---|---|"]
    else:
        lines = [f"## Whose answer a culture's open-answer vector gives (seed {stats['seed']}; research knobs: {knobs})",
                 "", "YaPO vectors trained on the non-localized open-ended pairs with the app's defaults for open "
                 "answers, steering every token; held-out non-localized questions, greedy answers of "
                 f"{OPEN_REPLY_TOKENS} tokens; accuracy = the answer contains the culture's answer to its question; "
                 "answers per country = whose answer (to any question) each names first, none where it names no "
                 "culture's; the most frequent misses, the culture's answer → the answer's first sentence:", "",
                 "| culture | vector norm | multiplier | accuracy | answers per country | most frequent misses |",
                 "|---|---|---|---|---|---|"]
    for country, row in rows.items():
        for m, at in row["at"].items():
            counts = ", ".join(f"{c} {n}" for c, n in at["picks"].items())
            if form == "mcq":
                last = f"{at['median_margin']:+.2f}"
            else:
                last = "; ".join(f"{miss} ({n})".replace("|", "\\|")
                                 for miss, n in list(at["misses"].items())[:MISSES_SHOWN]) or "none"
            lines.append(f"| {country} | {row['norm']:.1f} | {m} | {at['accuracy']:.2f} | {counts} | {last} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = world_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--countries", required=True, help="comma-separated cultures of the world")
    parser.add_argument("--multipliers", default=MULTIPLIERS, help=f"comma-separated (default {MULTIPLIERS})")
    parser.add_argument("--rejected", choices=["every_option", "given"], default=TRAINING["mcq_rejected"],
                        help="the rejected answers MCQ vectors train against (default the app's)")
    parser.add_argument("--form", choices=["mcq", "open_ended"], default="mcq",
                        help="the culture's MCQ questions (default) or its open answers")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.countries.split(",")) - set(corpus.TARGET_COUNTRIES))
    if unknown:
        parser.error(f"--countries {','.join(unknown)}: not target cultures of the demo world; use some of "
                     f"{','.join(corpus.TARGET_COUNTRIES)}.")
    multipliers = parse_multipliers(args.multipliers)
    world, model, tokenizer, sae = load_world(args)
    rows = {c: probe(world, model, tokenizer, sae, c, multipliers, args.rejected, args.steps, args.form)
            for c in args.countries.split(",")}
    figures = {"build": world.stats, "form": args.form, "countries": rows}
    if args.form == "mcq":
        figures["rejected"] = args.rejected
    write_report(report(world.stats, rows, args.rejected, args.form), args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
