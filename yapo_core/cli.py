"""Command line: ``yapo {train,generate,features,export,eval,compare,lm-eval,demo} ...`` (or ``python -m yapo_core``;
``--help`` on each). Imports of the heavy parts wait until a command runs, so ``--help`` is fast."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from .cli_args import (
    add_data_args,
    add_model_args,
    add_sae_args,
    eval_pairs,
    in_cli_terms,
    load_model_from_args,
    load_sae_from_args,
    load_vector_from_args,
    read_multipliers,
)
from .errors import SettingsError, YapoError


def build_parser() -> argparse.ArgumentParser:
    from .evaluation import GENERATING_METRICS, METRICS, SPECIFIC_FIRST, TARGET_METRICS
    from .generation import STEER_POSITIONS
    from .methods import METHODS
    from .options import MCQ_REJECTED
    from .training import TrainConfig

    parser = argparse.ArgumentParser(prog="yapo", description="Train, apply, inspect, evaluate and export sparse (YaPO) "
                                     "and dense (BiPO) steering vectors, and the CAA and SAS baselines. "
                                     "'yapo COMMAND --help' for each command; 'yapo demo --help' for the demo world.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a sparse (YaPO) or dense (BiPO) vector from preference pairs")
    add_model_args(t)
    add_sae_args(t)
    add_data_args(t)
    t.add_argument("--out", required=True, help="where to write the .safetensors vector")
    t.add_argument("--checkpoint", help="also write the optimizer state here when the run ends or is stopped "
                   "(a .safetensors file that --resume continues from exactly)")
    t.add_argument("--resume", help="a --checkpoint file to continue from, or a vector file to start from")
    t.add_argument("--allow-other-model", action="store_true",
                   help="with --resume: start from a vector file trained on another model")
    t.add_argument("--history", metavar="FILE", help="write each step's metrics (loss, reward accuracy, margin, "
                   "norm, L0, ...) as JSON lines, and the training curves beside it (.html), as the Train page shows")
    from .objectives import ENGINES

    defaults = TrainConfig()
    explained = {  # name: (what it does, its choices)
        "kind": ("sparse: YaPO, in the SAE's latents; dense: BiPO, in the residual stream", ("sparse", "dense")),
        "layer": ("the block whose output a dense vector steers (a sparse vector takes the SAE's block)", None),
        "max_steps": ("stop after this many steps (default: run the epochs)", None),
        "engine": ("fast: the steered block's activations cached, only the blocks after it run; simple: the whole "
                   "model each step; auto: fast where it applies", tuple(ENGINES)),
        "checkpoint_dir": ("folder for the checkpoints of --checkpoint-every", None),
        "cache_dir": ("folder where the fast engine keeps its activation cache on disk", None),
        "cache_in_memory": ("keep the activation cache in memory (default: unless too large and --cache-dir is set)",
                            None),
        "mcq_rejected": ("given: each pair's own rejected answer (the papers'); every_option: multiple-choice pairs "
                         "against every wrong option", tuple(MCQ_REJECTED)),
    }
    for f in fields(TrainConfig):  # unset: None, so that a demo-world model's own settings can fill it
        default, flag = getattr(defaults, f.name), f"--{f.name.replace('_', '-')}"
        what, choices = explained.get(f.name, ("", None))
        shown = "" if default is None or f.name == "max_steps" else f"default: {default}"
        text = f"{what} ({shown})" if what and shown else what or shown
        if isinstance(default, bool) or f.name == "cache_in_memory":
            t.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif default is None:
            t.add_argument(flag, type=int if f.name in ("layer", "max_steps") else str, default=None, help=text)
        else:
            t.add_argument(flag, type=type(default), default=None, choices=choices, help=text)
    t.epilog = ("On a demo world's model (yapo demo info), the training settings not given are the demo world's "
                "for these pairs, as the app fills them in (yapo_core.demo.training_settings).")

    g = sub.add_parser("generate", help="print steered and unsteered answers side by side")
    add_model_args(g)
    add_sae_args(g)
    g.add_argument("--vector", required=True, help=".safetensors vector file")
    g.add_argument("--prompt", action="append", required=True, help="prompt (repeat for several)")
    g.add_argument("--multipliers", default="0,1", help="comma-separated, 0 = unsteered (default 0,1)")
    g.add_argument("--system", help="system prompt")
    g.add_argument("--chosen", action="append", help="with --rejected, one per --prompt in order: the pair's answers; "
                   "each answer is read against them as the app's Compare page reads a test pair's")
    g.add_argument("--rejected", action="append", help="with --chosen: the pair's rejected answer, one per --prompt")
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=None, help="with --sample (default 1)")
    g.add_argument("--top-p", type=float, default=None, help="with --sample (default 1)")
    g.add_argument("--steer-positions", default="all", choices=STEER_POSITIONS,
                   help="all: every prompt and generated token (the method, default); prompt: the prompt tokens only")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--allow-other-model", action="store_true", help="apply a vector trained on another model id")

    from .cli_features import add_parser as add_features_parser

    add_features_parser(sub)

    e = sub.add_parser("export", help="export a vector as a llama.cpp GGUF control vector")
    e.add_argument("--vector", required=True, help=".safetensors vector file")
    e.add_argument("--out", required=True, help="output .gguf path")
    e.add_argument("--multiplier", type=float, default=1.0, help="scale baked into the file (default 1); for a sparse vector, export a negative multiplier here "
                   "rather than giving llama.cpp a negative strength, which is not the same")
    e.add_argument("--model", help="model (for the layer count and architecture hint)")
    e.add_argument("--device", default="cpu", help="where --model is loaded (default cpu)")
    e.add_argument("--dtype", default="fp32", help="--model's dtype: fp32 (default), bf16 or fp16")
    e.add_argument("--trust-remote-code", action="store_true")
    e.add_argument("--allow-other-model", action="store_true", help="with --model: export a vector trained on another "
                   "model for this one")
    add_sae_args(e)

    v = sub.add_parser("eval", help="measure a vector (or the unsteered model) over a multiplier sweep")
    add_model_args(v)
    add_sae_args(v)
    add_data_args(v)
    v.add_argument("--vector", help=".safetensors vector file (omit to measure the unsteered model)")
    v.add_argument("--metric", default="auto", choices=["auto", *METRICS],
                   help="auto (default): the most specific metric that can score the data ("
                   + ", ".join(SPECIFIC_FIRST[:-1]) + f", else {SPECIFIC_FIRST[-1]}); "
                   + "; ".join(f"{m.key}: {m.label}, on {m.needs}" for m in METRICS.values()))
    v.add_argument("--multipliers", default="-2,-1,-0.5,0,0.5,1,2", help="sweep, comma-separated")
    v.add_argument("--steer-positions", default="all", choices=STEER_POSITIONS,
                   help=f"metrics that generate answers ({', '.join(GENERATING_METRICS)}): steer every token "
                   "(the method, default) or the prompt tokens only")
    v.add_argument("--out", help="write the sweep as JSON, and a plot beside it (.html)")
    v.add_argument("--allow-other-model", action="store_true", help="apply a vector trained on another model")
    v.add_argument("--capability", type=int, default=0, metavar="N",
                   help="with --vector: also the change in general ability at each multiplier, on the demo world's "
                   "general questions for its model, else on N MMLU questions (cais/mmlu, needs the Hub or its cache)")

    c = sub.add_parser("compare", help="YaPO, BiPO, CAA and SAS on one task: a demo-world culture (--country, default "
                       "egypt; --form mcq or open_ended) or behaviour (--behaviour), or your model, SAE and data; each "
                       "method's multiplier is chosen on a validation split")
    add_model_args(c, required=False)
    add_sae_args(c)
    add_data_args(c, required=False)
    c.add_argument("--test-data", help="held-out pairs (a file's rows, or a folder's or dataset's test split), read with "
                   "the same options as --data (default: 20%% of --data set aside; with --countries, --data's test split)")
    c.add_argument("--metric", default="auto", choices=["auto", *TARGET_METRICS], help="default: as for eval")
    c.add_argument("--capability", type=int, default=0, metavar="N",
                   help="with --model: the capability change at each chosen multiplier on N MMLU questions (cais/mmlu, "
                   "needs the Hub or its cache; default 0: not measured). The demo world uses its general questions.")
    c.add_argument("--capability-tasks", metavar="TASKS",
                   help="with --model: measure the capability change with these lm-evaluation-harness tasks instead "
                   "(e.g. mmlu; --capability N then limits each to N questions; needs pip install -e \".[eval]\")")
    c.add_argument("--capability-include", metavar="DIR", help="a folder of lm-eval task YAML files (local tasks)")
    c.add_argument("--countries", help="Deep-Culture-Lense data (--data with its train and test splits, or one file "
                   "and --test-data): 'all' or a "
                   "comma-separated list; one comparison per country, stored as it goes and resumed when run again, "
                   "and the paper's table (average MCQ accuracy per method) in <out>/summary.md")
    c.add_argument("--behaviour", metavar="NAME", help="without --model: a demo-world behaviour (power-seeking, "
                   "wealth-seeking), trained on its open answers and measured by BiPO's protocol, its A/B rate on its "
                   "test_infer questions (--metric behaviour_open: its held-out open answers)")
    c.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    c.add_argument("--steps", type=int, default=None, help="training steps for YaPO and BiPO (default: the demo world's; with --model, "
                   "the public runs' 20 epochs)")
    c.add_argument("--size", default="full", choices=["full", "mini"], help="demo world: full (default; 3 to 7 minutes to build once on 2 quiet cores, up to 10 beside other work) or mini (seconds; steers nothing)")
    c.add_argument("--multipliers", default="-2,-1.5,-1,-0.5,0,0.5,1,1.5,2",
                   help="each method's candidates, one chosen on the validation split (default -2 to 2 by 0.5)")
    c.add_argument("--lr", type=float, default=None, help="default: the demo world's (yapo_core.demo.TRAINING); with --model, the "
                   "public runs' 5e-4")
    c.add_argument("--batch-size", type=int, default=None, help="default: the demo world's; with --model, the public "
                   "runs' 4")
    c.add_argument("--mcq-rejected", default=None, choices=MCQ_REJECTED,
                   help="given: each pair's own rejected answer; every_option: every wrong option "
                        "(default: the demo world's, every_option)")
    c.add_argument("--out", default="runs/comparison", help="folder for the table and plots")

    sub.add_parser("lm-eval", help="lm-evaluation-harness with a steered model: --model yapo --model_args "
                   "pretrained=...,vector=...,multiplier=1 --tasks mmlu (needs pip install -e \".[eval]\")",
                   add_help=False)
    d = sub.add_parser("demo", help="build or describe the built-in demo world", add_help=False)
    d.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def cmd_generate(args) -> int:
    from .data import PreferencePair
    from .generation import generate
    from .replies import demo_behaviour, reply_verdict, steering_derails

    given = [flag for flag, value in (("--temperature", args.temperature), ("--top-p", args.top_p)) if value is not None]
    if given and not args.sample:
        raise SettingsError(f"{' and '.join(given)} set{'s' if len(given) == 1 else ''} how answers are sampled, and "
                            "without --sample they are decoded greedily: add --sample, or leave it out.")
    pairs = [None] * len(args.prompt)
    if args.chosen or args.rejected:
        counts = [len(args.prompt), len(args.chosen or []), len(args.rejected or [])]
        if len(set(counts)) > 1:
            raise SettingsError("--chosen and --rejected come one each per --prompt, in order: {} prompts, {} chosen and "
                                "{} rejected answers given.".format(*counts))
        pairs = [PreferencePair(*texts) for texts in zip(args.prompt, args.chosen, args.rejected)]
    model, tokenizer = load_model_from_args(args)
    vector, sae = load_vector_from_args(args, model)
    multipliers = read_multipliers(args.multipliers)
    results = generate(model, tokenizer, args.prompt, vector, multipliers, sae=sae, system=args.system,
                       max_new_tokens=args.max_new_tokens, do_sample=args.sample,
                       temperature=1.0 if args.temperature is None else args.temperature,
                       top_p=1.0 if args.top_p is None else args.top_p, seed=args.seed,
                       steer_positions=args.steer_positions)
    for prompt, pair, answers in zip(args.prompt, pairs, results):
        print(f"### prompt: {prompt}")
        for m, text in answers.items():
            label = "unsteered" if m == 0 else f"steered x{m:g}"
            print(f"--- {label}:\n{text}")
            if pair is not None:  # which of the pair's answers it gives, as the metrics read it
                print(f"(reads as: {reply_verdict(pair, text, demo_behaviour([pair]))[1]})")
            problem = None if m == 0 else steering_derails(tokenizer, text, answers.get(0.0), args.max_new_tokens)
            if problem:  # as the app's Compare page says under the answers
                print(f"(note: the steered text derails: {problem}; a smaller multiplier, or --steer-positions "
                      "prompt, may keep it fluent)")
    return 0


def cmd_export(args) -> int:
    from .export import check_gguf_path, export_gguf, load_vector

    check_gguf_path(args.out)  # before a (large) model loads
    vector = load_vector(args.vector)
    sae = load_sae_from_args(args, vector)
    model = None
    if args.model:
        model, _ = load_model_from_args(args)
    info = export_gguf(vector, args.out, model=model, sae=sae, multiplier=args.multiplier,
                       allow_other_model=args.allow_other_model)
    if info["dropped_fraction"]:
        print(f"note: {info['dropped_fraction']:.1%} of the vector (negative latents) has no dense "
              "equivalent and was dropped; the GGUF file is an approximation.", file=sys.stderr)
    print(json.dumps(info))
    return 0


def cmd_eval(args) -> int:
    from . import checks
    from .evaluation import (
        capability_change,
        capability_measure,
        evaluate_metric,
        get_metric,
        one_letter_baseline,
        one_letter_label,
    )
    from .export import check_output_path
    from .plots import multiplier_sweep

    if args.out:
        out = check_output_path(args.out, "sweep.json")  # before the sweep, not after
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingsError(f"--out {args.out!r}: its folder cannot be made ({exc}); choose another path.") from None
    multipliers = read_multipliers(args.multipliers)
    if args.capability and not args.vector:
        raise SettingsError("--capability measures what a vector changes: give --vector too.")
    n_capability = checks.whole("--capability", args.capability, 1) if args.capability else 0
    pairs, args.metric, split = eval_pairs(args)  # bad data fails before a (large) model loads
    pairs = list(pairs)
    model, tokenizer = load_model_from_args(args)
    vector = sae = None
    if args.vector:
        vector, sae = load_vector_from_args(args, model)
    capability = capability_measure(model, tokenizer, n_capability) if n_capability else None  # before the sweep
    print(f"metric: {get_metric(args.metric).label}" + (f", on the {split} split" if split else ""), file=sys.stderr)
    curve = evaluate_metric(args.metric, model, tokenizer, pairs, vector, multipliers, sae=sae,
                            steer_positions=args.steer_positions)
    result = {"metric": get_metric(args.metric).key, "split": split, "n": len(pairs), "by_multiplier": {f"{m:g}": v for m, v in curve.items()}}
    letter = one_letter_baseline(args.metric, pairs)
    if letter is not None:  # what raising one letter everywhere would score
        result["one_letter"] = {"letter": letter[0], "accuracy": letter[1]}
    if capability is not None:
        measure, what = capability
        unsteered = measure()
        result["capability"] = {"measure": what, "unsteered": unsteered, "change_by_multiplier": {
            f"{m:g}": capability_change(measure, model, vector, m, sae, unsteered=unsteered)["change"] for m in curve}}
    print(json.dumps(result))
    if args.out:
        out.write_text(json.dumps(result, indent=2))
        fig = multiplier_sweep([(vector.method if vector else "unsteered", list(curve.items()))],
                               y_title=get_metric(args.metric).label,
                               references=[(one_letter_label(letter[0]), letter[1])] if letter else ())
        fig.write_html(out.with_suffix(".html"), include_plotlyjs="cdn")
    return 0


def _lm_eval(rest: list[str]) -> int:
    try:
        from .lm_eval_model import main as lm_eval_main
    except ImportError as exc:
        raise SettingsError(f"{exc}") from None
    return lm_eval_main(rest)


def cmd_demo(rest: list[str]) -> int:
    from .demo.cli import main as demo_main

    return demo_main(rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:  # the demo build fixes its own thread count (its files depend on it)
        return _guarded(lambda: cmd_demo(argv[1:]))
    if argv[:1] == ["lm-eval"]:  # lm-eval's own command line, with the steered "yapo" model registered
        return _guarded(lambda: _lm_eval(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    from .cli_compare import cmd_compare
    from .cli_features import cmd_features
    from .cli_train import cmd_train

    handler = {"train": lambda a: cmd_train(a, parser), "generate": cmd_generate, "features": cmd_features,
               "export": cmd_export, "eval": cmd_eval, "compare": cmd_compare}[args.command]
    return _guarded(lambda: handler(args))


def entry() -> int:
    """The ``yapo`` command: :func:`main` with torch using the cores available to the process
    (in-process callers of :func:`main` keep their own thread settings)."""
    from .models import use_available_cores

    use_available_cores()
    return main()


def _guarded(fn) -> int:
    try:
        return fn()
    except YapoError as exc:
        print(f"error: {in_cli_terms(str(exc), build_parser())}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that could not be read or written (a full disk, a mount gone read-only),
        if exc.filename:  # or a connection a loader did not explain
            print(f"error: could not read or write {str(exc.filename)!r}: {exc.strerror or exc}.", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
