"""How a demo world's behaviour vectors move its two answer forms, in a few minutes per world.

BiPO's protocol trains a behaviour vector on open answers and measures it on A/B questions
(target 2). Whether the A/B choice follows depends on the path the vector takes: along the
behaviour's cue direction (the representation both forms read) or along another direction that
makes the open answers accept without the A/B form reading it. For each behaviour this measures:

- along the cue direction alone (the mean residual at the SAE block at the end of the held-out
  offers asked under a cue, minus asked plainly; ``evaluate_demo_world.cue_direction``), added at
  0.25, 0.5 and 1 times its norm: the A/B rate on ``test_infer`` and the share of held-out open
  answers that accept the offer, i.e. how large a push along the concept each form needs;
- a YaPO vector trained on the open-ended train pairs with the app's defaults: what it adds at the
  end of the held-out offers (its norm, its part along the cue direction in units of that
  direction, the norm of the rest), its A/B rate at 1, 1.5, 2 and 3 and the letters it picks at 1
  (a rate that stays at the share of one letter's questions is a letter, not the behaviour);
- that edit's part along the cue and the rest, each added alone as a dense vector at 1: which
  path moves which form.

    python scripts/probe_behaviour_paths.py [--cache-dir DIR --build-with KNOB=VALUE ...] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from yapo_core.demo import OPEN_TRAINING, build_demo_world, corpus
from yapo_core.demo.config import parse_knobs
from yapo_core.evaluation import evaluate_metric, steered
from yapo_core.generation import generate
from yapo_core.methods import make_vector
from yapo_core.models import load_model
from yapo_core.saes import load_sae
from yapo_core.steering import SteeringVector
from yapo_core.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate_demo_world as E  # noqa: E402

CUE_SIZES = (0.25, 0.5, 1.0)
MULTIPLIERS = (1.0, 1.5, 2.0, 3.0)
OPEN_PROMPTS, OPEN_TOKENS = 16, 24


def forms(model, tokenizer, sae, behaviour, infer, prompts, vector) -> dict[str, float]:
    """The A/B rate on ``infer`` and the share of open answers to ``prompts`` that accept, at 1."""
    ab = evaluate_metric("behaviour", model, tokenizer, infer, vector, [1.0], sae=sae)[1.0]
    replies = [r[1.0] for r in generate(model, tokenizer, prompts, vector, [1.0], sae=sae, max_new_tokens=OPEN_TOKENS)]
    return {"ab_rate": round(ab, 4), "open_accepts": round(E.reply_shares(behaviour, replies)["accepts_at_1"], 4)}


def probe(world, model, tokenizer, sae, behaviour, steps: int | None = None, batch: int | None = None) -> dict:
    """The module's measures for one behaviour (``steps`` and ``batch``: the vector's training steps
    and batch of pairs, when not the app's). The vector's edit is its mean over the held-out offers' last positions, so its two parts
    are dense vectors: what a sparse vector adds differs a little from position to position."""
    splits, prompts, plain, cues = E.behaviour_cues(world, model, tokenizer, 32)
    train, infer = splits[behaviour.key]["train"], splits[behaviour.key]["test_infer"]
    open_prompts = prompts[behaviour.key][:OPEN_PROMPTS]
    cue = cues[behaviour.key]

    def dense(values: torch.Tensor) -> SteeringVector:
        return SteeringVector(kind="dense", values=values.clone(), hook_name=world.hook_name, method="bipo")

    row = {"cue_norm": round(cue.norm().item(), 2),
           "along_cue": {f"{s:g}": forms(model, tokenizer, sae, behaviour, infer, open_prompts, dense(s * cue))
                         for s in CUE_SIZES}}
    settings = {**OPEN_TRAINING, **({"max_steps": steps} if steps else {}), **({"batch_size": batch} if batch else {})}
    vector = make_vector("yapo", model, tokenizer, train, sae=sae, config=TrainConfig(epochs=10_000, **settings))
    edit = E.vector_edit(vector, plain[behaviour.key], sae)
    along = (edit @ cue / (cue @ cue)).item()
    rest = edit - along * cue
    with steered(model, vector, 1.0, sae):
        picks = E.letter_picks(model, tokenizer, infer)
    row["yapo"] = {
        "edit_norm": round(edit.norm().item(), 2), "along_cue": round(along, 3), "rest_norm": round(rest.norm().item(), 2),
        "ab_rate": {f"{m:g}": round(r, 4) for m, r in
                    evaluate_metric("behaviour", model, tokenizer, infer, vector, MULTIPLIERS, sae=sae).items()},
        "picks_at_1": picks["picks"], "matching_at": picks["matching_at"],
        "cue_part": forms(model, tokenizer, sae, behaviour, infer, open_prompts, dense(along * cue)),
        "rest_part": forms(model, tokenizer, sae, behaviour, infer, open_prompts, dense(rest)),
    }
    print(f"  {behaviour.key}: {row}", file=sys.stderr, flush=True)
    return row


def report(stats: dict, rows: dict) -> str:
    """The Markdown report of :func:`probe`'s rows for a world of these build ``stats``."""
    knobs = ", ".join(f"{k} {v:g}" for k, v in stats.get("knobs", {}).items()) or "none"
    lines = [f"## Behaviour paths (seed {stats['seed']}; research knobs: {knobs})", "",
             "Along the cue direction alone, at a share of its norm: A/B rate on `test_infer` / held-out open answers "
             f"that accept the offer ({OPEN_PROMPTS} prompts, {OPEN_TOKENS} tokens):", "",
             "| behaviour | cue norm | " + " | ".join(f"cue x{s:g}" for s in CUE_SIZES) + " |",
             "|---|---|" + "---|" * len(CUE_SIZES)]
    for key, row in rows.items():
        cells = [f"{v['ab_rate']:.2f} / {v['open_accepts']:.2f}" for v in row["along_cue"].values()]
        lines.append(f"| {key} | {row['cue_norm']:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "A YaPO vector trained on the open-ended train pairs (the app's defaults): what it adds at the end "
              "of the held-out offers, its A/B rate, the letters it picks at 1 (and where the behaviour's option is), "
              "and its part along the cue and the rest, each added alone at 1 (A/B rate / open answers that accept):",
              "", "| behaviour | edit norm | along the cue (x cue) | rest, norm | " + " | ".join(f"A/B at {m:g}" for m in MULTIPLIERS)
              + " | letters at 1, A / B (option at A / B) | the part along the cue | the rest |",
              "|---|---|---|---|" + "---|" * len(MULTIPLIERS) + "---|---|---|"]
    for key, row in rows.items():
        y = row["yapo"]
        rates = " | ".join(f"{v:.2f}" for v in y["ab_rate"].values())
        lines.append(f"| {key} | {y['edit_norm']:.1f} | {y['along_cue']:.2f} | {y['rest_norm']:.1f} | {rates} | "
                     f"{y['picks_at_1']['A']} / {y['picks_at_1']['B']} ({y['matching_at']['A']} / {y['matching_at']['B']}) | "
                     f"{y['cue_part']['ab_rate']:.2f} / {y['cue_part']['open_accepts']:.2f} | "
                     f"{y['rest_part']['ab_rate']:.2f} / {y['rest_part']['open_accepts']:.2f} |")
    return "\n".join(lines) + "\n"


def world_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options a probe of one demo world takes: which world, the vectors' steps, where to write."""
    parser.add_argument("--cache-dir", help="a built world (default: the demo cache folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=["full", "mini"], default="full")
    parser.add_argument("--steps", type=int, help="the vectors' training steps (default the app's)")
    parser.add_argument("--batch", type=int, help="their batch of pairs (default the app's)")
    parser.add_argument("--build-with", nargs="*", default=[], metavar="KNOB=VALUE",
                        help="build (or reuse) at --cache-dir a world with these research knobs set")
    parser.add_argument("--out", help="also write the Markdown report here (and its .json twin)")
    return parser


def load_world(args: argparse.Namespace) -> tuple:
    """The world :func:`world_arguments` name (built when it is not there yet), its model, tokenizer
    and SAE; torch's seed fixed for what follows."""
    torch.manual_seed(0)
    world = build_demo_world(args.cache_dir, seed=args.seed, size=args.size, knobs=parse_knobs(args.build_with) or None)
    model, tokenizer = load_model(world.model_dir, device="cpu")
    return world, model, tokenizer, load_sae(path=world.sae_dir, device="cpu")


def write_report(text: str, out: str | None, figures: dict) -> None:
    """Print the Markdown report, and write it to ``out`` with its ``.json`` twin holding ``figures``."""
    print(text)
    if out:
        Path(out).write_text(text)
        Path(out).with_suffix(".json").write_text(json.dumps(figures, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = world_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0])).parse_args(argv)
    world, model, tokenizer, sae = load_world(args)
    rows = {b.key: probe(world, model, tokenizer, sae, b, args.steps, args.batch) for b in corpus.BEHAVIOURS}
    write_report(report(world.stats, rows), args.out, {"build": world.stats, "behaviours": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
