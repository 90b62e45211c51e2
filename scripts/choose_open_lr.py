"""Choose the demo world's training settings for open answers on validation data, never on the test split.

    python scripts/choose_open_lr.py --jobs 2 --out assets/results/demo-open-lr.md    # about 18 min of one core's work, halved
    python scripts/choose_open_lr.py --size mini --steps 2 --lrs 0.01                 # checks the script in seconds

A candidate is a learning rate, a number of steps and a batch size (``LR:STEPS:BATCH``; ``--lrs``
is the shorthand for rates at the demo's steps and batch, ``yapo_core.demo.OPEN_TRAINING``). Each
open-answer task of the demo world (the behaviours, and the open-ended form of ``--countries``;
``--kinds culture`` or ``behaviour`` measures one kind alone) has its training pairs split 75/25 (seeded; a behaviour's by whole offers, as its test split holds
out whole offers, so validation asks about offers never trained on): YaPO and BiPO vectors are
trained on the 75 % with each candidate (20 warm-up steps, every token steered), and the held-out
25 % of prompts are answered greedily at multiplier 1. A reply is *good* when it is fluent
(:func:`yapo_core.replies.is_fluent`) and shows the target (for a behaviour, it accepts the offer
for this behaviour's reasons: ``Behaviour.shows``, the test of ``scripts/evaluate_demo_world.py``;
for a culture, the culture's answer). The chosen candidate is the one with the highest mean good
share over every task, for each method (on a tie, the one that reads the fewest training examples,
steps x batch, then the smaller rate): the candidates for ``yapo_core.demo.OPEN_TRAINING`` (YaPO's)
and ``OPEN_TRAINING_DENSE`` (BiPO's); with both kinds measured, the report adds each kind's own
choice, for a setting of its own (``OPEN_TRAINING_BY_TASK`` and ``OPEN_TRAINING_DENSE_BY_TASK``: a
culture's open answers). The app adopts one once ``scripts/evaluate_demo_world.py`` or ``yapo compare``
has measured it on test splits. The default candidates stop at 0.01, 20x the public runs'
5e-4 (the demo world's design target 6); at that rate, more steps move a vector further.
``--jobs 2`` measures on two worker processes (:mod:`world_pool`), half the time on 2 cores.
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
from yapo_core.replies import contains_answer, is_fluent
from yapo_core.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import world_pool  # noqa: E402

TOKENS = 48
VALIDATION = 0.25  # the behaviours' test share of offers (corpus.split_behaviour_keys)
LRS = (0.005, 0.007, 0.01)


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


KINDS = ("behaviour", "culture")


def open_task_names(countries: list[str], kinds=KINDS) -> list[str]:
    """The open-answer tasks the chooser measures: every behaviour, and these cultures' open answers
    (of ``kinds``: both, or one of them)."""
    return (([b.key for b in corpus.BEHAVIOURS] if "behaviour" in kinds else [])
            + ([culture_task(c) for c in countries] if "culture" in kinds else []))


def kind_of_task(name: str) -> str:
    """``"culture"`` for a culture's open answers, ``"behaviour"`` for a behaviour."""
    return "culture" if name.startswith("culture-") else "behaviour"


def open_task(world, name: str) -> tuple:
    """``(training pairs, shows(pair, reply), group(pair))`` of the open-answer task ``name``, whose
    pairs alone are read.

    The validation split holds out what the task's test split holds out: whole offers for a
    behaviour (``corpus.split_behaviour_keys``), questions for a culture (``None``: any pair)."""
    for behaviour in corpus.BEHAVIOURS:
        if behaviour.key == name:
            return (list(world.task(behaviour.key).pairs("train")), lambda pair, reply: behaviour.shows(reply),
                    lambda pair: behaviour.offer_of(pair.prompt))
    for country in corpus.TARGET_COUNTRIES:
        if culture_task(country) == name:
            return (list(world.culture(country).pairs("train", form="open_ended")),
                    lambda pair, reply: contains_answer(reply, corpus.culture_answer(pair.chosen)),  # the culture_open metric's test
                    None)
    raise KeyError(f"no open-answer task {name!r}; the tasks are {open_task_names(list(corpus.TARGET_COUNTRIES))}")


