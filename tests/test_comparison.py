"""The method comparison on a tiny model: every method measured the same way."""

import json
from dataclasses import replace

import pytest
import torch
from conftest import consistent_pairs, make_model, make_sae

from yapo_core import comparison
from yapo_core.comparison import compare_methods
from yapo_core.data import PreferencePair
from yapo_core.demo import OPEN_TRAINING, TRAINING, caveats
from yapo_core.errors import DataError, SettingsError


def test_compare_methods_reports_every_method(tokenizer, tmp_path, monkeypatch):
    model, sae = make_model("llama"), make_sae()
    items = [PreferencePair(f"Do you like {x}?\nA) yes\nB) no", "A", "B") for x in ("tea", "rain", "owls")]
    ids = torch.tensor([[5, 6, 7, 8]])
    measure = lambda: float(model(ids).logits[0, -1].softmax(-1).max())  # noqa: E731  (depends on the steering)
    made = []
    real_make_vector = comparison.make_vector
    monkeypatch.setattr(comparison, "make_vector", lambda *a, **k: made.append(real_make_vector(*a, **k)) or made[-1])
    pairs = [replace(p, prompt=f"{p.prompt}\nA) yes\nB) no", chosen="A", rejected="B") for p in consistent_pairs(10)]
    result = compare_methods(model, tokenizer, sae, pairs, items, capability=measure,
                             multipliers=[0.0, 1.0, 2.0], train_config=dict(max_steps=5, lr=0.05, warmup_steps=1))
    assert [r.method for r in result.results] == ["yapo", "bipo", "caa", "sas"]
    assert (result.settings["n_train"], result.settings["n_validation"]) == (8, 2)  # 20% held out to choose m
    for r in result.results:
        assert set(r.accuracy) == {0.0, 1.0, 2.0} and set(r.validation_accuracy) == {0.0, 1.0, 2.0}
        assert r.accuracy[0.0] == result.baseline_accuracy  # multiplier 0 is the unsteered model
        assert r.chosen_multiplier == comparison.best_multiplier(r.validation_accuracy)
        assert r.row()["multiplier (validation)"] == f"{r.chosen_multiplier:g}"

    base = measure()
    for r, vector in zip(result.results, made):
        with vector.apply(model, r.chosen_multiplier, sae=sae):
            assert r.capability_change == pytest.approx(measure() - base)  # steered minus unsteered, as reported
    with made[0].apply(model, 1.0, sae=sae):
        assert measure() != base  # the capability measure sees the steering
    yapo = result.results[0]
    assert len(yapo.loss_curve) == 5 and yapo.final_loss == yapo.loss_curve[-1]
    assert result.results[2].final_loss is None  # CAA is computed, not trained
    fig, _ = result.figures()
    rings = [t for t in fig.data if t.name.endswith(f"chosen m = {result.results[0].chosen_multiplier:g}")]
    assert rings and rings[0].marker.symbol == "circle-open"
    folder = result.save(tmp_path)
    text = (folder / "comparison.md").read_text()
    assert "| YaPO |" in text and "| CAA |" in text
    loaded = comparison.ComparisonResult.load(folder / "comparison.json")
    assert loaded.table() == result.table() and loaded.one_letter == result.one_letter  # read back whole
    assert result.one_letter == ("A", 1.0)  # every test answer is A: raising A alone scores 1
    assert "one letter everywhere (A) 1.00" in text
    assert (folder / "accuracy_by_multiplier.html").exists()


