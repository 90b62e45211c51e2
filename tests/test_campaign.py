"""The countries campaign: one comparison per Deep-Culture-Lense country, stored as it goes,
resumed, and summarised as the paper's table."""

import json

from conftest import make_model

from yapo_core import comparison
from yapo_core.errors import YapoError


def _dcl_file(path, countries=("egypt", "uk"), n=6):
    import pandas as pd

    rows = []
    for split in ("train", "test"):
        for country in countries:
            for i in range(n):
                prompt = f"{country} {split} {i}: which?\nA. one\nB. two\nC. three"
                rows.append({"split": split, "country": country, "localization_status": "nolocalized",
                             "prompt-mcq": prompt, "chosen-mcq": "AB"[i % 2], "rejected_tiny_mcq": "C",
                             "prompt_open_ended": prompt, "chosen_open_ended": "x", "rejected_tiny_open_ended": "y"})
    folder = path / "dcl"
    folder.mkdir()
    frame = pd.DataFrame(rows)
    for split in ("train", "test"):
        frame[frame.split == split].drop(columns="split").to_json(folder / f"{split}.jsonl", orient="records", lines=True)
    return folder


def test_the_countries_campaign_stores_each_result_resumes_and_writes_the_papers_table(tmp_path, model_dir, sae_dir,
                                                                                       capsys, monkeypatch):
    from yapo_core import campaign
    from yapo_core.cli import main

    data, out = _dcl_file(tmp_path), tmp_path / "campaign"
    argv = ["compare", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data), "--countries", "all",
            "--methods", "caa,sas", "--multipliers=0,1", "--device", "cpu", "--out", str(out)]
    calls = []
    real = campaign.compare_methods
    monkeypatch.setattr(campaign, "compare_methods", lambda *a, **k: calls.append(k["task"]) or real(*a, **k))
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "over 2 countries" in table and "| CAA (dense, computed) |" in table and "re-implementation" in table
    assert (out / "egypt" / "comparison.json").exists() and (out / "uk" / "comparison.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["averages"]) == {"unsteered", "caa", "sas"} and summary["failed"] == {}
    # run again: both countries are read back, nothing is computed again
    (out / "uk" / "comparison.json").unlink()
    egypt = json.loads((out / "egypt" / "comparison.json").read_text())
    assert main(argv) == 0 and calls == ["culture-egypt", "culture-uk", "culture-uk"]
    assert json.loads((out / "egypt" / "comparison.json").read_text()) == egypt
    # an interrupted country resumes after its stored methods
    (out / "uk" / "comparison.json").unlink()
    first = json.loads((out / "egypt" / "comparison.json").read_text())["results"][:1]
    (out / "uk" / "partial.json").write_text(json.dumps(first))
    made, real_make = [], comparison.make_vector
    monkeypatch.setattr(comparison, "make_vector", lambda method, *a, **k: made.append(method.key) or
                        real_make(method, *a, **k))
    capsys.readouterr()
    assert main(argv) == 0 and made == ["sas"] and "resuming after caa" in capsys.readouterr().err
    assert main([*argv[:7], "--countries", "egypt,mars", *argv[9:]]) == 0  # one country missing: the other kept
    assert "mars: not measured" in capsys.readouterr().out
    # other settings on the same folder would mix two measurements in one table: refused, naming them
    assert main([*argv[:11], "--multipliers=0,2", *argv[12:]]) == 2
    err = capsys.readouterr().err
    assert "holds results measured with other settings (multipliers: [0.0, 1.0] there, [0.0, 2.0] now)" in err, err
    assert json.loads((out / "settings.json").read_text())["multipliers"] == [0.0, 1.0]
    # a folder whose runs measured nothing (every country failed) takes the corrected settings
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "settings.json").write_text(json.dumps({"multipliers": [0.0, 1.0]}))
    assert main([*argv[:11], "--multipliers=0,2", "--countries", "egypt", *argv[12:-1], str(empty)]) == 0
    assert json.loads((empty / "settings.json").read_text())["multipliers"] == [0.0, 2.0]


def test_the_campaign_on_one_file_takes_its_test_rows_from_test_data(tmp_path, model_dir, sae_dir, capsys, monkeypatch):
    """A file has no splits: reading it as both would report on the training rows."""
    from yapo_core import campaign
    from yapo_core.cli import main

    folder = _dcl_file(tmp_path, n=4)
    (folder / "test.jsonl").write_text("\n".join((folder / "test.jsonl").read_text().splitlines()[:2]) + "\n")  # egypt's 2
    argv = ["compare", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(folder / "train.jsonl"),
            "--countries", "egypt", "--methods", "caa", "--multipliers=0,1", "--device", "cpu", "--out", str(tmp_path / "c")]
    assert main(argv) == 2
    assert "is one file: give the held-out rows with --test-data" in capsys.readouterr().err
    sizes = []

    def measured(model, tok, sae, train, test, **kw):
        sizes.append((len(train), len(test)))
        raise YapoError("recorded")  # the campaign notes the country as failed and goes on

    monkeypatch.setattr(campaign, "compare_methods", measured)
    main([*argv, "--test-data", str(folder / "test.jsonl")])
    assert sizes == [(4, 2)]  # egypt's 4 training rows; its 2 test rows, from --test-data


def test_the_average_takes_each_country_at_its_validation_chosen_multiplier():
    from yapo_core.campaign import CampaignResult
    from yapo_core.comparison import ComparisonResult, MethodResult

    def country(test_at_1, test_at_2):  # validation chooses 1; the test split would prefer 2
        caa = MethodResult("caa", 1.0, accuracy={1.0: test_at_1, 2.0: test_at_2}, validation_accuracy={1.0: 0.9, 2.0: 0.1})
        return ComparisonResult("t", 0.25, [caa], {})

    result = CampaignResult("m", {"egypt": country(0.4, 0.8), "uk": country(0.6, 1.0)})
    assert result.averages() == {"unsteered": 25.0, "caa": 50.0}


def test_a_resumed_country_keeps_its_earlier_results_on_disk(tmp_path, monkeypatch):
    """Interrupted twice: the results stored before the first interruption are still stored."""
    from yapo_core import campaign
    from yapo_core.comparison import MethodResult

    out = tmp_path / "c"
    (out / "uk").mkdir(parents=True)
    (out / "uk" / "partial.json").write_text(json.dumps([MethodResult("caa", 1.0, accuracy={0.0: 0.5}).to_json()]))

    def interrupted(*args, on_result, **kwargs):
        on_result(MethodResult("sas", 1.0, accuracy={0.0: 0.5}))
        raise YapoError("interrupted")

    monkeypatch.setattr(campaign, "compare_methods", interrupted)
    campaign.compare_countries(make_model("llama"), None, None, lambda country, split: [], ["uk"], out)
    assert [r["method"] for r in json.loads((out / "uk" / "partial.json").read_text())] == ["caa", "sas"]