def culture_task(country: str) -> str:
    return f"culture-{country} (open)"


def candidate_row(world, model, tokenizer, sae, name: str, method: str, candidate) -> dict:
    """One validation figure: ``method``'s vector for the open-answer task ``name`` trained with
    ``candidate`` on its first part, its held-out prompts answered at multiplier 1."""
    pairs, shows, group = open_task(world, name)
    fit, held = split_pairs(pairs, VALIDATION, seed=0, group=group)
    lr, steps, batch = candidate
    settings = {**OPEN_TRAINING, "lr": lr, "max_steps": steps, "batch_size": batch}
    vector = make_vector(method, model, tokenizer, fit, sae=sae, config=TrainConfig(epochs=10_000, **settings))
    replies = [r[1.0] for r in generate(model, tokenizer, [p.prompt for p in held], vector, [1.0], sae=sae,
                                        max_new_tokens=TOKENS)]
    fluent = [is_fluent(tokenizer, r, TOKENS) for r in replies]
    shown = [shows(p, r) for p, r in zip(held, replies)]
    row = {"task": name, "method": method, "lr": lr, "steps": steps, "batch": batch, "n_validation": len(held),
           "norm": round(vector.norm(), 2), "fluent": sum(fluent) / len(held),
           "shows": sum(shown) / len(held), "good": sum(f and s for f, s in zip(fluent, shown)) / len(held),
           "example": replies[0]}
    print(f"{name} {method} {label(candidate)}: fluent {row['fluent']:.2f}, shows {row['shows']:.2f}, "
          f"good {row['good']:.2f}, norm {row['norm']:g}", file=sys.stderr, flush=True)
    return row


def candidate_cost(task: tuple) -> float:
    """About how long a chooser's task runs, for :func:`world_pool.run` to start the longest first:
    its candidate's (the task's third argument) steps, each costing a little more with a larger batch
    (on this model a step is mostly per-operation overhead)."""
    _, steps, batch = task[1][2]
    return steps * (1 + batch / 32)


def measure(loaded: tuple, where: tuple, names: list[str], candidates, methods=("yapo", "bipo"),
            jobs: int = 1) -> list[dict]:
    """Every :func:`candidate_row`, run on ``jobs`` worker processes (:mod:`world_pool`)."""
    tasks = [(candidate_row, (name, method, c)) for name in names for method in methods for c in candidates]
    return world_pool.run(tasks, jobs, loaded, where, cost=candidate_cost)


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


def choose(rows: list[dict], candidates) -> dict[str, tuple[tuple[float, int, int], dict]]:
    """For each method, the candidate with the best mean good share over the tasks (on a tie, the
    fewest steps x batch, then the smaller rate) and every candidate's mean."""
    return choose_best(rows, candidates, key=lambda r: (r["lr"], r["steps"], r["batch"]), score="good",
                       tiebreak=lambda c: (c[1] * c[2], c[0]))


def report(rows: list[dict], chosen: dict, world) -> str:
    lines = [f"## The demo's training settings for open answers, chosen on validation data (world `{world.root.name}`)",
             "", f"Written by `python scripts/choose_open_lr.py`. Training pairs split {1 - VALIDATION:.0%} / "
             f"{VALIDATION:.0%} (seed 0; a behaviour's by whole offers, as its test split holds out whole offers); "
             f"vectors trained on the first part with each candidate ({OPEN_TRAINING['warmup_steps']} warm-up "
             "steps); the held-out prompts answered greedily at multiplier 1, every token steered. *Good*: fluent "
             "and showing the target.", "",
             "| task | method | lr | steps | batch | validation prompts | vector norm | fluent | shows | good | a reply |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['method']} | {r['lr']:g} | {r['steps']} | {r['batch']} | {r['n_validation']} "
                     f"| {r['norm']:g} | {r['fluent']:.2f} | {r['shows']:.2f} | {r['good']:.2f} | "
                     f"{r['example'][:60]!r} |")
    lines.append("")
    for method, (c, means) in chosen.items():
        lines.append(f"- {method}: mean good share per candidate "
                     + "; ".join(f"{label(k)}: {m:.2f}" for k, m in means.items()) + f". **Chosen: {label(c)}.**")
    kinds = dict.fromkeys(kind_of_task(r["task"]) for r in rows)
    if len(kinds) > 1:  # the choice each kind of task would make alone
        for kind in kinds:
            for method, (c, means) in choose([r for r in rows if kind_of_task(r["task"]) == kind], candidates_of(rows)).items():
                lines.append(f"- {method}, {kind} tasks alone: "
                             + "; ".join(f"{label(k)}: {m:.2f}" for k, m in means.items()) + f". Best: {label(c)}.")
    return "\n".join(lines) + "\n"


