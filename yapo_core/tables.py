"""Reading a table of preference data from a file, a folder, a URL, a hub dataset or a DataFrame.

Every way a file can be malformed ends in a :class:`~.errors.DataError` that names the file, the
line or cell, and the fix: text that is not UTF-8 (UTF-8 with a byte-order mark and UTF-16/32 with
one, as Excel writes them, are read), binary content, unbalanced quotes, rows with more or fewer
fields than the header (the usual sign of an unquoted comma inside a prompt), JSON that is not a
list of records, and a file whose content does not match its suffix.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from .errors import DataError
from .hub import explain_hub_error, is_repo_id, require_hub

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
_PICKLES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_table(source: Any, split: str | None = None):
    """A pandas DataFrame from a path, URL, hub id, DataFrame, list of dicts or ``datasets`` object,
    whose columns have text names, each once."""
    table = _read_any(source, split)
    check_columns(table.columns, source if isinstance(source, (str, os.PathLike)) else type(source).__name__)
    return table


def check_columns(columns, name) -> None:
    """Every column named, with text, and once: a table that breaks this cannot be mapped to roles."""
    seen = set()
    for col in columns:
        if not isinstance(col, str):
            raise DataError(f"data {str(name)!r} has a column named {col!r}, which is not text; name every column.")
        if col in seen:
            raise DataError(f"data {str(name)!r} has column {col!r} twice; give each column its own name.")
        seen.add(col)


def _read_any(source: Any, split: str | None):
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
    if isinstance(source, (list, tuple)):
        return _records(source, "the list given")
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"cannot read preference data from a {type(source).__name__}.")
    text = str(source)
    if text.startswith(("http://", "https://")):
        return _read_with_datasets("url", text, split)
    path = Path(text).expanduser()
    if path.exists():
        return read_local(path, split)
    if text.startswith((".", "/", "~")) or Path(text).suffix.lower() in SUFFIXES + _PICKLES:
        raise DataError(f"data file {text!r} does not exist; check the path.")
    return _read_with_datasets("hub", text, split)


def read_local(path: Path, split: str | None = None):
    """A DataFrame from a local file (which has no splits), or from a folder's ``<split>.<suffix>``
    file or ``<split>-*.<suffix>`` shards."""
    if path.is_dir():
        return _read_split_files(path, split or "train")
    if split is not None:
        raise DataError(f"{path.name!r} is one file, which has no splits (asked for {split!r}): a split names the files "
                        "of a folder (train.jsonl, test.jsonl, ...) or a split of a hub dataset; leave out the split, or "
                        "give the folder.")
    suffix = path.suffix.lower()
    if suffix in _PICKLES:
        raise DataError(
            f"{path.name!r} looks like a pickle; pickles can run code when loaded and are "
            "never opened. Save the pairs as CSV, JSON Lines or Parquet."
        )
    if suffix not in SUFFIXES:
        raise DataError(f"cannot read {path.name!r}: use a .csv, .tsv, .jsonl, .json or .parquet file.")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"data file {str(path)!r} is empty.")
    if suffix == ".parquet":
        return _read_parquet(path, raw)
    text = decode_text(raw, path.name)
    if suffix == ".jsonl":
        return _read_jsonl(text, path.name)
    if suffix == ".json":
        return _read_json(text, path.name)
    return read_delimited(text, path.name, "\t" if suffix == ".tsv" else ",")


def split_names(source: Any) -> list[str] | None:
    """The splits ``source`` holds where that is known without reading its rows (a local folder's
    ``<split>.<suffix>`` files and shards, a ``DatasetDict``'s keys, a hub dataset's split names),
    else ``None`` (one file, a table, a hub dataset that cannot be reached)."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a hard requirement
        datasets = None
    if datasets is not None and isinstance(source, datasets.DatasetDict):
        return list(source)
    if not isinstance(source, (str, os.PathLike)):
        return None
    folder = Path(source).expanduser()
    if not folder.exists() and datasets is not None and is_repo_id(str(source)):  # a hub dataset: its split names
        try:
            require_hub("dataset", str(source), DataError, repo_type="dataset")
            return list(datasets.get_dataset_split_names(str(source)))
        except Exception:  # unreachable, gated, not cached offline: loading it says why
            return None
    if not folder.is_dir():
        return None
    return sorted({f.stem.split("-")[0] for f in folder.iterdir() if f.suffix.lower() in SUFFIXES})


def _read_split_files(folder: Path, split: str):
    """A split of a folder laid out as ``datasets`` writes it: ``<split>.<suffix>``, or shards
    ``<split>-00000-of-00003.<suffix>`` read in order and joined (``test_infer.csv`` is another
    split than ``test``)."""
    import pandas as pd

    for suffix in SUFFIXES:
        files = sorted(f for f in folder.glob(f"{split}*{suffix}")
                       if f.suffix.lower() == suffix and (f.stem == split or f.stem.startswith(f"{split}-")))
        if not files:
            continue
        frames = [read_local(f) for f in files]
        for f, frame in zip(files[1:], frames[1:]):
            if list(frame.columns) != list(frames[0].columns):
                raise DataError(f"shard {f.name!r} has columns {list(frame.columns)}, but {files[0].name!r} has "
                                f"{list(frames[0].columns)}: the shards of split {split!r} must share their columns.")
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    others = split_names(folder)
    raise DataError(f"folder {str(folder)!r} has no {split}.csv/.tsv/.jsonl/.json/.parquet (nor {split}-* shards)"
                    + (f"; it has split(s) {', '.join(map(repr, others))}: choose one with split=." if others else "."))


