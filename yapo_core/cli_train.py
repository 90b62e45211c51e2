"""``yapo train``: train a vector from preference pairs, with its checkpoint and history, refusing
before any work the outputs that would overwrite its data or one another."""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

from . import checks
from .cli_args import in_cli_terms, load_model_from_args, load_pairs_from_args, load_sae_from_args
from .errors import SettingsError, YapoError


def _save_or_keep(vector, out: Path, sae) -> tuple[Path, bool]:
    """Save the trained vector and say whether it went to ``out``; when that fails, save it in the
    temporary folder instead and say where."""
    from .export import save_vector

    try:
        return save_vector(vector, out, sae=sae), True
    except (OSError, YapoError) as exc:
        try:
            kept = save_vector(vector, Path(tempfile.mkdtemp(prefix="yapo-")) / "vector.safetensors", sae=sae)
        except (OSError, YapoError) as again:
            print(f"error: {exc}; nor could a copy be written in the temporary folder ({again}): the vector is "
                  "lost.", file=sys.stderr)
            return out, False
        print(f"error: {exc}; the vector is kept at {str(kept)!r}.", file=sys.stderr)
        return kept, False


def _check_distinct_outputs(args, out: Path, checkpoint: Path | None, history: Path | None) -> None:
    """Refuse, before any work, outputs that would overwrite one another or the run's data: each
    file ``yapo train`` writes must be a file of its own, and its vector and checkpoint
    ``.safetensors`` files (a data file's name would be overwritten by one)."""
    for flag, path in (("--out", out), ("--checkpoint", checkpoint)):
        if path is not None and path.suffix != ".safetensors":
            raise SettingsError(f"{flag} {str(path)!r} would be a safetensors file under another kind's name; give a "
                                f"name ending in .safetensors, such as {str(path.with_suffix('.safetensors'))!r}.")
    writes = {"--out": out, "--checkpoint": checkpoint, "--history": history,
              "--history's curves": history.with_suffix(".html") if history is not None else None}
    writes = {flag: path.resolve() for flag, path in writes.items() if path is not None}
    reads = {flag: Path(value).expanduser().resolve() for flag, value in (("--data", args.data), ("--resume", args.resume))
             if value and Path(value).expanduser().is_file()}
    seen: dict[Path, str] = {}
    for flag, path in writes.items():
        if path in seen:
            raise SettingsError(f"{seen[path]} and {flag} name one file, {str(path)!r}: one would overwrite the other. "
                                "Give each its own name.")
        seen[path] = flag
    for flag, path in reads.items():
        # a run may go on from a vector or checkpoint and write it anew; its data, or a file it reads as its
        # history, must stay
        clash = next((f for f, p in writes.items() if p == path and not (flag == "--resume" and f != "--history")), None)
        if clash:
            raise SettingsError(f"{clash} would overwrite {flag} {str(path)!r}, which the run reads; give {clash} "
                                "another name.")


def cmd_train(args, parser=None) -> int:
    """``parser``: the command line's, whose options name the settings in notes."""
    from .demo import is_demo_model, training_settings
    from .export import check_output_path, open_safetensors
    from .training import TrainConfig, Trainer

    out = check_output_path(args.out)  # before any work: training takes hours
    checkpoint = check_output_path(args.checkpoint) if args.checkpoint else None
    history = check_output_path(args.history, "history.jsonl") if args.history else None
    if history is not None and history.suffix == ".html":
        raise SettingsError(f"--history {args.history!r} would be overwritten by its own curves (.html beside it); "
                            "give a .jsonl name such as history.jsonl.")
    _check_distinct_outputs(args, out, checkpoint, history)
    checks.folder("--checkpoint-dir", getattr(args, "checkpoint_dir", None))  # a file can be made there
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    config = TrainConfig(**given)  # a bad setting fails before the model loads
    if config.kind == "sparse" and not (args.sae_path or args.sae_release):
        raise SettingsError("a sparse (YaPO) vector needs an SAE: give --sae-path, or --sae-release and --sae-id "
                            "(or train a dense vector: --kind dense --layer N).")
    pairs = load_pairs_from_args(args)  # bad data fails before a (large) model loads
    if args.resume:
        open_safetensors(args.resume)  # so does a missing or unsafe file to resume from
    model, tokenizer = load_model_from_args(args)
    sae = load_sae_from_args(args, model=model)
    filled = {}
    if is_demo_model(args.model):  # its own settings, as the app fills them in
        filled = {k: v for k, v in training_settings(pairs, config.kind).items() if k not in given}
        if filled:
            config = TrainConfig(**{**filled, **given})
            from .options import sets_against_other_options

            acts = any(sets_against_other_options(p) for p in pairs)  # mcq_rejected acts on multiple-choice pairs only
            shown = {k: v for k, v in filled.items() if (acts or k != "mcq_rejected")
                     and not (k == "epochs" and config.max_steps)}  # epochs only bounds a run that max_steps ends
            print("demo world's settings: " + ", ".join(f"{k} {v}" for k, v in shown.items()), file=sys.stderr)
    trainer = Trainer(model, tokenizer, pairs, config, sae=sae, progress=True)
    print(f"{len(pairs)} pairs ({pairs.schema}); {trainer.data_report.describe()}; engine: "
          f"{trainer.objective.engine} ({trainer.objective.reason})", file=sys.stderr)
    for note in trainer.notes:  # a setting the user did not give is named as the demo world's
        origin = "the demo world's setting " if note.split("=", 1)[0] in filled else ""
        print(f"note: {origin}{in_cli_terms(note, parser)}", file=sys.stderr)
    if args.resume:
        print(trainer.load_checkpoint(args.resume, args.allow_other_model), file=sys.stderr)
    written = True  # every file asked for is where it was asked for
    try:
        vector = trainer.run(progress=True)
    finally:
        if trainer.step:
            out, written = _save_or_keep(trainer.vector, out, sae)
            if checkpoint is not None:
                try:
                    print(f"checkpoint at step {trainer.step}: {trainer.save_checkpoint(checkpoint)}", file=sys.stderr)
                except YapoError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    written = False
            if history is not None:
                written = _write_history(trainer.history, history, out.stem) and written
    last = trainer.history[-1] if trainer.history else None
    print(json.dumps({"out": str(out), "steps": trainer.step, "l0": vector.l0(), "norm": round(vector.norm(), 4),
                      "final_loss": last and round(last.loss, 4)}))
    return 0 if written else 1


def _write_history(steps, path: Path, name: str) -> bool:
    """The run's step metrics as JSON lines at ``path``, and its training curves beside it (.html);
    whether they could be written."""
    from dataclasses import asdict

    from .plots import training_curves

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(asdict(m)) + "\n" for m in steps))
        training_curves([(name, steps)]).write_html(path.with_suffix(".html"), include_plotlyjs="cdn")
    except OSError as exc:  # the vector is saved already; say so and go on
        print(f"error: could not write the history to {str(path)!r} ({exc}).", file=sys.stderr)
        return False
    print(f"history: {path} and {path.with_suffix('.html')}", file=sys.stderr)
    return True
