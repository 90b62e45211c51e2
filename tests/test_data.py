"""Loading preference data in every schema and format, chat formatting, truncation, bad input."""

import json
import pickle
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import NO_SYSTEM_TEMPLATE, SHARED_DATA, make_tokenizer

from yapo_core.data import PreferencePair, load_pairs, split_pairs
from yapo_core.encoding import collate, encode_pairs, encode_prompt, render_answer, render_prompt
from yapo_core.errors import DataError
from yapo_core.options import against_every_option

ROWS = [
    {"prompt": "Hello?", "chosen": "Hi!", "rejected": "Go away."},
    {"prompt": "Tea?", "chosen": "Yes please.", "rejected": "No."},
]


def _dcl_frame():
    rows = []
    for country in ("egypt", "uk"):
        for status in ("localized", "nolocalized"):
            rows.append({
                "country": country, "localization_status": status,
                "prompt-mcq": f"{country} {status} mcq?", "chosen-mcq": "A", "rejected_gemma_mcq": "B",
                "prompt_open_ended": f"{country} {status} open?", "chosen_open_ended": "koshari",
                "rejected_gemma_open_ended": "fish and chips",
            })
    return pd.DataFrame(rows)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "parquet"])
def test_pairs_load_from_every_file_format(tmp_path, fmt):
    df, path = pd.DataFrame(ROWS), tmp_path / f"pairs.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True)
    elif fmt == "json":
        path.write_text(json.dumps(ROWS))
    else:
        df.to_parquet(path)
    pairs = load_pairs(path)
    assert pairs.schema == "pairs" and len(pairs) == 2
    assert (pairs[1].prompt, pairs[1].chosen, pairs[1].rejected) == ("Tea?", "Yes please.", "No.")


def test_dataframe_and_datasets_objects_load():
    import datasets

    assert len(load_pairs(pd.DataFrame(ROWS))) == 2
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])})
    assert len(load_pairs(dd, split="test")) == 1
    assert len(load_pairs(datasets.Dataset.from_list(ROWS))) == 2


def test_local_files_through_datasets_builders(tmp_path):
    """A folder with train/test files, as `datasets` lays them out."""
    pd.DataFrame(ROWS).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(ROWS[:1]).to_csv(tmp_path / "test.csv", index=False)
    assert len(load_pairs(tmp_path)) == 2
    assert len(load_pairs(tmp_path, split="test")) == 1


def test_a_split_of_one_file_is_refused_not_ignored(tmp_path):
    path = tmp_path / "pairs.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False)
    with pytest.raises(DataError, match="'pairs.csv' is one file, which has no splits \\(asked for 'test'\\)"):
        load_pairs(path, split="test")  # it would otherwise read the training rows as the test split


def test_a_folder_split_joins_its_shards_and_is_not_a_longer_named_split(tmp_path):
    """``datasets`` writes a large split as numbered shards; ``test_infer.csv`` is not ``test``."""
    rows = [{**ROWS[0], "prompt": f"Q{i}?"} for i in range(5)]
    pd.DataFrame(rows[:2]).to_parquet(tmp_path / "train-00000-of-00002.parquet")
    pd.DataFrame(rows[2:]).to_parquet(tmp_path / "train-00001-of-00002.parquet")
    pd.DataFrame(ROWS).to_csv(tmp_path / "test_infer.csv", index=False)
    assert [p.prompt for p in load_pairs(tmp_path)] == [r["prompt"] for r in rows]
    with pytest.raises(DataError, match="no test.csv.* it has split\\(s\\) 'test_infer', 'train': choose one with split="):
        load_pairs(tmp_path, split="test")
    assert len(load_pairs(tmp_path, split="test_infer")) == 2
    pd.DataFrame([{"q": "x", "a": "y", "b": "z"}]).to_parquet(tmp_path / "train-00002-of-00002.parquet")
    with pytest.raises(DataError, match="shard 'train-00002-of-00002.parquet' has columns"):
        load_pairs(tmp_path)


