"""Errors a user can act on: each says what was wrong, with which value, and what to do."""


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
