"""Reading data files: every malformed file ends in a DataError naming the file and the fix, and
nothing malformed is read as pairs (a property test feeds random bytes and random columns)."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from yapo_core.data import PairSet, load_pairs
from yapo_core.errors import DataError, YapoError

HEADER = "prompt,chosen,rejected\n"


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@pytest.mark.parametrize("name, content, expected", [
    ("quotes.csv", HEADER + '"Hello, how,yes,no\nHi,a,b\n', "quote is probably left open"),
    ("comma.csv", HEADER + "Hello, how are you?,Fine,Bad\n", "line 2 has 4 field(s)"),
    ("short.csv", HEADER + "Hi,a\n", "a missing field"),
    ("latin1.csv", (HEADER + "Café,a,b\n").encode("latin-1"), "not UTF-8 text (byte 0xe9"),
    ("garbage.csv", bytes(range(256)) * 4, "not UTF-8 text"),
    ("nul.jsonl", b'{"prompt": "a\x00"}\n\x00\x00', "binary data"),
    ("scalar.json", "42", "holds a JSON number, not records"),
    ("string.json", '"hello"', "holds a JSON string"),
    ("numbers.json", "[1, 2, 3]", "item 0 of 'numbers.json' is a number"),
    ("lines.jsonl", '{"prompt": "a"}\n[1, 2]\n', "line 2 is a JSON list"),
    ("renamed.parquet", HEADER + "Hi,a,b\n", "is not a Parquet file (it holds text)"),
    ("truncated.parquet", b"PAR1" + b"\x01" * 40, "damaged Parquet file"),
    ("twice.csv", "prompt,chosen,chosen\nHi,a,b\n", "column 'chosen' twice"),
])
def test_malformed_files_name_the_file_the_place_and_the_fix(tmp_path, name, content, expected):
    path = _write(tmp_path, name, content)
    with pytest.raises(DataError, match=None) as info:
        load_pairs(path)
    assert expected in str(info.value), str(info.value)


def test_a_parquet_file_renamed_to_csv_is_named_as_such(tmp_path):
    pd.DataFrame({"prompt": ["a"], "chosen": ["b"], "rejected": ["c"]}).to_parquet(tmp_path / "x.parquet")
    (tmp_path / "x.parquet").rename(tmp_path / "x.csv")
    with pytest.raises(DataError, match="Parquet file with a text suffix"):
        load_pairs(tmp_path / "x.csv")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_text_with_a_byte_order_mark_is_read(tmp_path, encoding):
    # Excel's "Unicode text" and "CSV UTF-8" exports carry a byte-order mark.
    path = _write(tmp_path, "excel.csv", (HEADER + "Café?,Oui,Non\n").encode(encoding))
    pairs = load_pairs(path)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("Café?", "Oui", "Non")]
    assert list(pairs.columns) == ["prompt", "chosen", "rejected"]


def test_quoted_commas_quotes_and_newlines_are_kept(tmp_path):
    path = _write(tmp_path, "ok.csv", HEADER + '"Hello, how are you?","Say ""fine""","Line one\nline two"\n')
    (pair,) = load_pairs(path)
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Hello, how are you?", 'Say "fine"', "Line one\nline two")


def test_tab_separated_files_are_read(tmp_path):
    (pair,) = load_pairs(_write(tmp_path, "ok.tsv", "prompt\tchosen\trejected\nHello, you?\tYes\tNo\n"))
    assert pair.prompt == "Hello, you?"


def test_missing_value_markers_are_missing_not_answers(tmp_path):
    path = _write(tmp_path, "na.csv", HEADER + "Hi,NA,b\nHo,a,null\nHu,NaN,x\nHe,#N/A,y\nOk,c,d\n")
    pairs = load_pairs(path)
    assert [p.prompt for p in pairs] == ["Ok"]
    assert pairs.skipped_rows == 4 and "missing (NA, null)" in pairs.notes[0]


@pytest.mark.parametrize("values, kind", [([1, 2], "int"), ([["a"], ["b"]], "ndarray"), ([{"x": 1}, {"y": 2}], "dict")])
def test_non_text_cells_are_refused_not_turned_into_their_repr(tmp_path, values, kind):
    path = tmp_path / "cells.parquet"
    pd.DataFrame({"prompt": ["a", "b"], "chosen": ["x", "y"], "rejected": values}).to_parquet(path)
    with pytest.raises(DataError, match=f"column 'rejected' row 1 holds a value of type {kind}"):
        load_pairs(path)


# ---------------------------------------------------------------------------------------------
# Property: any bytes, any columns -> a YapoError or valid pairs, never another exception.

_COLUMN_POOL = ["prompt", "chosen", "rejected", "question", "matching", "not_matching", "A", "B",
                "country", "localization_status", "x", ""]
_TEXTS = ["Hello, world", "yes", "No", "A", "(B)", "", "NA", "null", " ", '"', "a\nb", "é"]
_OTHERS = [3, 2.5, None, True, ["l"], {"d": 1}]


def _value(rng: random.Random):
    return rng.choice(_TEXTS if rng.random() < 0.95 else _OTHERS)


