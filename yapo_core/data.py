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

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Sequence

import torch

from . import checks
from .errors import DataError
from .options import (  # noqa: F401 (multiple-choice helpers, also importable from here)
    MCQ_REJECTED,
    against_every_option,
    answer_letter,
    answers_with_letter,
    is_letter_answer,
    option_letters,
    sets_against_other_options,
)
from .tables import read_table

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
        """A seeded train/test split (for data that comes without one); see :func:`split_pairs`. The
        loader's notes and skipped rows are the whole file's, kept with the training part."""
        checks.number("test_fraction", test_fraction, above=0, most=0.9)
        train, test = split_pairs(self.pairs, test_fraction, seed)  # what the loader noticed stays with train
        return (PairSet(train, self.schema, self.columns, self.source, self.skipped_rows, list(self.notes)),
                PairSet(test, self.schema, self.columns, self.source))


def split_pairs(pairs: Sequence, fraction: float, seed: int = 0,
                group: Callable[[Any], Hashable] | None = None) -> tuple[list, list]:
    """``pairs`` split at random (seeded) into the rest and a held-out ``fraction`` (at least one
    pair and at most all but one, when there are two or more; none when ``fraction`` is 0).

    With ``group`` (a pair's group, e.g. the offer a question asks about), whole groups are held
    out: that ``fraction`` of the groups (at least one, at most all but one), so a held-out pair
    shares its group with no kept pair, as a test split that holds out whole offers or topics
    asks; both parts then keep the pairs' order. Without ``group`` a split comes in a random order."""
    checks.number("fraction", fraction, least=0, most=0.9)
    pairs = list(pairs)
    generator = torch.Generator().manual_seed(checks.seed(seed))
    if group is not None:
        groups = [group(p) for p in pairs]
        keys = list(dict.fromkeys(groups))
        if fraction == 0 or len(keys) < 2:
            return pairs, []
        held = {keys[i] for i in torch.randperm(len(keys), generator=generator).tolist()[:_held_count(len(keys), fraction)]}
        return [p for p, g in zip(pairs, groups) if g not in held], [p for p, g in zip(pairs, groups) if g in held]
    if fraction == 0 or len(pairs) < 2:
        return pairs, []
    order = torch.randperm(len(pairs), generator=generator).tolist()
    n = _held_count(len(pairs), fraction)
    return [pairs[i] for i in order[n:]], [pairs[i] for i in order[:n]]


def _held_count(total: int, fraction: float) -> int:
    """How many of ``total`` items (two or more) a split holds out: ``fraction`` of them, at least one
    and at most all but one."""
    return min(total - 1, max(1, int(round(total * fraction))))


# ---------------------------------------------------------------------------------------------
# Schemas


def detect_schema(columns: Iterable[str]) -> str:
    cols = set(columns)
    for schema in ("dcl", "bipo_ab", "bipo", "pairs"):
        if set(SCHEMA_COLUMNS[schema].values()) <= cols:
            return schema
    if len(cols) < 3:  # nothing a mapping could make whole
        raise DataError(f"the data has {len(cols)} column(s), {sorted(cols)}: preference pairs need three (a prompt, "
                        "a chosen and a rejected answer); add the missing one(s) to the data.")
    raise DataError(
        f"cannot tell the schema of columns {sorted(cols)}: expected prompt/chosen/rejected, "
        "question/matching/not_matching, question/A/B/matching, or Deep-Culture-Lense columns. "
        "Name yours with columns={'prompt': ..., 'chosen': ..., 'rejected': ...}."
    )


def _require(df, wanted: dict[str, str], schema: str) -> None:
    missing = [f"{role} -> {col!r}" for role, col in wanted.items() if col not in df.columns]
    if missing:
        spare = [c for c in df.columns if c not in wanted.values()]  # columns a mapping could still name
        roles = [role for role, col in wanted.items() if col not in df.columns]
        advice = ("Map yours with columns={'<role>': '<your column>'}." if spare else
                  f"Every column it has is used already: add a {' and a '.join(roles)} column to the data.")
        raise DataError(f"column(s) {', '.join(missing)} missing for schema {schema!r}; the data has "
                        f"{list(df.columns)}. {advice}")


def _known_headers(df, mapping: dict[str, str] | None = None):
    """``df`` with a header that differs from a schema's column only in case or surrounding spaces
    (``Prompt``, `` chosen ``) named as the schema names it, where that name is not taken and the
    user's ``mapping`` does not name the header itself."""
    known = {c.lower(): c for cols in SCHEMA_COLUMNS.values() for c in cols.values()}
    known.update({c.lower(): c for form in DCL_FORMS.values() for c in form[:2]})
    mapped = set((mapping or {}).values())
    renames = {col: known[col.strip().lower()] for col in df.columns
               if col.strip().lower() in known and col != known[col.strip().lower()] and col not in mapped}
    renames = {old: new for old, new in renames.items() if new not in df.columns}
    if len(set(renames.values())) < len(renames):  # "Prompt" and "PROMPT": no guess between them
        return df
    return df.rename(columns=renames) if renames else df


