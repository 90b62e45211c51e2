"""Set demo worlds' design-target figures side by side: one recipe per column, its builds from
several seeds in each cell, so that a research knob's effect can be told from the spread between
builds of the same recipe.

    python scripts/compare_demo_worlds.py \\
        "plain=assets/results/demo-targets-plain.json,assets/results/demo-variant-plain-seed1.json" \\
        "general in context=assets/results/demo-variant-general-in-context.json,..." \\
        --out assets/results/demo-seeds.md

Each ``LABEL=FILE,FILE,...`` names a recipe and the JSON files that
``scripts/evaluate_demo_world.py --json`` wrote for its builds (one per seed). Every target row
those runs measured becomes one row per figure (a culture, a behaviour, a vector), listed only where
every file measured it, so that each cell compares like with like. A cell lists the figure build by
build, in the order of the seeds; the row "all met" under each target counts the builds that met
it for every figure listed. Each run is judged again from the figures it stored, by the
evaluation script's own targets, so older and newer files meet the same thresholds. Prints
Markdown; ``--out`` also writes it with its JSON twin.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from evaluate_demo_world import targets
from report import write_report

FIGURE = re.compile(r"(.+?) ([+-]?\d+(?:\.\d+)?(?:e-?\d+)?)(?:, |$)")


def stored_figures(measured: str) -> dict[str, float]:
    """The figures of a stored target row, read back from its text ("egypt 0.95, morocco 0.94"; a
    name may hold commas, a value never does)."""
    found = list(FIGURE.finditer(measured))
    if "".join(m.group(0) for m in found) != measured:
        raise ValueError(f"cannot read the figures of {measured!r}")
    return {m.group(1): float(m.group(2)) for m in found}


def run_targets(data: dict) -> list[dict]:
    """The design-target rows of one stored run, computed again from the figures it stored (its
    steering and behaviour sections) by the evaluation script's own ``targets``, so that every run,
    whenever it was written, is judged figure by figure against the same thresholds."""
    steer = data.get("steering")
    if steer:  # JSON wrote the multipliers as text; the script keys them as numbers
        steer = {**steer, "generations": [
            {**g, "accuracy (all)": {float(k): v for k, v in g["accuracy (all)"].items()}}
            for g in steer.get("generations", [])]}
    rates = next((stored_figures(t["measured"]) for t in data.get("targets", []) if t["target"] == 6), {})
    return targets(steer, data.get("behaviours"), rates)


def load(spec: str) -> tuple[str, list[dict]]:
    """``LABEL=FILE,FILE`` -> the label and each file's seed and design-target rows."""
    label, sep, files = spec.partition("=")
    if not sep or not label.strip() or not files.strip():
        raise SystemExit(f"{spec!r}: name a recipe as LABEL=FILE,FILE,... (the JSON files of its builds)")
    runs = []
    for name in (f.strip() for f in files.split(",") if f.strip()):
        path = Path(name)
        if not path.is_file():
            raise SystemExit(f"{name}: no such file; give the JSON that scripts/evaluate_demo_world.py --json wrote")
        data = json.loads(path.read_text())
        rows = run_targets(data) if "build" in data else []
        if not rows:
            raise SystemExit(f"{name}: no design targets in it; it must come from scripts/evaluate_demo_world.py --json "
                             "with steering measured")
        runs.append({"file": name, "seed": data["build"]["seed"],
                     "targets": {(t["target"], t["name"]): t for t in rows}})
    return label.strip(), runs


def compare(recipes: list[tuple[str, list[dict]]]) -> dict:
    """Per target row, the figures every run measured, each recipe's values build by build, and how
    many of each recipe's builds met the row."""
    all_runs = [run for _, runs in recipes for run in runs]
    keys = [k for k in all_runs[0]["targets"] if all(k in run["targets"] for run in all_runs)]
    rows = []
    for key in keys:
        names = [n for n in all_runs[0]["targets"][key]["figures"]
                 if all(n in run["targets"][key]["figures"] for run in all_runs)]
        rows.append({
            "target": key[0], "name": key[1],
            "figures": {n: {label: [run["targets"][key]["figures"][n] for run in runs] for label, runs in recipes}
                        for n in names},
            "met": {label: sum(all(run["targets"][key]["met_each"][n] for n in names) for run in runs)
                    for label, runs in recipes},
            "format": all_runs[0]["targets"][key]["format"],
        })
    return {"recipes": {label: [{"file": r["file"], "seed": r["seed"]} for r in runs] for label, runs in recipes},
            "rows": rows}


def table(result: dict) -> list[str]:
    head = [f"{label}: seeds {', '.join(str(r['seed']) for r in runs)}" for label, runs in result["recipes"].items()]
    lines = ["| target | what it asks | figure | " + " | ".join(head) + " |", "|---|---|---|" + "---|" * len(head)]
    for row in result["rows"]:
        for i, (name, by_recipe) in enumerate(row["figures"].items()):
            cells = [", ".join(f"{v:{row['format']}}" for v in values) for values in by_recipe.values()]
            lead = f"| {row['target']} | {row['name']} |" if i == 0 else "| | |"
            lines.append(f"{lead} {name} | " + " | ".join(cells) + " |")
        counts = [f"{row['met'][label]} of {len(runs)}" for label, runs in result["recipes"].items()]
        lines.append("| | | **all met** | " + " | ".join(counts) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", metavar="LABEL=FILE,FILE,...")
    parser.add_argument("--out", metavar="PATH.md", help="also write the table there, with its JSON twin")
    args = parser.parse_args(argv)
    result = compare([load(spec) for spec in args.recipes])
    if not result["rows"]:
        parser.error("the files share no design-target row; compare runs of scripts/evaluate_demo_world.py")
    lines = table(result)
    print("\n".join(lines))
    if args.out:
        command = "python scripts/compare_demo_worlds.py " + " ".join(f'"{s}"' for s in args.recipes)
        write_report(args.out, "Demo worlds across seeds", command, lines, result,
                     note=" from the JSON files of scripts/evaluate_demo_world.py named in it. Each cell lists a "
                          "figure build by build, in the order of the seeds named in its column; \"all met\" "
                          "counts the builds that met the target for every figure listed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
