"""Preference pairs: loading them from files, DataFrames and Hugging Face datasets (turning them
into token sequences is :mod:`.encoding`).

Schemas (detected from the columns, or named with ``schema=``):

- ``pairs``: ``prompt, chosen, rejected``.
- ``bipo``: BiPO's ``question, matching, not_matching`` (``matching`` shows the behaviour).
- ``bipo_ab``: BiPO's ``test_infer`` form ``question, A, B, matching`` (``matching`` is a letter);
  turned into pairs whose answers are the option letters.
- ``dcl``: Deep-Culture-Lense (``country``, ``localization_status``, ``prompt-mcq``,
  ``chosen-mcq``, ``prompt_open_ended``, ``chosen_open_ended``, ``rejected_<model>_{mcq,open_ended}``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from .errors import DataError
from .hub import explain_hub_error

SCHEMA_COLUMNS: dict[str, dict[str, str]] = {
    "pairs": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
    "bipo": {"prompt": "question", "chosen": "matching", "rejected": "not_matching"},
    "bipo_ab": {"prompt": "question", "A": "A", "B": "B", "matching": "matching"},
    "dcl": {"country": "country", "localization_status": "localization_status"},
}
DCL_FORMS = {
    "mcq": ("prompt-mcq", "chosen-mcq", "_mcq"),
    "open_ended": ("prompt_open_ended", "chosen_open_ended", "_open_ended"),
}
LOCALIZATION = ("localized", "nolocalized", "both")


@dataclass
class PreferencePair:
    """One preference triple; ``chosen`` shows the target behaviour or culture."""

    prompt: str
    chosen: str
    rejected: str
    system: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PairSet:
    """Loaded pairs plus a report of where they came from and what was left out."""

    pairs: list[PreferencePair]
    schema: str
    columns: dict[str, str]
    source: str
    skipped_rows: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self):
        return iter(self.pairs)

    def __getitem__(self, i):
        return self.pairs[i]

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple["PairSet", "PairSet"]:
        """A seeded train/test split (for data that comes without one)."""
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.pairs), generator=gen).tolist()
        n_test = max(1, int(round(len(order) * test_fraction))) if len(order) > 1 else 0
        pick = lambda idx: PairSet([self.pairs[i] for i in idx], self.schema, self.columns, self.source)  # noqa: E731
        return pick(order[n_test:]), pick(order[:n_test])


# ---------------------------------------------------------------------------------------------
# Reading tables


def read_table(source: Any, split: str | None = None):
    """A pandas DataFrame from a path, URL, hub id, DataFrame or ``datasets`` object."""
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a hard requirement
        datasets = None
    if datasets is not None and isinstance(source, datasets.DatasetDict):
        if split is None:
            split = "train" if "train" in source else next(iter(source))
        if split not in source:
            raise DataError(f"split {split!r} is not in this dataset; it has {list(source)}.")
        source = source[split]
    if datasets is not None and isinstance(source, datasets.Dataset):
        return source.to_pandas()
    if isinstance(source, (list, tuple)) and source and isinstance(source[0], dict):
        return pd.DataFrame(list(source))
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"cannot read preference data from a {type(source).__name__}.")
    text = str(source)
    if text.startswith(("http://", "https://")):
        return _read_with_datasets("url", text, split)
    path = Path(text).expanduser()
    if path.exists():
        return _read_local(path, split)
    if text.startswith((".", "/", "~")) or Path(text).suffix in _READERS:
        raise DataError(f"data file {text!r} does not exist; check the path.")
    return _read_with_datasets("hub", text, split)


def _read_jsonl(path: Path):
    import pandas as pd

    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}: line {n} is not valid JSON ({exc.msg}).") from None
    return pd.DataFrame(rows)


def _read_json(path: Path):
    import pandas as pd

    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError:
            return _read_jsonl(path)  # many ".json" files are really JSON Lines
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), [data])
    return pd.DataFrame(data)


def _read_csv(path: Path):
    import pandas as pd

    try:
        return pd.read_csv(path, keep_default_na=False, dtype=str)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _read_parquet(path: Path):
    import pandas as pd

    return pd.read_parquet(path)


_READERS = {".csv": _read_csv, ".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}


def _read_local(path: Path, split: str | None):
    if path.is_dir():
        for suffix in _READERS:
            candidates = sorted(path.glob(f"{split or 'train'}*{suffix}"))
            if candidates:
                return _read_local(candidates[0], None)
        raise DataError(f"folder {str(path)!r} has no {split or 'train'}.csv/.jsonl/.json/.parquet.")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        if path.suffix.lower() in (".pt", ".pth", ".pkl", ".pickle", ".bin"):
            raise DataError(
                f"{path.name!r} looks like a pickle; pickles can run code when loaded and are "
                "never opened. Save the pairs as CSV, JSON Lines or Parquet."
            )
        raise DataError(
            f"cannot read {path.name!r}: use a .csv, .jsonl, .json or .parquet file."
        )
    if path.stat().st_size == 0:
        raise DataError(f"data file {str(path)!r} is empty.")
    return reader(path)


def _read_with_datasets(kind: str, source: str, split: str | None):
    import datasets

    try:
        if kind == "url":
            suffix = Path(source.split("?")[0]).suffix.lower().lstrip(".")
            builder = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet"}.get(suffix)
            if builder is None:
                raise DataError(f"URL {source!r} does not end in .csv, .jsonl, .json or .parquet.")
            ds = datasets.load_dataset(builder, data_files=source, split="train")
        else:
            ds = datasets.load_dataset(source, split=split or "train")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(explain_hub_error("dataset", source, exc)) from exc
    return ds.to_pandas()


# ---------------------------------------------------------------------------------------------
# Schemas


def detect_schema(columns: Iterable[str]) -> str:
    cols = set(columns)
    for schema in ("dcl", "bipo_ab", "bipo", "pairs"):
        if set(SCHEMA_COLUMNS[schema].values()) <= cols:
            return schema
    raise DataError(
        f"cannot tell the schema of columns {sorted(cols)}: expected prompt/chosen/rejected, "
        "question/matching/not_matching, question/A/B/matching, or Deep-Culture-Lense columns. "
        "Name yours with columns={'prompt': ..., 'chosen': ..., 'rejected': ...}."
    )


def _require(df, wanted: dict[str, str], schema: str) -> None:
    missing = [f"{role} -> {col!r}" for role, col in wanted.items() if col not in df.columns]
    if missing:
        raise DataError(
            f"column(s) {', '.join(missing)} missing for schema {schema!r}; the data has "
            f"{list(df.columns)}. Map yours with columns={{'<role>': '<your column>'}}."
        )


def load_pairs(
    source: Any,
    schema: str = "auto",
    columns: dict[str, str] | None = None,
    split: str | None = None,
    country: str | Sequence[str] | None = None,
    localization: str = "both",
    form: str = "mcq",
    rejected_model: str | None = None,
    system_prompt: str | None = None,
    limit: int | None = None,
) -> PairSet:
    """Load preference pairs from ``source`` (path, URL, hub id, DataFrame or ``datasets`` object).

    ``columns`` overrides column names by role (``prompt``, ``chosen``, ``rejected``, or for the
    A/B schema ``A``, ``B``, ``matching``). Deep-Culture-Lense data is filtered by ``country``
    and ``localization`` (localized / nolocalized / both) and read in ``form`` ``mcq`` or
    ``open_ended``, with the rejected answers of ``rejected_model`` (the only one present is
    used when not named).
    """
    df = read_table(source, split)
    name = source if isinstance(source, (str, os.PathLike)) else type(source).__name__
    if len(df) == 0 or len(df.columns) == 0:
        raise DataError(f"data {str(name)!r} is empty: it has no rows.")
    if schema == "auto":
        schema = "pairs" if columns and {"prompt", "chosen", "rejected"} <= set(columns) else detect_schema(df.columns)
    if schema not in SCHEMA_COLUMNS:
        raise DataError(f"schema {schema!r} is unknown; use one of {sorted(SCHEMA_COLUMNS)}.")
    if schema == "dcl":
        df, cols = _dcl_columns(df, country, localization, form, rejected_model, columns)
        roles = dict(cols)
    else:
        roles = {**SCHEMA_COLUMNS[schema], **(columns or {})}
        _require(df, roles, schema)
    if limit is not None:
        df = df.head(limit)
    pairs, skipped = [], 0
    for row in df.to_dict("records"):
        pair = _row_to_pair(row, schema, roles, system_prompt)
        if pair is None:
            skipped += 1
        else:
            pairs.append(pair)
    if not pairs:
        raise DataError(f"no usable pairs in {str(name)!r}: all {len(df)} rows had empty fields.")
    notes = [f"{skipped} row(s) skipped: an empty prompt or answer"] if skipped else []
    same = sum(p.chosen == p.rejected for p in pairs)
    if same:
        notes.append(f"{same} of {len(pairs)} pair(s) have the same chosen and rejected answer: they teach nothing")
    return PairSet(pairs, schema, roles, str(name), skipped, notes)


def _dcl_columns(df, country, localization, form, rejected_model, overrides):
    _require(df, SCHEMA_COLUMNS["dcl"], "dcl")
    if form not in DCL_FORMS:
        raise DataError(f"form {form!r} is unknown; use 'mcq' or 'open_ended'.")
    if localization not in LOCALIZATION:
        raise DataError(f"localization {localization!r} is unknown; use one of {LOCALIZATION}.")
    prompt_col, chosen_col, suffix = DCL_FORMS[form]
    rejected_cols = [c for c in df.columns if c.startswith("rejected_") and c.endswith(suffix)]
    if rejected_model is None:
        if len(rejected_cols) != 1:
            raise DataError(
                f"choose the model whose rejected answers to use with rejected_model=; columns "
                f"found: {rejected_cols or 'none'}."
            )
        rejected_col = rejected_cols[0]
    else:
        rejected_col = f"rejected_{rejected_model}{suffix}"
    roles = {"prompt": prompt_col, "chosen": chosen_col, "rejected": rejected_col, **(overrides or {})}
    _require(df, roles, "dcl")
    if country is not None:
        wanted = {country.lower()} if isinstance(country, str) else {c.lower() for c in country}
        known = sorted(set(df["country"].astype(str).str.lower()))
        unknown = wanted - set(known)
        if unknown:
            raise DataError(f"country {sorted(unknown)} is not in the data; it has {known}.")
        df = df[df["country"].astype(str).str.lower().isin(wanted)]
    if localization != "both":
        df = df[df["localization_status"] == localization]
    if len(df) == 0:
        raise DataError(f"no rows left for country={country!r}, localization={localization!r}.")
    return df, roles


def _text(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def _row_to_pair(row: dict, schema: str, roles: dict[str, str], system: str | None):
    meta = {k: v for k, v in row.items() if k in ("country", "localization_status", "id")}
    if schema == "bipo_ab":
        question, a, b = (_text(row[roles[k]]) for k in ("prompt", "A", "B"))
        letter = _text(row[roles["matching"]]).strip("() ").upper()[:1]
        if not question or letter not in ("A", "B"):
            return None
        prompt = format_ab_prompt(question, a, b)
        other = "B" if letter == "A" else "A"
        return PreferencePair(prompt, letter, other, system, {**meta, "A": a, "B": b, "matching": letter})
    prompt, chosen, rejected = (_text(row[roles[k]]) for k in ("prompt", "chosen", "rejected"))
    if not prompt or not chosen or not rejected:
        return None
    return PreferencePair(prompt, chosen, rejected, system, meta)


_OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[.):]\s", re.MULTILINE)


def option_letters(prompt: str, default: str = "ABCD") -> str:
    """The option letters a prompt lists, one per line (``"A. ..."``, ``"(B) ..."``, ``"C) ..."``):
    the longest run A, B, C, ... among such lines (so a ``"Q: ..."`` line is not an option), when
    it has at least two; ``default`` otherwise."""
    found = _OPTION_LINE.findall(prompt)
    best = ""
    for start, letter in enumerate(found):
        if letter != "A":
            continue
        run = "A"
        for nxt in found[start + 1:]:
            if nxt != chr(ord(run[-1]) + 1):
                break
            run += nxt
        best = max(best, run, key=len)
    return best if len(best) >= 2 else default


_BARE_LETTER = re.compile(r"^\s*\(?([A-Z])\)?\.?\s*$")
MCQ_REJECTED = ("given", "every_option")


def against_every_option(pairs: Iterable[PreferencePair]) -> list[PreferencePair]:
    """Multiple-choice pairs become one pair per wrong option; other pairs stay as they are.

    A pair counts as multiple-choice when its chosen and rejected answers are bare letters
    (``"H"``, ``"(B)"``) and its prompt lists lettered options (:func:`option_letters`). The
    preference objective compares only the chosen answer with the rejected one, so a vector
    trained against the model's default answer alone can make the chosen letter beat the default
    while a third option wins (measured on the demo world; see docs/results.md). Against every option,
    the chosen letter has to beat them all. The given pair stays as it is; the new rejected
    answers take the chosen answer's format (``"(B)"`` → ``"(C)"``). Letter answers whose prompt
    lists no readable options are an error (rather than silently trained against the given answer
    only).
    """
    out: list[PreferencePair] = []
    unreadable = 0
    for p in pairs:
        chosen, rejected = _BARE_LETTER.match(p.chosen), _BARE_LETTER.match(p.rejected)
        letters = option_letters(p.prompt, default="")
        if not (chosen and rejected and chosen.group(1) in letters):
            unreadable += bool(chosen and rejected)
            out.append(p)
            continue
        gold, given = chosen.group(1), rejected.group(1)
        out += [p if letter == given else replace(p, rejected=p.chosen.replace(gold, letter, 1))
                for letter in letters if letter != gold]
    if unreadable:
        raise DataError(
            f"{unreadable} pair(s) answer with a letter, but their prompts do not list the options one "
            "per line as 'A. ...', '(A) ...' or 'A) ...' (starting at A), so the wrong options cannot be "
            "read; train them with mcq_rejected='given'."
        )
    return out


def format_ab_prompt(question: str, a: str, b: str) -> str:
    """The A/B question shown to the model for BiPO's ``test_infer`` data."""
    return f"{question}\n\nChoices:\n(A) {a}\n(B) {b}\nAnswer with A or B."
