"""Choose the demo world's learning rate for open answers on validation data, never on the test split.

    python scripts/choose_open_lr.py --out assets/results/demo-open-lr.md    # about 18 min
    python scripts/choose_open_lr.py --size mini --steps 2 --lrs 0.01        # checks the script in seconds

Each open-answer task of the demo world (the behaviours, and the open-ended form of ``--countries``)
has its training pairs split 75/25 (seeded; a behaviour's by whole offers, as its test split holds
out whole offers, so validation asks about offers never trained on): YaPO and BiPO vectors are trained on the 75 % at each
learning rate of ``--lrs`` with the demo's other settings (``yapo_core.demo.OPEN_TRAINING``: 600
steps, every token steered), and the held-out 25 % of prompts are answered greedily at multiplier 1.
A reply is *good* when it is fluent (:func:`yapo_core.replies.is_fluent`) and shows the target
(for a behaviour, it accepts the offer for this behaviour's reasons: ``Behaviour.shows``, the test
of ``scripts/evaluate_demo_world.py``; for a culture, the culture's answer). The chosen rate is the
one with the highest mean good share over every task, for each method (the smaller on a tie): the
candidates for ``yapo_core.demo.OPEN_TRAINING`` (YaPO's) and ``OPEN_TRAINING_DENSE`` (BiPO's),
which the app adopts once ``scripts/evaluate_demo_world.py`` has measured them on the test splits.
The default rates stop at 0.01, 20x the public runs' 5e-4 (the demo world's design target 6).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from yapo_core.data import split_pairs
from yapo_core.demo import OPEN_TRAINING, corpus
from yapo_core.demo.config import parse_knobs
from yapo_core.errors import YapoError
from yapo_core.generation import generate
from yapo_core.methods import make_vector
from yapo_core.replies import is_fluent
from yapo_core.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import world_pool  # noqa: E402

TOKENS = 48
VALIDATION = 0.25  # the behaviours' test share of offers (corpus.split_behaviour_keys)


def open_tasks(world, countries: list[str]) -> dict:
    """``{name: (training pairs, shows(pair, reply), group(pair))}`` for every open-answer task.

    The validation split holds out what the task's test split holds out: whole offers for a
    behaviour (``corpus.split_behaviour_keys``), questions for a culture (``None``: any pair)."""
    out = {}
    for behaviour in corpus.BEHAVIOURS:
        out[behaviour.key] = (list(world.task(behaviour.key).pairs("train")),
                              lambda pair, reply, b=behaviour: b.shows(reply),
                              lambda pair, b=behaviour: b.offer_of(pair.prompt))
    for country in countries:
        out[f"culture-{country} (open)"] = (
            list(world.culture(country).pairs("train", form="open_ended")),
            lambda pair, reply: pair.chosen.split(".")[0].lower() in reply.lower(),  # "Koshari" opens the answer
            None)
    return out


def measure(model, tokenizer, sae, tasks: dict, lrs: list[float], steps: int | None) -> list[dict]:
    rows = []
    for name, (pairs, shows, group) in tasks.items():
        fit, held = split_pairs(pairs, VALIDATION, seed=0, group=group)
        for method in ("yapo", "bipo"):
            for lr in lrs:
                settings = {**OPEN_TRAINING, "lr": lr, **({"max_steps": steps} if steps else {})}
                vector = make_vector(method, model, tokenizer, fit, sae=sae, config=TrainConfig(epochs=10_000, **settings))
                replies = [r[1.0] for r in generate(model, tokenizer, [p.prompt for p in held], vector, [1.0], sae=sae,
                                                    max_new_tokens=TOKENS)]
                fluent = [is_fluent(tokenizer, r, TOKENS) for r in replies]
                shown = [shows(p, r) for p, r in zip(held, replies)]
                row = {"task": name, "method": method, "lr": lr, "n_validation": len(held),
                       "norm": round(vector.norm(), 2), "fluent": sum(fluent) / len(held),
                       "shows": sum(shown) / len(held), "good": sum(f and s for f, s in zip(fluent, shown)) / len(held),
                       "example": replies[0]}
                rows.append(row)
                print(f"{name} {method} lr {lr:g}: fluent {row['fluent']:.2f}, shows {row['shows']:.2f}, "
                      f"good {row['good']:.2f}", file=sys.stderr, flush=True)
    return rows


def choose_best(rows: list[dict], candidates: list, key, score: str, tiebreak) -> dict[str, tuple]:
    """For each method of ``rows``: the candidate whose rows (``key(row) == candidate``) have the best
    mean ``score``, the least ``tiebreak(candidate)`` among equals, and every candidate's mean."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        means = {}
        for c in candidates:
            scores = [r[score] for r in mine if key(r) == c]
            means[c] = sum(scores) / len(scores) if scores else float("nan")
        best = max(m for m in means.values() if m == m)
        out[method] = (min((c for c, m in means.items() if m == best), key=tiebreak), means)
    return out


