"""Errors a user can act on: each says what was wrong, with which value, and what to do.

The library's advice names Python arguments (``pass sae=``); :data:`ADVICE` says each piece of it
as a command-line user and as a user of the app follow it (``yapo_core.cli_args.in_cli_terms``,
``pages.common.in_app_terms``)."""

from typing import NamedTuple


class YapoError(Exception):
    """Base class of every error the library raises on purpose."""


class ModelLoadError(YapoError):
    """A model or tokenizer could not be loaded (unknown id, offline, gated, bad folder)."""


class SAELoadError(YapoError):
    """An SAE could not be loaded or does not fit the model and layer it is used with."""


class DataError(YapoError):
    """Preference data is missing, malformed or has the wrong columns."""


class VectorFileError(YapoError):
    """A steering-vector file is unreadable, unsafe, or does not match the model/SAE."""


class TrainingError(YapoError):
    """Training had to stop (NaN/Inf loss or gradient, bad settings)."""


class SettingsError(YapoError, ValueError):
    """A setting is out of range or inconsistent (layer, multiplier, batch size, ...)."""


class Advice(NamedTuple):
    """A phrase of the library's advice and the same advice in the CLI's and the app's terms (None
    where the app's user never meets it or it reads as it is)."""

    library: str
    cli: str
    app: str | None = None


_APP_COLUMNS = "Map yours with the Prompt, Chosen and Rejected column fields under the file."

ADVICE = (
    Advice("load the matching model, or pass allow_other_model=True if you mean to.",
           "load the matching model, or pass --allow-other-model if you mean to.",
           "load the model it was trained on (Setup) to use it."),
    Advice("pass sae=.", "give --sae-path, or --sae-release and --sae-id (or train a dense vector: --kind dense --layer N)."),
    Advice("pass sae= (load it with yapo_core.load_sae; ", "give --sae-path, or --sae-release and --sae-id ("),
    Advice("needs layer= (or an SAE to take it from)",
           "needs --layer N (or an SAE to take it from: --sae-path, or --sae-release and --sae-id)"),
    Advice("give either path=<local SAE folder> or both release= and sae_id=.",
           "give either --sae-path <local SAE folder> or both --sae-release and --sae-id."),
    Advice("Name yours with columns={'prompt': ..., 'chosen': ..., 'rejected': ...}.",
           "Name yours with --columns prompt=<column>,chosen=<column>,rejected=<column>.", _APP_COLUMNS),
    Advice("Map yours with columns={'<role>': '<your column>'}.", "Map yours with --columns <role>=<your column>.",
           _APP_COLUMNS),
    Advice("with rejected_model=", "with --rejected-model",
           "in the \"Rejected answers of model\" field (Culture source; for an uploaded file, map the Prompt, Chosen "
           "and Rejected columns instead)"),
    Advice("raise max_length (now", "raise --max-length (now", "raise Max length (tokens) on Train (now"),
    Advice("localization='nolocalized'", "--localization nolocalized", "Prompts “nolocalized”"),
    Advice("mcq_rejected='every_option'", "--mcq-rejected every_option", "MCQ rejected answers “every_option” on Train"),
    Advice("mcq_rejected='given'", "--mcq-rejected given", "MCQ rejected answers “given” on Train"),
    Advice("choose one with split=.", "choose one with --split."),
    Advice("with columns=.", "with --columns."),
    Advice("use form='open_ended'.", "use --form open_ended.", "choose the open-ended answer form."),
    Advice("use form='mcq'.", "use --form mcq.", "choose the multiple-choice answer form."),
    # no option sets it: the comparison always holds a validation split out
    Advice(", or validation_fraction=0 to report each method at its best test multiplier, labelled as such.", ".",
           " (Setup: a smaller “Share held out for testing”, or a larger file)."),
)
"""The library's advice (each phrase as it writes it) in each interface's terms, applied in order."""
