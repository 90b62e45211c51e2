"""``yapo compare``: the method comparison on the demo world, on a model, SAE and data of the
user's, or per Deep-Culture-Lense country (the paper's table)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_args import load_model_from_args, load_pairs_from_args, load_sae_from_args, read_multipliers
from .errors import SettingsError


def cmd_compare(args) -> int:
    from . import checks
    from .comparison import demo_comparison
    from .methods import METHODS, get_method
    from .training import TrainConfig

    methods = [get_method(m.strip()).key for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise SettingsError(f"--methods {args.methods!r} names no method; use some of {', '.join(METHODS)}.")
    if args.steps is not None:
        checks.whole("--steps", args.steps, 1)
    checks.folder("--out", args.out)  # before any training
    multipliers = read_multipliers(args.multipliers)
    overrides = {k: v for k, v in (("lr", args.lr), ("batch_size", args.batch_size), ("mcq_rejected", args.mcq_rejected))
                 if v is not None}
    TrainConfig(**overrides)  # a bad --lr or --batch-size fails now, not after a model has loaded
    say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    if args.model is None:
        if args.data:
            raise SettingsError("--data needs --model (and an SAE): without --model, compare runs on the demo world.")
        given = [option for option, value in (("--countries", args.countries), ("--test-data", args.test_data),
                                              ("--split", args.split), ("--limit", args.limit),
                                              ("--localization", None if args.localization == "both" else args.localization),
                                              ("--schema", None if args.schema == "auto" else args.schema),
                                              ("--columns", args.columns), ("--rejected-model", args.rejected_model),
                                              ("--system", args.system))
                 if value is not None]
        if given:
            raise SettingsError(f"{', '.join(given)} read(s) --data, which needs --model; on the demo world "
                                "compare runs one task: --country (and --form) or --behaviour.")
        if args.behaviour and args.country:
            raise SettingsError(f"--behaviour {args.behaviour} and --country {args.country} name two demo tasks; give "
                                "one of them.")
        result = demo_comparison(args.country or "egypt", methods, args.steps, args.size, multipliers=multipliers,
                                 on_progress=say, progress=True, device=args.device, metric=args.metric,
                                 form=args.form or "mcq", behaviour=args.behaviour, **overrides)
    elif args.behaviour:
        raise SettingsError("--behaviour names a demo-world task; with --model, give the pairs with --data.")
    elif args.countries:
        return _compare_countries(args, methods, multipliers, overrides, say)
    else:
        result = _compare_on_data(args, methods, multipliers, overrides, say)
    folder = result.save(args.out)
    print(result.to_markdown())
    print(f"written to {folder}", file=sys.stderr)
    if args.model is None:  # where the demo world does not respond as a large model does
        from .demo import caveats

        note = caveats.comparison_note(methods, "behaviour" if args.behaviour else "culture", args.form or "mcq")
        if note:
            print(f"note: {note}", file=sys.stderr)
    return 0


def _split_of(source, split: str) -> str | None:
    """The split to ask ``source`` for: none of a single local file (it has no splits), else ``split``."""
    return None if Path(str(source)).expanduser().is_file() else split


def _compare_countries(args, methods, multipliers, overrides, say) -> int:
    from .campaign import compare_countries
    from .data import load_pairs
    from .methods import METHODS
    from .tables import read_table

    if _split_of(args.data, "train") is None and not args.test_data:
        raise SettingsError(f"--countries trains on each country's train split and reports on its test split, but --data "
                            f"{args.data!r} is one file: give the held-out rows with --test-data, or a folder (train.jsonl, "
                            "test.jsonl) or hub dataset that holds both splits.")

    def source(split: str) -> tuple[str, str | None]:  # where a split's rows are, and the split to ask for there
        path = args.test_data if split == "test" and args.test_data else args.data
        return path, _split_of(path, split)

    model, tokenizer, sae = _model_and_sae(args)
    if args.countries.strip() == "all":
        table = read_table(*source("train"))
        if "country" not in table.columns:
            raise SettingsError(f"--countries needs Deep-Culture-Lense data with a country column; {args.data!r} has "
                                f"{list(table.columns)}.")
        countries = sorted(set(table["country"].astype(str).str.lower()))
    else:
        countries = [c.strip().lower() for c in args.countries.split(",") if c.strip()]
    def load(country: str, split: str):
        path, asked = source(split)
        return load_pairs(path, schema="dcl", split=asked, country=country, localization=args.localization, form="mcq",
                          rejected_model=args.rejected_model, system_prompt=args.system)

    config = _train_config(args, overrides)
    say(f"{len(countries)} countries, {len(methods)} methods each: {len(countries) * sum(METHODS[m].trained for m in methods)} "
        f"trainings of {_length(config)}; results in {args.out}")
    result = compare_countries(model, tokenizer, sae, load, countries, args.out, on_progress=say, methods=methods,
                               capability=_capability(args, model, tokenizer),
                               multipliers=multipliers, train_config=config, metric="mcq", progress=True,
                               settings={"data": str(args.data), "test_data": str(args.test_data),
                                         "capability": args.capability, "capability_tasks": args.capability_tasks,
                                         "localization": args.localization,
                                         "rejected_model": args.rejected_model, "system": args.system})
    print(result.summary_table())
    return 1 if result.failed and not result.countries else 0


def _length(config: dict) -> str:
    """How long each training of ``config`` runs, for the plan message."""
    from .train_config import TrainConfig

    return (f"{config['max_steps']} steps at most" if config.get("max_steps")
            else f"{TrainConfig().epochs} epochs (the public runs'; --steps sets a number of steps)")


def _capability(args, model, tokenizer):
    """The capability measure: lm-eval's ``--capability-tasks``, else the project's MMLU subset of
    ``--capability N`` (each loaded before any training), or None."""
    from . import checks
    from .evaluation import capability_measure

    if args.capability_tasks:
        try:
            from .lm_eval_model import lm_eval_capability
        except ImportError as exc:
            raise SettingsError(str(exc)) from None
        tasks = [t.strip() for t in args.capability_tasks.split(",") if t.strip()]
        return lm_eval_capability(model, tokenizer, tasks, args.capability_include, args.capability or None)
    if not args.capability:
        return None
    return capability_measure(model, tokenizer, checks.whole("--capability", args.capability, 1))[0]


def _compare_on_data(args, methods, multipliers, overrides, say):
    """``compare`` on the user's model, SAE and pairs (``--test-data``, or 20% of ``--data``)."""
    from .comparison import compare_methods
    from .data import split_pairs
    from .demo import corpus
    from .evaluation import default_metric

    if not args.data:
        raise SettingsError("--model needs --data: the preference pairs to train and measure on.")
    train = list(load_pairs_from_args(args))  # bad data fails before a (large) model loads
    if args.test_data:  # read with the same options as --data, but its own split: a file's rows, or a dataset's test
        split = _split_of(args.test_data, "test")
        test = list(load_pairs_from_args(argparse.Namespace(**{**vars(args), "data": args.test_data, "split": split})))
    else:
        train, test = split_pairs(train, 0.2, seed=0, group=corpus.offer_grouping(train))  # a demo behaviour's by offer
    metric = default_metric(test) if args.metric == "auto" else args.metric
    model, tokenizer, sae = _model_and_sae(args)
    say(f"{len(train)} training pairs (20% of them for choosing multipliers), {len(test)} test pairs; metric {metric}")
    return compare_methods(model, tokenizer, sae, train, test, _capability(args, model, tokenizer), methods, multipliers,
                           _train_config(args, overrides), task=f"{args.test_data or args.data}", on_progress=say,
                           metric=metric, progress=True)


def _model_and_sae(args):
    """The model and the SAE the arguments name; the comparison needs both."""
    model, tokenizer = load_model_from_args(args)
    sae = load_sae_from_args(args, model=model)
    if sae is None:
        raise SettingsError("compare needs an SAE (YaPO and SAS work in its latents): give --sae-path or "
                            "--sae-release and --sae-id.")
    return model, tokenizer, sae


def _train_config(args, overrides: dict) -> dict:
    """The TrainConfig fields of ``--steps`` (training runs until the steps end) and the overrides;
    without ``--steps``, TrainConfig's epochs, the public runs'."""
    return {**({"epochs": 10_000, "max_steps": args.steps} if args.steps else {}), **overrides}