def test_the_compare_command_on_the_miniature_demo_world(tmp_path, monkeypatch, capsys):
    """`compare` end to end: builds the world, reads its eight-option MCQ task, writes the table."""
    from yapo_core.cli import main

    monkeypatch.setenv("YAPO_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    assert main(["compare", "--size", "mini", "--country", "nepal", "--methods", "yapo,caa", "--steps", "3",
                 "--multipliers=0,1", "--mcq-rejected", "given", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    table = captured.out
    assert "| YaPO |" in table and "| CAA |" in table and "nepal" in table
    saved = json.loads((out / "comparison.json").read_text())
    assert [r["method"] for r in saved["results"]] == ["yapo", "caa"]
    assert saved["settings"]["train_config"]["max_steps"] == 3  # --steps overrides the demo's 600
    assert saved["settings"]["train_config"]["lr"] == TRAINING["lr"]  # the demo world's own settings
    assert TRAINING["mcq_rejected"] == "every_option" and saved["settings"]["train_config"]["mcq_rejected"] == "given"
    assert len(saved["results"][0]["loss_curve"]) == 3
    assert "plan: 1 training(s) of at most 3 steps (YaPO (sparse)), 1 computed vector(s), 8 evaluations" in captured.err
    assert saved["metric"] == "mcq"  # auto: the answer letter's likelihood
    assert f"note: {caveats.CULTURE_BASELINES['mcq']}" in captured.err  # CAA hardly steers the demo world
    # --metric is measured on the demo world too, and one that cannot score its MCQ pairs is refused
    assert main(["compare", "--size", "mini", "--country", "nepal", "--methods", "caa", "--multipliers=0,1",
                 "--metric", "preference", "--out", str(out)]) == 0
    assert json.loads((out / "comparison.json").read_text())["metric"] == "preference"
    assert main(["compare", "--size", "mini", "--country", "nepal", "--methods", "caa", "--multipliers=0,1",
                 "--metric", "generation", "--out", str(out)]) == 2
    assert "generation accuracy" in capsys.readouterr().err
    # a culture's open answers, with the demo's settings for them
    assert main(["compare", "--size", "mini", "--country", "nepal", "--form", "open_ended", "--methods", "yapo",
                 "--steps", "2", "--multipliers=0,1", "--out", str(out)]) == 0
    saved = json.loads((out / "comparison.json").read_text())
    # scored by the culture the answers name, with how many stay fluent at the chosen multiplier
    assert saved["metric"] == "culture_open" and "open answers" in saved["task"]
    captured = capsys.readouterr()
    assert 0 <= saved["results"][0]["fluent"] <= 1 and " fluent at it |" in captured.out
    assert "note:" not in captured.err  # YaPO alone: nothing to warn of
    assert saved["settings"]["train_config"]["batch_size"] == OPEN_TRAINING["batch_size"]
    # a behaviour by BiPO's protocol: trained on open answers, measured by the A/B rate, the
    # multiplier chosen by the behaviour its held-out open answers show
    assert main(["compare", "--size", "mini", "--behaviour", "power-seeking", "--methods", "caa",
                 "--multipliers=0,1", "--out", str(out)]) == 0
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["metric"] == "behaviour" and saved["settings"]["validation_metric"] == "behaviour_open"
    assert f"note: {caveats.BEHAVIOUR_BASELINES}" in capsys.readouterr().err
    assert main(["compare", "--size", "mini", "--behaviour", "power-seeking", "--methods", "caa",
                 "--multipliers=0,1", "--metric", "behaviour_open", "--out", str(out)]) == 0
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["metric"] == "behaviour_open" and "validation_metric" not in saved["settings"]
    capsys.readouterr()
    assert main(["compare", "--size", "mini", "--behaviour", "greed", "--out", str(out)]) == 2
    assert "power-seeking, wealth-seeking" in capsys.readouterr().err


def test_a_rows_norm_keeps_a_small_vectors_size_and_an_empty_vector_says_so():
    short = comparison.MethodResult("yapo", 0.0, accuracy={1.0: 0.0}, l0=505, norm=0.0312)
    assert short.row()["norm"] == "0.0312" and short.row()["L0"] == 505  # not "L0 505 · norm 0.0"
    empty = comparison.MethodResult("sas", 0.0, accuracy={0.0: 0.1}, l0=0, norm=0.0)
    assert empty.row()["L0"].startswith("0 (an empty vector") and empty.row()["norm"] == "0"
    assert comparison.MethodResult("caa", 0.0, accuracy={1.0: 0.5}, l0=2304, norm=1234.5).row()["norm"] == "1,234"


def test_the_steps_column_counts_to_a_loss_every_trained_method_reaches():
    fast = [1.0] * 10 + [0.5] * 290  # at 0.5 from step 11
    slow = [1.0] * 50 + [0.6] * 250  # at 0.6 from step 51
    runs = [comparison.MethodResult("yapo", 0.0, accuracy={1.0: 1.0}, loss_curve=fast),
            comparison.MethodResult("bipo", 0.0, accuracy={1.0: 1.0}, loss_curve=slow),
            comparison.MethodResult("caa", 0.0, accuracy={1.0: 0.0})]
    result = comparison.ComparisonResult("t", 0.0, runs, {})
    assert result.loss_threshold == 0.66  # neither falls below 0.1: 1.1 x the higher final loss
    table = result.table()
    # the moving average the Train page draws falls below 0.66 13 and 36 steps after each drop; CAA trains nothing
    assert [r["steps to loss < 0.66"] for r in table] == [23, 86, "—"]
    assert [r["final loss"] for r in table] == ["0.500", "0.600", "—"]  # the same moving average's end
    # where every curve gets below 0.1 the column counts to 0.1
    low = comparison.ComparisonResult("t", 0.0, [comparison.MethodResult("yapo", 0.0, accuracy={1.0: 1.0},
                                                                        loss_curve=[1.0] * 20 + [0.05] * 100)], {})
    assert low.loss_threshold == 0.1 and low.table()[0]["steps to loss < 0.1"] == 70
    assert comparison.steps_below([0.5, 0.4], 0.1) is None
    assert comparison.convergence_threshold([fast]) == 0.1  # one method trained: nothing to compare it with
    assert comparison.convergence_threshold([fast, slow, [float("nan")] * 5]) == 0.66  # a broken curve is left out


def test_the_reported_multiplier_is_chosen_on_validation_never_on_test():
    r = comparison.MethodResult("yapo", 0.0, accuracy={0.5: 0.9, 1.0: 0.2}, validation_accuracy={0.5: 0.1, 1.0: 0.6})
    assert r.chosen_multiplier == 1.0 and r.row()["accuracy at it"] == "0.20"
    assert comparison.best_multiplier({-1.0: 0.5, 1.0: 0.5, 0.5: 0.5}) == 0.5  # ties: the smallest in size
    bare = comparison.MethodResult("caa", 0.0, accuracy={0.5: 0.9, 1.0: 0.2})
    assert bare.chosen_multiplier == 0.5 and "best multiplier (test)" in bare.row()
    assert bare.row()["accuracy at 2"] == "— (not swept)" and bare.row()["accuracy at 1"] == "0.20"
    fit, held = comparison.split_pairs(list(range(10)), 0.2)
    assert len(held) == 2 and sorted(fit + held) == list(range(10)) and comparison.split_pairs([1, 2], 0) == ([1, 2], [])


def test_too_few_training_pairs_to_hold_out_a_validation_split_are_refused_not_chosen_on_test(tokenizer):
    model, sae = make_model("llama"), make_sae()
    one = consistent_pairs(3)
    with pytest.raises(SettingsError, match="1 training pair.* too few to set 20% aside .* validation_fraction=0"):
        compare_methods(model, tokenizer, sae, one[:1], one[1:], methods=("caa",), multipliers=[0.0, 1.0],
                        metric="preference")
    result = compare_methods(model, tokenizer, sae, one[:1], one[1:], methods=("caa",), multipliers=[0.0, 1.0],
                             metric="preference", validation_fraction=0)
    assert result.settings["multiplier_choice"] == "best on the test split"
    from yapo_core.cli_args import in_cli_terms
    try:
        compare_methods(model, tokenizer, sae, one[:1], one[1:], methods=("caa",), metric="preference")
    except SettingsError as exc:  # no option sets the fraction: neither front end offers the keyword
        assert in_cli_terms(str(exc)).endswith("give more training pairs.")


def test_any_metric_scores_the_comparison(tokenizer):
    model, sae = make_model("llama"), make_sae()
    result = compare_methods(model, tokenizer, sae, consistent_pairs(10), consistent_pairs(4, seed=1),
                             methods=("caa",), multipliers=[0.0, 1.0], metric="preference")
    assert result.metric == "preference" and set(result.results[0].accuracy) == {0.0, 1.0}
    assert "held-out preference accuracy" in result.to_markdown()
    with pytest.raises(Exception, match="metric 'accuracy' is unknown"):
        compare_methods(model, tokenizer, sae, consistent_pairs(10), consistent_pairs(4), metric="accuracy")
    # one method's own settings over the shared ones (the demo's dense rate for open answers)
    result = compare_methods(model, tokenizer, sae, consistent_pairs(10), consistent_pairs(4, seed=1),
                             methods=("yapo", "bipo"), multipliers=[0.0, 1.0], metric="preference",
                             train_config=dict(max_steps=3, lr=0.05, warmup_steps=1),
                             method_configs={"bipo": {"max_steps": 1}})
    assert [len(r.loss_curve) for r in result.results] == [3, 1]
    assert result.settings["method_configs"] == {"bipo": {"max_steps": 1}}
    with pytest.raises(SettingsError, match="'fluency'.*does not measure the target"):  # m 0 would always win
        compare_methods(model, tokenizer, sae, consistent_pairs(10), consistent_pairs(4), metric="fluency")



def test_a_demo_behaviours_validation_split_holds_out_whole_offers(tokenizer, monkeypatch):
    from yapo_core.demo.corpus import BEHAVIOURS, OFFER_QUESTIONS

    power = BEHAVIOURS[0]
    pairs = [PreferencePair(q.format(offer=offer), power.matching[i % 3], power.not_matching[i % 3])
             for i, offer in enumerate(power.offers[:5]) for q in OFFER_QUESTIONS[:4]]
    seen, split = {}, comparison.split_pairs

    def spy(*args, **kwargs):
        seen["fit"], seen["held"] = split(*args, **kwargs)
        return seen["fit"], seen["held"]

    monkeypatch.setattr(comparison, "split_pairs", spy)
    model, sae = make_model("llama"), make_sae()
    result = compare_methods(model, tokenizer, sae, pairs, pairs[:4], methods=("caa",), multipliers=[0.0, 1.0],
                             metric="preference", validation_fraction=0.2)
    # as the test split holds out whole offers, so does validation: one offer of five, asked four ways
    offers = lambda part: {power.offer_of(p.prompt) for p in part}  # noqa: E731
    assert len(offers(seen["held"])) == 1 and not offers(seen["held"]) & offers(seen["fit"])
    assert result.settings["n_validation"] == 4 and result.settings["n_train"] == 16


def test_a_behaviour_trained_on_open_answers_is_measured_by_its_ab_rate(tokenizer):
    """BiPO's protocol: trained on open answers, measured on A/B questions. No A/B rate can score
    the open validation pairs, so the multiplier is chosen on them by the behaviour they show."""
    from yapo_core.demo.corpus import BEHAVIOURS, OFFER_QUESTIONS

    power = BEHAVIOURS[0]
    train = [PreferencePair(q.format(offer=offer), power.matching[i % 3], power.not_matching[i % 3])
             for i, offer in enumerate(power.offers[:5]) for q in OFFER_QUESTIONS[:4]]
    ab = [PreferencePair(f"Would you take {offer}?\n\n(A) Yes.\n(B) No.", "(A", "(B") for offer in power.offers[5:9]]
    model, sae = make_model("llama"), make_sae()
    said = []
    result = compare_methods(model, tokenizer, sae, train, ab, methods=("caa",), multipliers=[0.0, 1.0],
                             metric="behaviour", on_progress=said.append)
    assert result.metric == "behaviour" and set(result.results[0].accuracy) == {0.0, 1.0}
    assert result.settings["validation_metric"] == "behaviour_open"
    assert set(result.results[0].validation_accuracy) == {0.0, 1.0}
    assert "Multipliers chosen by the behaviour shown in open answers" in result.to_markdown()
    assert "Multipliers chosen by the behaviour shown in open answers" in result.figures()[0].layout.title.text  # the page
    assert any("cannot score its pairs" in line for line in said)
    # a metric that cannot score the test pairs is refused before any vector is made
    said.clear()
    with pytest.raises(DataError, match="behaviour rate .* cannot score the test pairs.*Metrics that can: preference"):
        compare_methods(model, tokenizer, sae, train, train[:4], methods=("yapo",), metric="behaviour",
                        on_progress=said.append)
    assert not said


def test_generated_answer_comparisons_report_unparseable_replies(tokenizer):
    model, sae = make_model("llama"), make_sae()
    pairs = [PreferencePair(f"Q{i}?\nA) yes\nB) no", "A", "B") for i in range(8)]
    result = compare_methods(model, tokenizer, sae, pairs, pairs[:3], methods=("caa",), multipliers=[0.0, 1.0],
                             metric="mcq_generated")
    r = result.results[0]
    assert r.unparseable is not None and 0 <= r.unparseable <= 1
    assert "unparseable replies" in r.row() and "unparseable" in json.dumps(r.to_json())
    assert r.fluent is None and "fluent at it" not in r.row()  # letters, not open text


def test_open_answer_comparisons_report_how_many_answers_stay_fluent(tokenizer, monkeypatch):
    model, sae = make_model("llama"), make_sae()
    pairs = [PreferencePair(f"What is dish {i}?", "Koshari. It is the classic dish.", "Burgers. It is the classic dish.")
             for i in range(8)]
    seen = []

    def fluency(model_, tok, prompts, vector, multiplier, sae=None, system=None):
        seen.append((len(prompts), multiplier))
        return 0.25

    monkeypatch.setattr(comparison, "fluency_rate", fluency)
    result = compare_methods(model, tokenizer, sae, pairs, pairs[:3], methods=("caa",), multipliers=[0.0, 1.0],
                             metric="generation")
    r = result.results[0]
    assert seen == [(3, r.chosen_multiplier)]  # the test prompts, at the multiplier the method is reported at
    assert r.fluent == 0.25 and r.row()["fluent at it"] == "0.25"
    assert comparison.MethodResult.from_json(json.loads(json.dumps(r.to_json()))).fluent == 0.25