def test_an_ab_matching_cell_is_a_letter_or_an_error_naming_the_row():
    ab = pd.DataFrame([{"question": "Q?", "A": "Take it", "B": "Share", "matching": m} for m in ("(B)", " a ", "B")])
    assert [p.chosen for p in load_pairs(ab)] == ["B", "A", "B"]
    for bad in ("Both", "none", "(C)", "AB"):  # not read by its first letter, nor skipped as if empty
        with pytest.raises(DataError, match=f"column 'matching' row 2 holds '{re.escape(bad)}': it names the matching"):
            load_pairs(pd.DataFrame([ab.iloc[0].to_dict(), {**ab.iloc[0].to_dict(), "matching": bad}]))


def test_bipo_schemas():
    df = pd.DataFrame([{"question": "Q?", "matching": "power!", "not_matching": "no power"}])
    p = load_pairs(df)
    assert p.schema == "bipo" and (p[0].chosen, p[0].rejected) == ("power!", "no power")
    ab = pd.DataFrame([{"question": "Q?", "A": "Take it all", "B": "Share", "matching": "(B)"}])
    p = load_pairs(ab)
    assert p.schema == "bipo_ab" and (p[0].chosen, p[0].rejected) == ("B", "A")
    assert "\nA. Take it all\nB. Share\nAnswer with A or B." in p[0].prompt


def test_deep_culture_lense_filters_and_forms():
    df = _dcl_frame()
    p = load_pairs(df, country="Egypt", localization="nolocalized")
    assert len(p) == 1 and p[0].prompt == "egypt nolocalized mcq?" and (p[0].chosen, p[0].rejected) == ("A", "B")
    p = load_pairs(df, country=["egypt", "uk"], form="open_ended", rejected_model="gemma")
    assert len(p) == 4 and p[0].chosen == "koshari" and p[0].meta["country"] == "egypt"
    with pytest.raises(DataError, match="country \\['mars'\\] is not in the data"):
        load_pairs(df, country="mars")
    with pytest.raises(DataError, match="no mcq rejected answers of model 'llama' .*'rejected_llama_mcq'.* it has those of 'gemma'"):
        load_pairs(df, rejected_model="llama")  # names the models it has, not the column mapping
    df["rejected_qwen_mcq"] = "C"
    with pytest.raises(DataError, match="rejected answers of 'gemma', 'qwen'"):
        load_pairs(df)  # two models' answers: which one is the user's to choose
    assert load_pairs(df, rejected_model="qwen", country="uk")[0].rejected == "C"
    df["my_rejected"] = "D"  # the user's own rejected column: no model to choose, named or not
    mine = {"prompt": "prompt-mcq", "chosen": "chosen-mcq", "rejected": "my_rejected"}
    p = load_pairs(df, columns=mine, country="uk", localization="nolocalized")  # the filters still apply
    assert [(x.prompt, x.rejected) for x in p] == [("uk nolocalized mcq?", "D")]
    assert load_pairs(df, columns=mine, rejected_model="qwen", country="uk")[0].rejected == "D"
    open_only = df.drop(columns=["rejected_gemma_mcq", "rejected_qwen_mcq"])
    with pytest.raises(DataError, match="no mcq rejected answers .* it has open_ended ones: use form='open_ended'"):
        load_pairs(open_only)  # the other form's answers are there: say so, not "choose among no model"
    assert len(load_pairs(open_only, form="open_ended")) == 4
    with pytest.raises(DataError, match="no open_ended rejected answers .* Map yours with columns="):
        load_pairs(open_only.drop(columns=["rejected_gemma_open_ended"]), form="open_ended")
    with pytest.raises(DataError, match="localization 'local' is unknown"):
        load_pairs(df, localization="local")


@pytest.mark.parametrize("setting", [{"country": "egypt"}, {"localization": "nolocalized"}, {"rejected_model": "gemma"}])
def test_deep_culture_lense_settings_on_other_data_are_refused(setting):
    """A filter the data cannot apply is an error, not a silent no-op that trains on every row."""
    name, value = next(iter(setting.items()))
    with pytest.raises(DataError, match=f"{name}={value!r} selects Deep-Culture-Lense rows .* schema 'pairs'.* leave it out"):
        load_pairs(pd.DataFrame(ROWS), **setting)