_ROLES = sorted({role for cols in SCHEMA_COLUMNS.values() for role in cols if role not in ("country", "localization_status")})


def _checked_mapping(columns: dict[str, str] | None, df) -> dict[str, str] | None:
    """The user's column mapping, its roles checked, and a pair's roles it leaves out read from the
    columns of their own name (``columns={'rejected': 'rejectd'}`` on a file with prompt and chosen)."""
    if not columns:
        return columns
    unknown = [role for role in columns if role not in _ROLES]
    if unknown:
        raise DataError(f"{', '.join(map(repr, unknown))} {'is not a role' if len(unknown) == 1 else 'are not roles'} "
                        f"a column can be mapped to; the roles are {', '.join(_ROLES)}.")
    pair_roles = ("prompt", "chosen", "rejected")
    if any(r in columns for r in pair_roles):
        columns = {**{r: r for r in pair_roles if r not in columns and r in df.columns}, **columns}
    return columns


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
    if limit is not None:
        checks.whole("limit", limit, 1)
    df = _known_headers(read_table(source, split), columns)
    name = source if isinstance(source, (str, os.PathLike)) else type(source).__name__
    if len(df) == 0 or len(df.columns) == 0:
        raise DataError(f"data {str(name)!r} is empty: it has no rows.")
    columns = _checked_mapping(columns, df)
    if schema == "auto":
        roles = {"prompt", "chosen", "rejected"}
        if columns and roles & set(columns) and not roles <= set(columns):
            raise DataError(f"the column mapping names {', '.join(sorted(roles & set(columns)))} but not "
                            f"{', '.join(sorted(roles - set(columns)))}, and the data has no column of that name: "
                            "map all three (prompt, chosen, rejected).")
        dcl = set(SCHEMA_COLUMNS["dcl"].values()) <= set(df.columns)  # mapped or not, its filters apply
        schema = "pairs" if columns and roles <= set(columns) and not dcl else detect_schema(df.columns)
    if schema not in SCHEMA_COLUMNS:
        raise DataError(f"schema {schema!r} is unknown; use one of {sorted(SCHEMA_COLUMNS)}.")
    if schema != "dcl":
        asked = {"country": country, "localization": None if localization == "both" else localization,
                 "rejected_model": rejected_model}
        for setting, value in asked.items():
            if value is not None:
                shown = ",".join(map(str, value)) if isinstance(value, (list, tuple, set)) else value
                raise DataError(f"{setting}={shown!r} selects Deep-Culture-Lense rows and answers, but this data reads as "
                                f"schema {schema!r} (columns {list(df.columns)}), which has none to select: leave it "
                                "out, or load Deep-Culture-Lense data.")
    if schema == "dcl":
        df, cols = _dcl_columns(df, country, localization, form, rejected_model, columns)
        roles = dict(cols)
    else:
        roles = {**SCHEMA_COLUMNS[schema], **(columns or {})}
        _require(df, roles, schema)
        shared = {col: [r for r, c in roles.items() if c == col] for col in roles.values()}
        shared = {col: rs for col, rs in shared.items() if len(rs) > 1}
        if shared:
            col, rs = next(iter(shared.items()))
            raise DataError(f"{' and '.join(rs)} are both read from column {col!r}; each role needs a column of its "
                            "own (a pair whose chosen and rejected answers are the same teaches nothing).")
    if limit is not None:
        df = df.head(limit)
    pairs, skipped = [], 0
    for n, row in enumerate(df.to_dict("records"), 1):
        pair = _row_to_pair(row, n, schema, roles, system_prompt)
        if pair is None:
            skipped += 1
        else:
            pairs.append(pair)
    if not pairs:
        raise DataError(f"no usable pairs in {str(name)!r}: all {len(df)} rows had empty fields.")
    notes = [f"{skipped} row(s) skipped: an empty or missing (NA, null) prompt or answer"] if skipped else []
    same = [p for p in pairs if p.chosen == p.rejected]
    if same:
        note = f"{len(same)} of {len(pairs)} pair(s) have the same chosen and rejected answer: as given they teach nothing"
        if schema == "dcl":  # Deep-Culture-Lense's localized prompts, whose rejected answer is already right
            note += (" (the localized prompts, which the model answers right unsteered: localization='nolocalized' "
                     "leaves them out)")
        choice = sum(sets_against_other_options(p) for p in same)
        if choice:
            note += (f"; {choice} of them {'is a' if choice == 1 else 'are'} multiple-choice, which trained against every "
                     "option (mcq_rejected='every_option') set the chosen letter against each wrong one")
        notes.append(note)
    return PairSet(pairs, schema, roles, str(name), skipped, notes)