def _random_table(rng: random.Random) -> pd.DataFrame:
    cols = rng.sample(_COLUMN_POOL, rng.randint(0, 6))
    rows = rng.randint(0, 5)
    return pd.DataFrame({c: [_value(rng) for _ in range(rows)] for c in cols})


def _random_bytes(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    text = "".join(rng.choice('prompt,chosen,rejected"\n\t\r{}[]:ab1 ,é\x00') for _ in range(rng.randint(0, 200)))
    if kind == 1:
        return text.encode("utf-8")
    if kind == 2:
        return (HEADER + text).encode(rng.choice(["utf-8", "utf-16", "latin-1"]), errors="replace")
    columns = ["prompt", "chosen", "rejected"] if rng.random() < 0.5 else rng.sample(_COLUMN_POOL, 3)
    return json.dumps([{c: _value(rng) for c in columns}
                       for _ in range(rng.randint(0, 3))]).encode()


def _check_outcome(load):
    try:
        pairs = load()
    except YapoError:
        return "error"
    assert isinstance(pairs, PairSet) and len(pairs) > 0
    for p in pairs:
        for text in (p.prompt, p.chosen, p.rejected):
            assert isinstance(text, str) and text.strip() and text not in ("NA", "null", "nan", "None")
    return "pairs"


def test_random_bytes_in_any_file_kind_give_a_yapo_error_or_valid_pairs(tmp_path):
    rng = random.Random(0)
    outcomes = []
    for i in range(300):
        path = _write(tmp_path, f"f{i}{rng.choice(['.csv', '.tsv', '.json', '.jsonl', '.parquet'])}", _random_bytes(rng))
        outcomes.append(_check_outcome(lambda: load_pairs(path)))
    assert "error" in outcomes and "pairs" in outcomes


def test_random_column_layouts_give_a_yapo_error_or_valid_pairs(tmp_path):
    rng = random.Random(1)
    outcomes = []
    for i in range(200):
        table = _random_table(rng)
        outcomes.append(_check_outcome(lambda: load_pairs(table)))
        if len(table.columns):  # the same table through a file
            path = tmp_path / f"t{i}.jsonl"
            table.to_json(path, orient="records", lines=True)
            outcomes.append(_check_outcome(lambda: load_pairs(path)))
    assert "error" in outcomes and "pairs" in outcomes


def test_text_that_is_not_valid_unicode_is_named(tmp_path):
    path = _write(tmp_path, "surrogate.jsonl", '{"prompt": "a\\ud800", "chosen": "b", "rejected": "c"}\n')
    with pytest.raises(DataError, match="not valid Unicode"):
        load_pairs(path)


def test_limits_columns_and_countries_of_the_wrong_kind():
    frame = pd.DataFrame([["a", "b", "c"]] * 3, columns=["prompt", "chosen", "rejected"])
    for limit, message in ((-5, "limit=-5 must be a whole number of at least 1"), ("5", "limit='5'")):
        with pytest.raises(YapoError, match=message):
            load_pairs(frame, limit=limit)
    with pytest.raises(DataError, match="has column 'prompt' twice"):
        load_pairs(pd.DataFrame([["a", "b", "c", "d"]], columns=["prompt", "chosen", "rejected", "prompt"]))
    with pytest.raises(DataError, match="has a column named \\('prompt',\\), which is not text"):
        load_pairs(pd.DataFrame({("prompt",): ["a"], "chosen": ["b"], "rejected": ["c"]}))
    dcl = pd.DataFrame({"country": ["egypt"], "localization_status": ["localized"], "prompt-mcq": ["q"],
                        "chosen-mcq": ["A"], "rejected_m_mcq": ["B"]})
    with pytest.raises(DataError, match="country=5 must be a country name"):
        load_pairs(dcl, country=5)


def test_blank_lines_of_spaces_or_commas_are_skipped_and_a_semicolon_in_a_comma_header_is_text():
    from yapo_core.tables import read_delimited

    assert len(read_delimited("prompt,chosen,rejected\nq,a,b\n   \n,,\n", "x.csv")) == 1
    table = read_delimited("prompt,chosen,rejected;note\nq,a,b;c\n", "x.csv")
    assert list(table.columns) == ["prompt", "chosen", "rejected;note"]


def test_split_names_of_a_folder_a_dataset_dict_and_an_unreachable_hub_dataset(tmp_path, monkeypatch):
    import datasets

    from yapo_core import hub
    from yapo_core.tables import split_names

    (tmp_path / "train.csv").write_text("prompt,chosen,rejected\nq,a,b\n")
    (tmp_path / "test_infer-00000-of-00002.jsonl").write_text("{}\n")
    assert split_names(tmp_path) == ["test_infer", "train"] and split_names(tmp_path / "train.csv") is None
    rows = datasets.Dataset.from_dict({"prompt": ["q"], "chosen": ["a"], "rejected": ["b"]})
    assert split_names(datasets.DatasetDict({"train": rows, "test": rows})) == ["train", "test"]
    monkeypatch.setattr(hub, "datasets_offline", lambda: False)
    monkeypatch.setattr(hub, "is_offline", lambda: False)
    monkeypatch.setattr(hub, "host_reachable", lambda url, timeout=3.0: False)
    assert split_names("owner/unreachable-data") is None  # loading it says why