def test_column_overrides():
    df = pd.DataFrame([{"q": "Hi?", "good": "Hello", "bad": "Bye"}])
    p = load_pairs(df, columns={"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert (p[0].prompt, p[0].chosen) == ("Hi?", "Hello")


def test_a_partial_column_mapping_names_what_is_missing():
    df = pd.DataFrame([{"q": "Hi?", "good": "Hello", "bad": "Bye"}])
    with pytest.raises(DataError, match="names chosen, prompt but not rejected, and the data has no column of that "
                                        "name: map all three"):
        load_pairs(df, columns={"prompt": "q", "chosen": "good"})
    # a misspelt column alone is mapped alone: the roles left out are read from the columns of their name
    typo = pd.DataFrame([{"prompt": "Hi?", "chosen": "Hello", "rejectd": "Bye"}])
    assert load_pairs(typo, columns={"rejected": "rejectd"})[0].rejected == "Bye"
    with pytest.raises(DataError, match="'foo' is not a role a column can be mapped to; the roles are A, B, chosen"):
        load_pairs(typo, columns={"rejected": "rejectd", "foo": "bar"})


def test_headers_that_differ_in_case_or_spaces_and_semicolon_csv_are_read(tmp_path):
    """As spreadsheets save them: ``Prompt,Chosen,Rejected``, `` prompt ``, and CSV separated by
    semicolons where the comma is the decimal mark."""
    path = tmp_path / "pairs.csv"
    path.write_text('Prompt; Chosen ;REJECTED\nHi, you?;Hello;Bye\n"Hi; there";"He said ""yes""";no\n')
    pairs = load_pairs(path)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("Hi, you?", "Hello", "Bye"),
                                                                 ("Hi; there", 'He said "yes"', "no")]


def test_one_column_for_two_roles_is_refused():
    df = pd.DataFrame([{"q": "Hi?", "a": "Hello", "b": "Bye"}])
    with pytest.raises(DataError, match="chosen and rejected are both read from column 'b'"):
        load_pairs(df, columns={"prompt": "q", "chosen": "b", "rejected": "b"})


def test_missing_column_names_the_column_and_the_fix():
    df = pd.DataFrame([{"prompt": "Hi?", "chosen": "Hello", "reject": "Bye"}])
    with pytest.raises(DataError, match="cannot tell the schema"):
        load_pairs(df)
    with pytest.raises(DataError, match="rejected -> 'rejected' missing.*columns="):
        load_pairs(df, schema="pairs")


def test_empty_and_unreadable_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_pairs(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("prompt,chosen,rejected\n")
    with pytest.raises(DataError, match="no rows"):
        load_pairs(header_only)
    with pytest.raises(DataError, match="does not exist"):
        load_pairs(tmp_path / "missing.csv")
    pkl = tmp_path / "pairs.pkl"
    pkl.write_bytes(pickle.dumps(ROWS))
    with pytest.raises(DataError, match="pickle"):
        load_pairs(pkl)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{oops\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_pairs(bad)


def test_unknown_hub_dataset_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="not in the local Hugging Face cache|was not found"):
        load_pairs("nobody-xyz/no-such-dataset-123")


def test_rows_with_empty_fields_are_skipped_and_counted():
    df = pd.DataFrame(ROWS + [{"prompt": "x", "chosen": "", "rejected": "y"}])
    p = load_pairs(df)
    assert len(p) == 2 and p.skipped_rows == 1 and "1 row(s) skipped" in p.notes[0]
    train, test = p.split(0.5)  # the whole file's notes go with the training part, once
    assert (train.skipped_rows, train.notes, test.notes) == (1, p.notes, [])


def test_chat_template_puts_the_answer_in_the_assistant_turn(tokenizer):
    prompt = render_prompt(tokenizer, "Hi?")
    assert prompt == "<bos><|user|>Hi?<|end|><|assistant|>"
    assert render_answer(tokenizer, "Hi?", "Hello") == "Hello<|end|>"
    assert "None" not in render_prompt(tokenizer, "Hi?", system=None)  # pitfall 1 of docs/method.md §4
    assert render_prompt(tokenizer, "Hi?", system="Be brief.").startswith("<bos><|system|>Be brief.<|end|>")
    [enc], _ = encode_pairs(tokenizer, [PreferencePair("Hi?", "Hello", "Bye")])
    assert enc.prompt_ids.count(tokenizer.bos_token_id) == 1  # pitfall 2: no double BOS
    assert enc.chosen_ids[-1] == tokenizer.eos_token_id


def test_template_without_system_role_folds_the_system_prompt_into_the_user_turn():
    tok = make_tokenizer(NO_SYSTEM_TEMPLATE)
    assert render_prompt(tok, "Hi?", system="Be brief.") == "<bos><|user|>Be brief.\n\nHi?<|end|><|assistant|>"


def test_plain_format_without_a_chat_template():
    tok = make_tokenizer(chat_template=None)
    assert render_prompt(tok, "Hi?") == "User: Hi?\nAssistant:"
    assert render_answer(tok, "Hi?", "Hello") == " Hello<|end|>"


def test_overlong_pairs_cut_the_start_of_the_users_text_and_keep_the_template_and_the_answer(tokenizer):
    long = PreferencePair("x" * 100 + "END?", "yes", "no", system="Be brief.")
    too_long_answer = PreferencePair("q?", "y" * 80, "n")
    encoded, report = encode_pairs(tokenizer, [long, too_long_answer, PreferencePair("q?", "a", "b")], max_length=60)
    assert (report.kept, report.truncated, report.dropped) == (2, 1, 1)
    first = encoded[0]
    assert first.truncated and len(first.prompt_ids) + len(first.chosen_ids) <= 60
    assert tokenizer.decode(first.chosen_ids) == "yes<|end|>"
    full = encode_prompt(tokenizer, long.prompt, long.system)
    head = encode_prompt(tokenizer, "", long.system)[:-3]  # BOS, the system turn and the user tag
    text = tokenizer.decode(first.prompt_ids)
    assert first.prompt_ids[: len(head)] == head and first.prompt_ids[0] == full[0] == tokenizer.bos_token_id
    assert text.endswith("xEND?<|end|><|assistant|>") and len(first.prompt_ids) >= 60 - len(first.rejected_ids) - 2
    assert "the template kept" in report.describe()
    # a template that does not fit at all drops the pair instead of cutting into it
    assert encode_pairs(tokenizer, [long], max_length=len(head) + 3)[1].dropped == 1


def test_collate_marks_answer_tokens(tokenizer):
    encoded, _ = encode_pairs(tokenizer, [PreferencePair("a?", "yes", "no"), PreferencePair("bb?", "ok", "nope")])
    batch = collate(encoded, tokenizer.pad_token_id)
    assert batch.input_ids.shape[0] == 4 and batch.n_pairs == 2
    for row, answer in enumerate(["yes", "ok", "no", "nope"]):
        ids = batch.input_ids[row][batch.answer_mask[row]]
        assert tokenizer.decode(ids) == answer + "<|end|>"
    assert (batch.attention_mask.sum(1) == (batch.input_ids != tokenizer.pad_token_id).sum(1)).all()


BIPO = SHARED_DATA / "bipo"
BIPO_EXCERPT = Path(__file__).resolve().parent / "data" / "bipo"  # 12 real rows per split, in the tree


@pytest.mark.parametrize("behaviour", ["power-seeking", "wealth-seeking"])
def test_real_bipo_csvs_load_from_the_excerpt(behaviour):
    """Real BiPO files (fields with commas, quotes and newlines) through the public loader."""
    train = load_pairs(BIPO_EXCERPT / behaviour / "train.csv")
    test_infer = load_pairs(BIPO_EXCERPT / behaviour / "test_infer.csv")
    assert train.schema == "bipo" and len(train) == 12
    assert test_infer.schema == "bipo_ab" and len(test_infer) == 12
    assert {p.chosen for p in test_infer} <= {"A", "B"} and all(p.rejected != p.chosen for p in test_infer)
    assert all("\nA. " in p.prompt and "\nB. " in p.prompt for p in test_infer)
    assert all(p.prompt and p.chosen and p.rejected for p in train)


@pytest.mark.skipif(not BIPO.is_dir(), reason="../shared/data/bipo is not present")
@pytest.mark.parametrize("behaviour", ["power-seeking", "wealth-seeking", "hallucination"])
def test_real_bipo_csvs_load(behaviour):
    train = load_pairs(BIPO / behaviour / "train.csv")
    test_infer = load_pairs(BIPO / behaviour / "test_infer.csv")
    assert train.schema == "bipo" and len(train) >= 600
    assert test_infer.schema == "bipo_ab" and len(test_infer) == 200
    assert {p.chosen for p in test_infer} == {"A", "B"}
    assert all(p.prompt and p.chosen and p.rejected for p in train)


def test_pairs_with_identical_answers_are_noted(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"prompt": ["a?", "b?", "c?"], "chosen": ["x", "y", "z"], "rejected": ["x", "n", "n"]}).to_csv(path, index=False)
    note = load_pairs(path).notes[0]
    assert "1 of 3 pair(s) have the same chosen and rejected answer: as given they teach nothing" in note
    assert "multiple-choice" not in note


def test_identical_letter_answers_are_noted_as_teaching_against_every_option(tmp_path):
    """A multiple-choice pair whose given rejected letter is its chosen one teaches nothing as
    given, but against every option it does: the note says which, and the training expansion agrees."""
    path = tmp_path / "p.csv"
    question = "Which dish?\nA. Tea\nB. Koshari\nC. Ful"
    pd.DataFrame({"prompt": [question, question, "No options here"], "chosen": ["B", "B", "B"],
                  "rejected": ["B", "A", "B"]}).to_csv(path, index=False)
    pairs = load_pairs(path)
    (note,) = [n for n in pairs.notes if "same chosen" in n]
    assert note.startswith("2 of 3 pair(s)") and "1 of them is a multiple-choice" in note
    expanded = against_every_option([pairs.pairs[0]])
    assert sorted(p.rejected for p in expanded) == ["A", "C"]


def test_a_grouped_split_holds_out_whole_groups():
    pairs = [(g, i) for g in range(8) for i in range(3)]  # 8 groups of 3
    group = lambda p: p[0]  # noqa: E731
    fit, held = split_pairs(pairs, 0.25, seed=0, group=group)
    assert len({g for g, _ in held}) == 2 and not {g for g, _ in fit} & {g for g, _ in held}
    assert sorted(fit + held) == pairs and fit == sorted(fit) and held == sorted(held)  # every pair once, in order
    assert split_pairs(pairs, 0.25, seed=0, group=group) == (fit, held)  # seeded
    assert split_pairs(pairs, 0.25, seed=1, group=group) != (fit, held)
    assert len({g for g, _ in split_pairs(pairs, 0.9, group=group)[0]}) == 1  # always one group to train on
    assert len({g for g, _ in split_pairs(pairs, 0.01, group=group)[1]}) == 1  # and one to hold out
    assert split_pairs(pairs[:3], 0.5, group=group) == (pairs[:3], [])  # one group: nothing to hold out
    assert split_pairs(pairs, 0, group=group) == (pairs, [])
    ungrouped = split_pairs(pairs, 0.25, seed=0)[1]
    assert len(ungrouped) == 6 and len({g for g, _ in ungrouped}) > 2  # without groups, pairs are drawn one by one


def test_wrongly_named_or_shaped_files_are_named_for_what_they_are(tmp_path):
    tabs = tmp_path / "pairs.csv"
    tabs.write_text("prompt\tchosen\trejected\nHi?\tHello\tBye\n")
    with pytest.raises(DataError, match="'pairs.csv' is tab-separated .* name it .tsv"):
        load_pairs(tabs)
    tabs.rename(tmp_path / "pairs.tsv")
    assert len(load_pairs(tmp_path / "pairs.tsv")) == 1


def test_held_out_counts_round_to_the_nearest_pair():
    assert [len(split_pairs(range(n), 0.2)[1]) for n in (8, 9, 13)] == [2, 2, 3]


def test_countries_are_matched_in_any_case_in_the_data_too():
    df = _dcl_frame()
    df["country"] = df["country"].str.capitalize()  # "Egypt", "Uk" in the data
    p = load_pairs(df, country="EGYPT", localization="nolocalized")
    assert len(p) == 1 and p[0].prompt == "egypt nolocalized mcq?"


def test_a_missing_column_with_none_left_to_map_says_to_add_it():
    with pytest.raises(DataError, match="Every column it has is used already: add a rejected column to the data"):
        load_pairs([{"prompt": "q", "chosen": "a"}], schema="pairs")
    with pytest.raises(DataError, match="Map yours with columns"):
        load_pairs([{"prompt": "q", "chosen": "a", "worse": "b"}], schema="pairs")
    with pytest.raises(DataError, match=r"the data has 2 column\(s\), \['chosen', 'prompt'\]: preference pairs need three"):
        load_pairs([{"prompt": "q", "chosen": "a"}])  # auto schema