def choose(rows: list[dict], lrs: list[float]) -> dict[str, tuple[float, dict[float, float]]]:
    """For each method, the learning rate with the best mean good share over the tasks (the smaller
    on a tie) and every rate's mean."""
    return choose_best(rows, lrs, key=lambda r: r["lr"], score="good", tiebreak=lambda lr: lr)


def report(rows: list[dict], chosen: dict, world) -> str:
    lines = [f"## The demo's learning rate for open answers, chosen on validation data (world `{world.root.name}`)", "",
             f"Written by `python scripts/choose_open_lr.py`. Training pairs split {1 - VALIDATION:.0%} / "
             f"{VALIDATION:.0%} (seed 0; a behaviour's by whole offers, as its test split holds out whole offers); vectors trained on the first part with the demo's open-answer settings "
             f"({OPEN_TRAINING['max_steps']} steps) at each learning rate; the held-out prompts answered greedily "
             f"at multiplier 1, every token steered. *Good*: fluent and showing the target.", "",
             "| task | method | lr | validation prompts | vector norm | fluent | shows | good | a reply |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['method']} | {r['lr']:g} | {r['n_validation']} | {r['norm']:g} | "
                     f"{r['fluent']:.2f} | {r['shows']:.2f} | {r['good']:.2f} | {r['example'][:60]!r} |")
    lines.append("")
    for method, (lr, means) in chosen.items():
        lines.append(f"- {method}: mean good share per learning rate "
                     + ", ".join(f"{rate:g}: {m:.2f}" for rate, m in means.items()) + f". **Chosen: {lr:g}.**")
    return "\n".join(lines) + "\n"


def world_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every chooser shares: which world, and where the report goes."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="where the world is (default: the demo cache folder)")
    parser.add_argument("--size", default="full", choices=["full", "mini"])
    parser.add_argument("--out", help="write the Markdown report here, and the figures as JSON beside it")
    parser.add_argument("--build-with", nargs="*", default=None, metavar="KNOB=VALUE",
                        help="a variant world built (or reused) at --cache-dir with these research knobs "
                             "(yapo_core.demo.config.RESEARCH_KNOBS; concept_steering=0 behaviour_steering=0 "
                             "added_offer_facts=0 fact_noise=0 sae_scale=0: the plain recipe)")


def load_world(parser: argparse.ArgumentParser, args) -> tuple:
    """The world of :func:`world_arguments` (built on first use), its model, tokenizer and SAE."""
    try:
        return world_pool.load(args.cache_dir, args.seed, args.size, parse_knobs(args.build_with or []))
    except YapoError as e:
        parser.error(f"--build-with: {e}")


def write_report(out: str | None, text: str, figures: dict) -> None:
    """Print the report; with ``--out``, write it there and the figures as JSON beside it."""
    print(text)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", default="0.005,0.007,0.01", help="learning rates to compare, comma-separated")
    parser.add_argument("--countries", default="egypt", help="cultures whose open answers are measured")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the demo's)")
    world_arguments(parser)
    args = parser.parse_args(argv)
    lrs = [float(x) for x in args.lrs.split(",") if x.strip()]
    world, model, tokenizer, sae = load_world(parser, args)
    countries = [c.strip() for c in args.countries.split(",") if c.strip()]
    rows = measure(model, tokenizer, sae, open_tasks(world, countries), lrs, args.steps)
    chosen = choose(rows, lrs)
    write_report(args.out, report(rows, chosen, world), {
        "chosen": {m: lr for m, (lr, _) in chosen.items()}, "means": {m: means for m, (_, means) in chosen.items()},
        "rows": rows, "world": world.root.name})
    return 0


if __name__ == "__main__":
    sys.exit(main())
