"""The command line's shared arguments: a model, an SAE, preference data, multipliers; and how
each is loaded from them."""

from __future__ import annotations

import argparse

from .errors import ADVICE, YapoError


def add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, help="Hugging Face id or local folder of a causal LM"
                   + ("" if required else " (default: the demo world's)"))
    p.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    p.add_argument("--device-map", default=None,
                   help="'auto': spread a model too large for one GPU over all visible GPUs (accelerate)")
    p.add_argument("--dtype", default="fp32", help="fp32 (default), bf16 or fp16")
    p.add_argument("--trust-remote-code", action="store_true", help="run the model repo's own code (off by default)")


def add_sae_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sae-release", help="sae-lens release, e.g. gemma-scope-2b-pt-res-canonical")
    p.add_argument("--sae-id", help="SAE id within the release, e.g. layer_15/width_65k/canonical")
    p.add_argument("--sae-path", help="local SAE folder written by sae-lens (instead of release/id)")


def load_model_from_args(args):
    from .models import load_model

    return load_model(args.model, args.device, args.dtype, args.trust_remote_code,
                      device_map=getattr(args, "device_map", None))


def load_sae_from_args(args, vector=None, model=None):
    """The SAE the arguments (or the vector's provenance) name; beside its block of ``model``."""
    from .saes import load_sae_for

    return load_sae_for(vector, args.sae_release, args.sae_id, args.sae_path, model,
                        device="cpu" if model is not None else args.device,
                        how="pass --sae-path or --sae-release/--sae-id")


def load_vector_from_args(args, model):
    """``--vector`` and its SAE (``--sae-*``, else the one the vector names), checked against
    ``model`` (``--allow-other-model`` lets a vector of another model through)."""
    from .export import load_vector

    vector = load_vector(args.vector)
    sae = load_sae_from_args(args, vector, model)
    return load_vector(args.vector, model=model, sae=sae, allow_other_model=args.allow_other_model), sae