def _dcl_columns(df, country, localization, form, rejected_model, overrides):
    _require(df, SCHEMA_COLUMNS["dcl"], "dcl")
    if form not in DCL_FORMS:
        raise DataError(f"form {form!r} is unknown; use 'mcq' or 'open_ended'.")
    if localization not in LOCALIZATION:
        raise DataError(f"localization {localization!r} is unknown; use one of {LOCALIZATION}.")
    prompt_col, chosen_col, suffix = DCL_FORMS[form]

    def rejected_columns(end: str) -> list[str]:  # rejected_<model><end>: each model's rejected answers of a form
        return [c for c in df.columns if c.startswith("rejected_") and c.endswith(end)]

    rejected_cols = rejected_columns(suffix)
    models = [c[len("rejected_"):len(c) - len(suffix)] for c in rejected_cols]
    mapped = "rejected" in (overrides or {})  # the user names the rejected column: no model to choose
    if not rejected_cols and not mapped:
        other = [f for f, (_, _, end) in DCL_FORMS.items() if f != form and rejected_columns(end)]
        raise DataError(
            f"the data has no {form} rejected answers (no rejected_<model>{suffix} column); "
            + (f"it has {other[0]} ones: use form={other[0]!r}." if other
               else "Map yours with columns={'<role>': '<your column>'}.")
        )
    if mapped:  # the user's own column, whatever models' answers the data also has
        rejected_col = overrides["rejected"]
    elif rejected_model is None:
        if len(rejected_cols) != 1:
            raise DataError(
                f"choose the model whose rejected answers to use with rejected_model=; the data has "
                f"{form} rejected answers of {', '.join(map(repr, models))} (columns {rejected_cols})."
            )
        rejected_col = rejected_cols[0]
    else:
        rejected_col = f"rejected_{rejected_model}{suffix}"
        if rejected_col not in df.columns:
            raise DataError(
                f"the data has no {form} rejected answers of model {rejected_model!r} (no column {rejected_col!r}); "
                f"it has those of {', '.join(map(repr, models))}: choose one with rejected_model=."
            )
    roles = {"prompt": prompt_col, "chosen": chosen_col, "rejected": rejected_col, **(overrides or {})}
    _require(df, roles, "dcl")
    if country is not None:
        names = [country] if isinstance(country, str) else list(country) if isinstance(country, (list, tuple, set)) else None
        if not names or not all(isinstance(c, str) for c in names):
            raise DataError(f"country={country!r} must be a country name or a list of names, e.g. 'egypt'.")
        wanted = {c.lower() for c in names}
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


# Cells that spreadsheets and pandas write for a missing value: read as empty, never as an answer.
NA_MARKERS = frozenset({"NA", "N/A", "n/a", "#N/A", "NaN", "nan", "null", "NULL", "<NA>"})


def _text(value, column: str, row: int) -> str:
    """A cell as text: missing values (None, NaN, NA markers) are empty; numbers, lists and dicts
    are refused, since their Python repr would become prompt or answer text."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if not isinstance(value, str):
        raise DataError(
            f"column {column!r} row {row} holds a value of type {type(value).__name__} ({_short(value)}), not text: each prompt and "
            "answer must be a string; convert the column or map another one with columns=."
        )
    value = value.strip()
    return "" if value in NA_MARKERS else value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_AB_LETTER = re.compile(r"\(?\s*([AaBb])\s*\)?")


def _row_to_pair(row: dict, n: int, schema: str, roles: dict[str, str], system: str | None):
    meta = {k: v for k, v in row.items() if k in ("country", "localization_status", "id")}
    cell = lambda role: _text(row[roles[role]], roles[role], n)  # noqa: E731
    if schema == "bipo_ab":
        question, a, b, matching = (cell(k) for k in ("prompt", "A", "B", "matching"))
        if not question or not matching:
            return None
        letter = _AB_LETTER.fullmatch(matching)
        if letter is None:
            raise DataError(f"column {roles['matching']!r} row {n} holds {_short(matching)}: it names the matching "
                            "answer as A or B (also written (A) or (B)); correct the row or leave it out.")
        letter = letter.group(1).upper()
        prompt = format_ab_prompt(question, a, b)
        other = "B" if letter == "A" else "A"
        return PreferencePair(prompt, letter, other, system, {**meta, "A": a, "B": b, "matching": letter})
    prompt, chosen, rejected = (cell(k) for k in ("prompt", "chosen", "rejected"))
    if not prompt or not chosen or not rejected:
        return None
    return PreferencePair(prompt, chosen, rejected, system, meta)


def format_ab_prompt(question: str, a: str, b: str) -> str:
    """The A/B question shown to the model for BiPO's ``test_infer`` data: the question, one
    lettered option per line, the instruction. The demo world's model is trained on exactly this
    layout (``yapo_core.demo.corpus.format_choices``), so its task files, this loader and its
    training agree."""
    return f"{question}\nA. {a}\nB. {b}\nAnswer with A or B."