def decode_text(raw: bytes, name: str) -> str:
    """``raw`` as text: UTF-8, or UTF-8/16/32 with a byte-order mark; anything else is refused."""
    if raw.startswith(b"PAR1"):
        raise DataError(f"{name!r} is a Parquet file with a text suffix; rename it to .parquet.")
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{name!r} is not {encoding.upper()} text (byte {raw[exc.start]:#04x} at position "
            f"{exc.start}): save it as UTF-8 (in Excel: 'CSV UTF-8'), or check that it is a data file."
        ) from None
    if "\x00" in text:
        raise DataError(f"{name!r} holds binary data (a NUL character), not text: check that it is a data file.")
    return text


def read_delimited(text: str, name: str, delimiter: str = ","):
    """A DataFrame of strings from CSV/TSV text; every row must have the header's number of fields."""
    import pandas as pd

    first = text.lstrip("\ufeff").split("\n", 1)[0]
    if delimiter == "," and ";" in first and "," not in first:  # as Excel saves CSV where "," is the decimal mark
        delimiter = ";"
    sep = {",": "comma", ";": "semicolon"}.get(delimiter, "tab")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows, lines = [], []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(
            f"{name!r} is not valid CSV near line {reader.line_num} ({exc}): a quote is probably left "
            'open; quote every field that holds a quote or a comma, and double the quotes inside it '
            '("say ""hi""").'
        ) from None
    if not rows:
        raise DataError(f"data file {name!r} is empty.")
    header, body = rows[0], rows[1:]
    if delimiter == "," and len(header) == 1 and "\t" in header[0]:
        raise DataError(f"{name!r} is tab-separated (its header is {header[0]!r}): name it .tsv, or save it with commas.")
    for line, row in zip(lines[1:], body):
        if len(row) != len(header):
            hint = (f"a {sep} inside a field that is not quoted (quote it: \"Hello, how are you?\")"
                    if len(row) > len(header) else "a missing field")
            raise DataError(
                f"{name!r} line {line} has {len(row)} field(s) but the header {header} has "
                f"{len(header)}: {hint}."
            )
    return pd.DataFrame(body, columns=header, dtype=str)


def _read_jsonl(text: str, name: str):
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{name!r} line {n} is not valid JSON ({exc.msg}).") from None
            if not isinstance(rows[-1], dict):
                raise DataError(
                    f"{name!r} line {n} is a JSON {_json_kind(rows[-1])}, not a record: each line must "
                    'be an object like {"prompt": ..., "chosen": ..., "rejected": ...}.'
                )
    return _records(rows, name)


def _read_json(text: str, name: str):
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _read_jsonl(text, name)  # many ".json" files are really JSON Lines
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else [data]
    if not isinstance(data, list):
        raise DataError(
            f"{name!r} holds a JSON {_json_kind(data)}, not records: write a list of objects "
            '([{"prompt": ..., "chosen": ..., "rejected": ...}, ...]) or JSON Lines.'
        )
    return _records(data, name)


def _records(rows, name: str):
    import pandas as pd

    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(
                f"item {n} of {name!r} is a {_json_kind(row)}, not a record: each item must map column "
                "names to values, like {'prompt': ..., 'chosen': ..., 'rejected': ...}."
            )
        bad = [k for k in row if not isinstance(k, str)]
        if bad:
            raise DataError(f"item {n} of {name!r} has a column name that is not text: {bad[0]!r}.")
    try:
        return pd.DataFrame(list(rows))
    except UnicodeError as exc:  # e.g. a lone surrogate ("\ud800") escaped in JSON
        raise DataError(f"{name!r} holds text that is not valid Unicode ({exc.reason}, e.g. a lone surrogate "
                        "escape such as \\ud800); fix or drop those characters.") from None


def _json_kind(value) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def _read_parquet(path: Path, raw: bytes):
    import pandas as pd

    if not raw.startswith(b"PAR1"):
        looks = "text" if _is_text(raw[:4096]) else "binary data"
        raise DataError(
            f"{path.name!r} is not a Parquet file (it holds {looks}); if it is a CSV or JSON file "
            "renamed, give it its own suffix."
        )
    try:
        return pd.read_parquet(io.BytesIO(raw))
    except Exception as exc:  # arrow's errors: a truncated or corrupt file
        raise DataError(f"{path.name!r} is a damaged Parquet file ({type(exc).__name__}: {exc}).") from None


def _is_text(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(raw) - 4  # a character cut at the end of the sample
    return b"\x00" not in raw


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
            require_hub("dataset", source, DataError, repo_type="dataset")
            ds = datasets.load_dataset(source, split=split or "train")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(explain_hub_error("dataset", source, exc)) from exc
    return ds.to_pandas()