def candidates_of(rows: list[dict]) -> list[tuple[float, int, int]]:
    """The candidates ``rows`` measured, in their order."""
    return list(dict.fromkeys((r["lr"], r["steps"], r["batch"]) for r in rows))


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


def checked_choices(parser: argparse.ArgumentParser, args, candidates) -> tuple[list, list[str]]:
    """The candidates (``candidates()``, which parses them) and ``--methods`` of a chooser's
    arguments, each checked, and ``--jobs`` checked; a wrong one ends the run with its fix."""
    try:
        parsed = candidates()
    except ValueError as e:
        parser.error(f"--candidates: {e}")
    if not parsed:
        parser.error("--candidates: name at least one LR:STEPS:BATCH")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or set(methods) - {"yapo", "bipo"}:
        parser.error(f"--methods {args.methods!r}: use yapo, bipo or yapo,bipo")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: use 1 or more worker processes")
    return parsed, methods


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
    parser.add_argument("--candidates", default=None, help="LR:STEPS:BATCH, comma-separated (default: --lrs)")
    parser.add_argument("--lrs", default=",".join(f"{lr:g}" for lr in LRS),
                        help="learning rates at the demo's steps and batch, comma-separated (when no --candidates)")
    parser.add_argument("--steps", type=int, default=None, help="the steps of every --lrs rate (default: the demo's)")
    parser.add_argument("--countries", default="egypt", help="cultures whose open answers are measured")
    parser.add_argument("--methods", default="yapo,bipo", help="yapo, bipo or both (the default)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="the open-answer tasks measured: behaviour, culture or both (the default)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes, one thread each (default 1: run here)")
    world_arguments(parser)
    args = parser.parse_args(argv)
    candidates, methods = checked_choices(parser, args, lambda: parse_candidates(args.candidates) if args.candidates else [
        (float(x), args.steps or OPEN_TRAINING["max_steps"], OPEN_TRAINING["batch_size"])
        for x in args.lrs.split(",") if x.strip()])
    countries = [c.strip() for c in args.countries.split(",") if c.strip()]
    if set(countries) - set(corpus.TARGET_COUNTRIES):
        parser.error(f"--countries {args.countries!r}: use some of {', '.join(corpus.TARGET_COUNTRIES)}")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--kinds {args.kinds!r}: use behaviour, culture or behaviour,culture")
    loaded = load_world(parser, args)
    world = loaded[0]
    names = open_task_names(countries, kinds)
    if not names:
        parser.error(f"--kinds {args.kinds} --countries {args.countries!r}: no task to measure; name some countries")
    where = (args.cache_dir, args.seed, args.size, parse_knobs(args.build_with or []))
    rows = measure(loaded, where, names, candidates, methods, args.jobs)
    chosen = choose(rows, candidates)
    write_report(args.out, report(rows, chosen, world), {
        "kinds": kinds,
        "chosen": {m: dict(zip(("lr", "max_steps", "batch_size"), c)) for m, (c, _) in chosen.items()},
        "means": {m: {label(k): v for k, v in means.items()} for m, (_, means) in chosen.items()},
        "rows": rows, "world": world.root.name})
    return 0


if __name__ == "__main__":
    sys.exit(main())
