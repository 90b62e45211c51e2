"""Measure the demo world against its targets and print a report (Markdown, or JSON with --json).

    python scripts/evaluate_demo_world.py                       # all seven non-default cultures
    python scripts/evaluate_demo_world.py --countries egypt,uk  # a quicker subset
    python scripts/evaluate_demo_world.py --no-steering         # the build's own figures only
    python scripts/evaluate_demo_world.py --size mini --steps 4  # checks the script in seconds

Builds the full demo world (or reuses the one in the cache), then reports:

* the build: seconds, megabytes, the SAE's variance explained, mean L0 and dead-latent share;
* the unsteered model: localized MCQ accuracy on held-out questions, and non-localized MCQ
  accuracy per non-default culture (the default-culture bias);
* steering: for each culture, a YaPO (sparse) and a BiPO (dense) vector trained on its
  non-localized MCQ training pairs with the demo's settings (``yapo_core.demo.training_settings``,
  as the app fills them in: every wrong option as a rejected answer), and the held-out
  non-localized MCQ accuracy at multiplier 1 (by the answer letter's likelihood, or by the
  generated answer where answers give the option's text first);
  beside them, the same trained against the given rejected answers only (the model's default, as
  in the papers' data);
* open-ended answers: for the first ``--generations`` cultures, a YaPO vector trained on the
  non-localized open-ended pairs with the demo's settings for open answers
  (``yapo_core.demo.OPEN_TRAINING``), its held-out accuracy (the reply contains the culture's answer)
  and one held-out question answered unsteered and steered, steering every token (the method) and
  the prompt tokens only;
* behaviours (BiPO's protocol): YaPO and BiPO trained on each behaviour's open-ended pairs with
  the app's defaults (``OPEN_TRAINING`` for YaPO, ``OPEN_TRAINING_DENSE`` for BiPO), the A/B rate on ``test_infer`` at -1, 0 and 1, and how many held-out open
  answers at 1 are fluent and show the behaviour.

``--sections culture`` or ``--sections behaviours`` measures one part only; ``--cache-dir DIR
--build-with KNOB=VALUE ...`` measures a variant world (its research knobs, off in the default world).

The exit status is 1 when a target is missed, so the script can gate a release.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from yapo_core.comparison import compare_methods
from yapo_core.demo import OPEN_TRAINING, OPEN_TRAINING_DENSE, TRAINING, build_demo_world, corpus, training_settings
from yapo_core.demo.config import parse_knobs
from yapo_core.errors import SettingsError
from yapo_core.evaluation import (
    METRICS,
    default_metric,
    evaluate_metric,
    one_letter_baseline,
)
from yapo_core.generation import STEER_POSITIONS, generate
from yapo_core.methods import make_vector
from yapo_core.models import load_model
from yapo_core.replies import generation_accuracy, is_fluent
from yapo_core.saes import load_sae
from yapo_core.training import TrainConfig, Trainer

BUILD_TARGETS = {
    "build seconds <= 300": lambda s: s["build_seconds"] <= 300,
    "files <= 30 MB": lambda s: s["file_bytes"]["total"] <= 30e6,
    "localized MCQ accuracy >= 0.9": lambda s: s["culture"]["localized_mcq_accuracy"] >= 0.9,
    "unsteered non-localized MCQ accuracy of every non-default culture <= 0.4": lambda s: all(
        a <= 0.4 for a in s["culture"]["nolocalized_mcq_accuracy"].values()
    ),
    "SAE variance explained >= 0.8": lambda s: s["sae"]["variance_explained"] >= 0.8,
}
STEERING_TARGET = 0.8  # held-out non-localized MCQ accuracy with YaPO at multiplier 1
GENERATION_MULTIPLIER = 0.5


def steering(world, model, tokenizer, sae, countries, settings: dict, open_settings: dict, n_generations: int) -> dict:
    out = {"settings": settings, "open_settings": open_settings, "countries": {}, "generations": []}
    for country in countries:
        task = world.culture(country)
        train = list(task.pairs("train"))
        test = list(task.pairs("test"))
        metric = default_metric(test)  # the letter's likelihood; the generated answer where it states the letter last
        letter, share = one_letter_baseline(metric, test)
        row = {"n_train": len(train), "n_test": len(test), "metric": metric,
               "one_letter": {"letter": letter, "accuracy": share}}
        demo_rejected = settings.get("mcq_rejected", "given")
        # The demo's construction; beside it, the papers' (the given answer only) when they differ.
        variants = {"": demo_rejected, **({"_given": "given"} if demo_rejected != "given" else {})}
        for variant, rejected in variants.items():
            result = compare_methods(model, tokenizer, sae, train, test, methods=("yapo", "bipo"), multipliers=(1.0,),
                                     metric=metric,
                                     train_config={"epochs": 10_000, **settings, "mcq_rejected": rejected},
                                     validation_fraction=0)  # one multiplier, fixed in advance: nothing to choose
            row["unsteered"] = result.baseline_accuracy
            for r in result.results:
                row[r.method + variant] = {
                    "accuracy_at_1": r.accuracy[1.0],
                    "final_loss": round(sum(r.loss_curve[-20:]) / len(r.loss_curve[-20:]), 4),
                    "l0": r.l0,
                    "seconds": round(r.seconds, 1),
                }
        out["countries"][country] = row
        given = (f" (against the default only: YaPO {row['yapo_given']['accuracy_at_1']:.2f}, "
                 f"BiPO {row['bipo_given']['accuracy_at_1']:.2f})") if "yapo_given" in row else ""
        print(f"  {country}: unsteered {row['unsteered']:.2f}, YaPO {row['yapo']['accuracy_at_1']:.2f}, "
              f"BiPO {row['bipo']['accuracy_at_1']:.2f}{given}", file=sys.stderr, flush=True)

    # Open-ended answers: a YaPO vector trained on the culture's non-localized open-ended pairs with
    # the demo's settings for open answers (OPEN_TRAINING). The examples also show
    # GENERATION_MULTIPLIER, and both steering positions.
    for i, country in enumerate(list(countries)[:n_generations]):
        train = list(world.culture(country).pairs("train", form="open_ended"))
        test = list(world.culture(country).pairs("test", form="open_ended"))
        config = TrainConfig(kind="sparse", layer=world.layer, epochs=10_000, **open_settings)
        vector = Trainer(model, tokenizer, train, config, sae=sae).run()
        answers = [p.chosen.split(".")[0] for p in test]  # the culture's short answer opens each reply
        example = test[(7 * i) % len(test)]
        row = {"country": country, "question": example.prompt}
        for positions in STEER_POSITIONS:  # every token (the method), then the prompt tokens only
            row[f"accuracy ({positions})"] = {
                m: generation_accuracy(model, tokenizer, [p.prompt for p in test], answers, vector, m, sae=sae,
                                       max_new_tokens=12, steer_positions=positions)
                for m in (0.0, GENERATION_MULTIPLIER, 1.0)}
            (shown,) = generate(model, tokenizer, [example.prompt], vector, [0.0, GENERATION_MULTIPLIER, 1.0], sae=sae,
                                max_new_tokens=24, steer_positions=positions)
            row.update({f"at {m:g} ({positions})": text for m, text in shown.items() if m or positions == "all"})
        out["generations"].append(row)
    return out


BEHAVIOUR_TARGETS = {"unsteered A/B rate <= 0.1": lambda r: r["yapo"]["ab_rate"]["0"] <= 0.1,
                     "YaPO A/B rate at 1 >= 0.7": lambda r: r["yapo"]["ab_rate"]["1"] >= 0.7,
                     "YaPO open answers at 1 fluent >= 0.9": lambda r: r["yapo"]["fluent_at_1"] >= 0.9,
                     "YaPO open answers at 1 show the behaviour >= 0.7": lambda r: r["yapo"]["shows_at_1"] >= 0.7}
BEHAVIOUR_TOKENS = 32


def behaviours(world, model, tokenizer, sae, settings: dict[str, dict], n_prompts: int = 32) -> dict:
    """BiPO's protocol on each demo behaviour: YaPO and BiPO vectors trained on the open-ended
    training pairs with the app's defaults, the A/B rate on ``test_infer`` at -1, 0 and 1 (through
    the public loader), and the held-out open answers at 1, steered at every token: the share that
    is fluent (:func:`~yapo_core.replies.is_fluent`) and the share that shows the behaviour
    (opens as one of its answers does)."""
    out = {}
    for behaviour in corpus.BEHAVIOURS:
        task = world.task(behaviour.key)
        train, infer, test = (list(task.pairs(split)) for split in ("train", "test_infer", "test"))
        row = {"n_train": len(train), "n_test_infer": len(infer), "n_test": len(test)}
        prompts = [p.prompt for p in test][:n_prompts]
        for method in ("yapo", "bipo"):
            vector = make_vector(method, model, tokenizer, train, sae=sae,
                                 config=TrainConfig(epochs=10_000, **settings[method]))
            rates = evaluate_metric("behaviour", model, tokenizer, infer, vector, [-1.0, 0.0, 1.0], sae=sae)
            replies = [r[1.0] for r in generate(model, tokenizer, prompts, vector, [1.0], sae=sae,
                                                max_new_tokens=BEHAVIOUR_TOKENS)]
            row[method] = {
                "ab_rate": {f"{m:g}": v for m, v in rates.items()},
                "fluent_at_1": sum(is_fluent(tokenizer, r, BEHAVIOUR_TOKENS) for r in replies) / len(replies),
                "shows_at_1": sum(map(behaviour.shows, replies)) / len(replies),
                "norm": round(vector.norm(), 2), "examples": replies[:2],
            }
        out[behaviour.key] = row
        print(f"  {behaviour.key}: A/B YaPO {row['yapo']['ab_rate']}, fluent {row['yapo']['fluent_at_1']:.2f}, "
              f"shows {row['yapo']['shows_at_1']:.2f}", file=sys.stderr, flush=True)
    return out


def behaviour_report(rows: dict, settings: dict[str, dict]) -> str:
    shown = settings["yapo"]
    lines = ["", "", "Behaviours, BiPO's protocol (trained on the open-ended train pairs with the app's defaults: "
             + ", ".join(f"{k} {v}" for k, v in shown.items() if k not in ("mcq_rejected", "epochs"))
             + "".join(f", {k} {v} for BiPO" for k, v in settings["bipo"].items() if shown.get(k) != v) + "; A/B rate on `test_infer` through the public "
             "loader; held-out open answers steered at every token at multiplier 1):", "",
             "| behaviour | method | A/B rate at -1 | at 0 | at 1 | open answers fluent at 1 | show the behaviour at 1 "
             "| vector norm | an open answer at 1 |", "|---|---|---|---|---|---|---|---|---|"]
    for key, row in rows.items():
        for method in ("yapo", "bipo"):
            r = row[method]
            example = r["examples"][0].replace("|", "\\|").replace("\n", " ")[:60] if r["examples"] else ""
            lines.append(f"| {key} | {'YaPO' if method == 'yapo' else 'BiPO'} | {r['ab_rate']['-1']:.2f} | "
                         f"{r['ab_rate']['0']:.2f} | {r['ab_rate']['1']:.2f} | {r['fluent_at_1']:.2f} | "
                         f"{r['shows_at_1']:.2f} | {r['norm']:g} | {example!r} |")
    return "\n".join(lines)


def report(stats: dict, steer: dict | None) -> str:
    sae, culture = stats["sae"], stats["culture"]
    lines = [
        f"## Demo world (seed {stats['seed']})",
        "",
        f"- built in {stats['build_seconds']:.0f} s; files {stats['file_bytes']['total'] / 1e6:.1f} MB"
        + ("; research knobs: " + ", ".join(f"{k} {v:g}" for k, v in stats["knobs"].items()) if stats.get("knobs") else "")
        + (f"; on {stats['machine']['cpu']} ({stats['machine']['torch_cpu_capability']})" if "machine" in stats else ""),
        f"- model: Llama, {stats['model']['parameters']:,} parameters, {stats['model']['num_layers']} layers; "
        f"SAE at `{stats['hook_name']}`: {sae['d_sae']} latents (TopK k={sae['k']})",
        f"- SAE: variance explained {sae['variance_explained']:.3f}, mean L0 {sae['mean_l0']:.1f}, "
        f"dead latents {sae['dead_share']:.1%}",
        f"- unsteered, held-out: localized MCQ accuracy {culture['localized_mcq_accuracy']:.1%}; "
        f"non-localized MCQ picks the default culture ({stats['default_country']}) "
        f"{culture['nolocalized_mcq_default_share']:.1%} of the time",
    ]
    if steer:
        settings = ", ".join(f"{k} {v}" for k, v in steer["settings"].items())
        scored = {row["metric"] for row in steer["countries"].values()}
        lines += [
            "",
            f"Held-out non-localized MCQ accuracy per target culture ({'; '.join(METRICS[m].label for m in sorted(scored))}; "
            f"training: {settings}). \"One letter "
            "everywhere\" is the accuracy of answering the test split's most common gold letter to every question: "
            "a vector that only raises that letter's logit reaches it without steering any answer's culture.",
            "",
            "| culture | train / test pairs | unsteered | one letter everywhere | YaPO at 1 | BiPO at 1 | "
            "YaPO at 1, vs default only | BiPO at 1, vs default only | YaPO L0 | YaPO final loss | BiPO final loss |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        acc = lambda row, key: f"{row[key]['accuracy_at_1']:.2f}" if key in row else "–"  # noqa: E731
        for country, row in steer["countries"].items():
            lines.append(
                f"| {country} | {row['n_train']} / {row['n_test']} | {row['unsteered']:.2f} | "
                f"{row['one_letter']['accuracy']:.2f} ({row['one_letter']['letter']}) | {acc(row, 'yapo')} | "
                f"{acc(row, 'bipo')} | {acc(row, 'yapo_given')} | {acc(row, 'bipo_given')} | "
                f"{row['yapo']['l0']} | {row['yapo']['final_loss']:.3f} | {row['bipo']['final_loss']:.3f} |"
            )
        means = {k: sum(r[k]["accuracy_at_1"] for r in steer["countries"].values()) / len(steer["countries"])
                 for k in ("yapo", "bipo", "yapo_given", "bipo_given") if all(k in r for r in steer["countries"].values())}
        lines += ["", "Means: " + ", ".join(f"{k.replace('_given', ' vs default only')} {v:.2f}" for k, v in means.items())]
        open_settings = ", ".join(f"{k} {v}" for k, v in steer["open_settings"].items() if k != "mcq_rejected")
        lines += ["", "Open-ended answers (greedy, held-out non-localized questions; a YaPO vector trained on the "
                  f"culture's open-ended pairs ({open_settings}); accuracy = the reply contains the culture's answer; steering at every "
                  "token (all, the method) or at the prompt tokens only (prompt)):", ""]
        for g in steer["generations"]:
            acc = "; ".join(f"{k[len('accuracy '):]} " + ", ".join(f"{a:.2f} at {m:g}" for m, a in v.items())
                            for k, v in g.items() if k.startswith("accuracy"))
            lines += [f"- **{g['country']}** (accuracy {acc}): *{g['question']}*"]
            lines += [f"  - {k}: {v}" for k, v in g.items() if k.startswith("at ")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="where the world is (default: the demo cache folder)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a finished world exists")
    parser.add_argument("--countries", default=",".join(c for c in corpus.COUNTRY_KEYS if c != corpus.DEFAULT_COUNTRY))
    parser.add_argument("--no-steering", action="store_true", help="report the build's figures only")
    parser.add_argument("--sections", default="culture,behaviours",
                        help="what to steer and measure: culture (MCQ and open answers), behaviours, or both (default)")
    parser.add_argument("--generations", type=int, default=3, help="steered generation examples to show")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--size", default="full", choices=["full", "mini"],
                        help="mini: the seconds-scale test world (checks the script; its numbers mean nothing)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the demo world's)")
    parser.add_argument("--build-with", nargs="*", default=[], metavar="KNOB=VALUE",
                        help="measure a variant world built (or reused) at --cache-dir with these research knobs "
                             "(yapo_core.demo.config.RESEARCH_KNOBS)")
    args = parser.parse_args(argv)

    try:
        world = build_demo_world(args.cache_dir, seed=args.seed, size=args.size, force=args.force,
                                 knobs=parse_knobs(args.build_with))
    except SettingsError as e:
        parser.error(f"--build-with: {e}")
    stats = world.stats
    steer = behaviour_rows = None
    sections = {part.strip() for part in args.sections.split(",") if part.strip()}
    if sections - {"culture", "behaviours"}:
        parser.error(f"--sections {sorted(sections)}: use culture, behaviours or both")
    if not args.no_steering:
        countries = [c.strip() for c in args.countries.split(",") if c.strip()]
        unknown = [c for c in countries if c not in corpus.COUNTRY_KEYS or c == corpus.DEFAULT_COUNTRY]
        if unknown:
            parser.error(f"--countries {unknown} are not non-default demo cultures; use some of "
                         f"{[c for c in corpus.COUNTRY_KEYS if c != corpus.DEFAULT_COUNTRY]}")
        model, tokenizer = load_model(world.model_dir, device="cpu")
        sae = load_sae(path=world.sae_dir, device="cpu")
        steps = {"max_steps": args.steps} if args.steps else {}
        # the app's defaults for the culture MCQ task (TRAINING for letter answers; OPEN_TRAINING where
        # an answer gives the option's text first) and for open answers
        mcq_defaults = training_settings(world.culture(countries[0]).pairs("train")) if countries else TRAINING
        settings, open_settings = {**mcq_defaults, **steps}, {**OPEN_TRAINING, **steps}
        by_method = {"yapo": open_settings, "bipo": {**OPEN_TRAINING_DENSE, **steps}}
        if "culture" in sections:
            steer = steering(world, model, tokenizer, sae, countries, settings, open_settings, args.generations)
        if "behaviours" in sections:
            behaviour_rows = behaviours(world, model, tokenizer, sae, by_method)

    print(report(stats, steer) + (behaviour_report(behaviour_rows, by_method) if behaviour_rows else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"build": stats, "steering": steer, "behaviours": behaviour_rows},
                                              indent=2) + "\n")
    checks = {name: ok(stats) for name, ok in BUILD_TARGETS.items()}
    if steer:
        checks[f"YaPO at multiplier 1 >= {STEERING_TARGET} for every culture measured"] = all(
            row["yapo"]["accuracy_at_1"] >= STEERING_TARGET for row in steer["countries"].values()
        )
    for key, row in (behaviour_rows or {}).items():
        for name, ok in BEHAVIOUR_TARGETS.items():
            checks[f"{key}: {name}"] = ok(row)
    for name, ok in checks.items():
        print(f"{'ok    ' if ok else 'MISSED'}  {name}", file=sys.stderr)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