def columns(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    try:  # "prompt=q, chosen=good": spaces around the parts are not part of the names
        return {role.strip(): column.strip() for role, column in (part.split("=", 1) for part in text.split(",")
                                                                  if part.strip())}
    except ValueError:
        raise YapoError(f"--columns {text!r} must look like prompt=q,chosen=good,rejected=bad") from None


def add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", required=required, help="CSV/TSV/JSONL/JSON/Parquet file, folder, URL or hub dataset id")
    p.add_argument("--schema", default="auto", help="auto, pairs, bipo, bipo_ab or dcl")
    p.add_argument("--columns", help="column overrides: prompt=q,chosen=good,rejected=bad")
    p.add_argument("--split", help="dataset split (default: train; for eval, a folder's or dataset's held-out split "
                   "that the metric is measured on)")
    p.add_argument("--country", help="Deep-Culture-Lense country filter (comma-separated)")
    p.add_argument("--localization", default="both", help="localized, nolocalized or both")
    p.add_argument("--form", default=None, help="mcq (default) or open_ended (Deep-Culture-Lense)")
    p.add_argument("--rejected-model", help="which rejected_<model>_* column to use")
    p.add_argument("--system", help="system prompt (only used when given)")
    p.add_argument("--limit", type=int, help="use only the first N pairs")


def load_pairs_from_args(args, training: bool = True, split: str | None = None):
    """The pairs ``--data`` and its options name (``split``: that split, not ``--split``); what the
    loader noticed (skipped rows, pairs whose answers are the same) is printed as a note."""
    import sys

    from .data import load_pairs

    pairs = load_pairs(
        args.data, schema=args.schema, columns=columns(args.columns), split=split or args.split,
        country=args.country.split(",") if args.country else None, localization=args.localization,
        form=args.form or "mcq", rejected_model=args.rejected_model, system_prompt=args.system, limit=args.limit,
    )
    if args.form is not None and pairs.schema != "dcl":
        raise YapoError(f"--form {args.form} chooses Deep-Culture-Lense's answer form, but this data reads as schema "
                        f"{pairs.schema!r}, which has one form: leave --form out, or load Deep-Culture-Lense data.")
    for note in pairs.notes:
        if not training:  # advice on training (--mcq-rejected) is not for a command that trains nothing
            note = "; ".join(part for part in note.split("; ") if "mcq_rejected=" not in part)
        print(f"note: {in_cli_terms(note)}", file=sys.stderr)
    return pairs


HELD_OUT_SPLITS = ("test", "test_infer", "validation")
"""The splits ``yapo eval`` scores when ``--split`` is not given (the app's tasks hold the first two)."""


def eval_pairs(args) -> tuple:
    """The pairs ``yapo eval`` scores, its metric (``--metric``, or the most specific that applies)
    and the split they come from: ``--split``, or where ``--data`` has held-out splits the one the
    metric is measured on (BiPO's ``test_infer`` for the behaviour rate, ``test`` for the rest), as
    the Evaluate page picks it; one file is scored whole (``None``)."""
    import sys
    from pathlib import Path

    from .errors import DataError
    from .evaluation import SPECIFIC_FIRST, default_metric, get_metric, metric_splits
    from .tables import split_names

    names = split_names(args.data) if args.split is None else None
    held_out = [name for name in HELD_OUT_SPLITS if name in (names or ())]
    if not held_out:
        pairs = load_pairs_from_args(args, training=False)
        one_file = args.split is None and names is None and (
            str(args.data).startswith(("http://", "https://")) or Path(args.data).expanduser().is_file())
        if args.split is None and not one_file:
            had = f"it has {', '.join(names)}" if names else "its splits could not be listed"
            print(f"note: {args.data!r} has no test split ({had}); scoring its train split, which a vector may have "
                  "been trained on: choose another with --split.", file=sys.stderr)
        return pairs, default_metric(pairs) if args.metric == "auto" else args.metric, None if one_file else (
            args.split or "train")
    splits, unread = {}, {}
    for name in held_out:  # a split of another shape (BiPO's A/B test_infer beside open answers) is left out
        try:
            splits[name] = load_pairs_from_args(args, training=False, split=name)
        except DataError as exc:
            unread[name] = str(exc)
    for name, problem in unread.items():
        print(f"note: the {name} split of {args.data!r} was not read ({problem})", file=sys.stderr)
    if not splits:
        raise DataError(f"no held-out split of {args.data!r} could be read ({'; '.join(f'{n}: {p}' for n, p in unread.items())})"
                        "; fix the options above, or choose a split with --split.")
    found = metric_splits({name: list(pairs) for name, pairs in splits.items()})
    metric = next(k for k in SPECIFIC_FIRST if k in found) if args.metric == "auto" else args.metric
    chosen = get_metric(metric)
    if chosen.key not in found:
        raise DataError(f"the {chosen.label} cannot score the held-out split(s) of {args.data!r} ({', '.join(splits)}):"
                        f" it needs {chosen.needs}. Metrics that can: "
                        f"{', '.join(f'{key} ({split} split)' for key, split in found.items())}; or choose a split "
                        "with --split.")
    return splits[found[chosen.key]], metric, found[chosen.key]


def read_multipliers(text: str) -> list[float]:
    from .evaluation import parse_multipliers

    return parse_multipliers(text)


def in_cli_terms(message: str, parser: argparse.ArgumentParser | None = None) -> str:
    """A library error's ``message`` with its advice in command-line terms: ``pass sae=`` becomes
    the SAE options, ``use layer=1`` ``--layer 1``, and a leading ``max_steps=-5`` (a setting the
    parser has as an option) ``--max-steps=-5``."""
    import re

    for advice in ADVICE:
        message = message.replace(advice.library, advice.cli)
    message = re.sub(r"\buse layer=(\d+)", r"use --layer \1", message)
    if parser is not None:
        options = {a.dest for p in [parser, *_subparsers(parser)] for a in p._actions
                   if any(o.startswith("--") for o in a.option_strings)}
        message = re.sub(r"^([a-z][a-z_]*)=", lambda m: (f"--{m[1].replace('_', '-')}=" if m[1] in options else m[0]),
                         message)
        # a setting named in the sentence ("checkpoint_every is set but checkpoint_dir is not"): by its option
        message = re.sub(r"(?<![\w.'-])([a-z]+(?:_[a-z]+)+)\b(?![(.'])",
                         lambda m: f"--{m[1].replace('_', '-')}" if m[1] in options else m[0], message)
    return message


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [p for a in parser._actions if isinstance(a, argparse._SubParsersAction) for p in a.choices.values()]
