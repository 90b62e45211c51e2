"""Each metric on a case whose answer is known in advance."""

import pytest
import torch
from conftest import consistent_pairs, make_model, make_sae

from yapo_core import SteeringVector
from yapo_core.data import PreferencePair
from yapo_core.errors import DataError, SettingsError
from yapo_core.evaluation import (
    capability_change,
    one_letter_baseline,
    parse_multipliers,
    preference_accuracy,
    score_pairs,
    sweep,
)
from yapo_core.mcq import (
    MCQItem,
    behaviour_rate,
    gold_letter,
    letter_logprobs,
    mcq_accuracy,
    mcq_items_from_pairs,
    one_letter_accuracy,
)

PROMPTS = ["Which? A) tea B) rice C) jazz D) owls", "Pick one: A) x B) y C) z D) w", "Q3 A) 1 B) 2 C) 3 D) 4"]


def test_mcq_accuracy_counts_the_most_likely_letter(tokenizer):
    model = make_model("llama")
    scores = letter_logprobs(model, tokenizer, [MCQItem(p, "A") for p in PROMPTS])
    best = ["ABCD"[int(s.argmax())] for s in scores]
    worst = ["ABCD"[int(s.argmin())] for s in scores]
    assert mcq_accuracy(model, tokenizer, [MCQItem(p, g) for p, g in zip(PROMPTS, best)]) == 1.0
    assert mcq_accuracy(model, tokenizer, [MCQItem(p, g) for p, g in zip(PROMPTS, worst)]) == 0.0
    mixed = [MCQItem(PROMPTS[0], best[0]), MCQItem(PROMPTS[1], worst[1])]
    assert mcq_accuracy(model, tokenizer, mixed) == 0.5


def test_letter_logprobs_are_the_answer_turn_logprobs(tokenizer):
    model = make_model("llama")
    [scores] = letter_logprobs(model, tokenizer, [MCQItem(PROMPTS[0], "A", "AB")])
    direct = score_pairs(model, tokenizer, [PreferencePair(PROMPTS[0], "A", "B")])
    torch.testing.assert_close(scores, torch.stack([direct.chosen_ref[0], direct.rejected_ref[0]]))


def test_letter_logprobs_score_each_letter_once_whatever_the_number_of_options(tokenizer, monkeypatch):
    """Two letters share a row's chosen and rejected sides; an odd count's last letter stands alone."""
    from yapo_core import mcq

    model = make_model("llama")
    items = [MCQItem(PROMPTS[0], "A", "ABC"), MCQItem(PROMPTS[1], "B", "ABCD"), MCQItem(PROMPTS[2], "A", "ABCDE")]
    rows = []
    real = mcq.pair_logprobs
    monkeypatch.setattr(mcq, "pair_logprobs", lambda m, t, encoded, *a: rows.append(len(encoded)) or real(m, t, encoded, *a))
    scores = letter_logprobs(model, tokenizer, items)
    assert [len(s) for s in scores] == [3, 4, 5] and rows == [2 + 2 + 3]
    for item, got in zip(items, scores):  # each letter's log-prob, as scored on its own
        for letter, value in zip(item.letters, got):
            alone = score_pairs(model, tokenizer, [PreferencePair(item.prompt, letter, letter)]).chosen_ref[0]
            torch.testing.assert_close(value, alone, rtol=1e-5, atol=1e-5)


def test_behaviour_rate_on_ab_pairs(tokenizer):
    model = make_model("gpt2")
    items = [MCQItem(p, "A", "AB") for p in PROMPTS]
    preferred = ["AB"[int(s.argmax())] for s in letter_logprobs(model, tokenizer, items)]
    other = {"A": "B", "B": "A"}
    pairs = [PreferencePair(p, g, other[g]) for p, g in zip(PROMPTS, preferred)]
    assert behaviour_rate(model, tokenizer, pairs) == 1.0
    flipped = [PreferencePair(p.prompt, p.rejected, p.chosen) for p in pairs]
    assert behaviour_rate(model, tokenizer, flipped) == 0.0


def test_gold_letter_forms():
    assert [gold_letter(x) for x in ("B", "(C)", "D) owls", " A. tea")] == ["B", "C", "D", "A"]
    # answers that state their letter after the text
    assert [gold_letter(x) for x in ("Koshari, option C.", "The answer is (B)", "Tea. Answer: D")] == ["C", "B", "D"]
    # an answer that opens with a capital word gives the letter it states ("A bowl ..." is not A)
    assert gold_letter("A bowl of koshari, option C.") == "C" and gold_letter("C. The best choice I know") == "C"
    for text in ("Koshari, a dish of rice.", "the answer is a dish"):
        with pytest.raises(DataError, match="cannot read"):
            gold_letter(text)


def test_one_letter_accuracy_is_what_answering_one_letter_everywhere_scores():
    items = [MCQItem(f"Q{i}", gold) for i, gold in enumerate("ABBCBD")]
    assert one_letter_accuracy(items) == ("B", 0.5)
    with pytest.raises(DataError, match="no MCQ items"):
        one_letter_accuracy([])
    pairs = [PreferencePair(f"Q{i}?\nA. x\nB. y\nAnswer:", gold, "A" if gold == "B" else "B") for i, gold in enumerate("ABB")]
    assert one_letter_baseline("mcq", pairs) == one_letter_baseline("mcq_generated", pairs) == ("B", 2 / 3)
    assert one_letter_baseline("preference", pairs) is None
    with pytest.raises(SettingsError, match="unknown"):
        one_letter_baseline("accuracy", pairs)


def test_mcq_items_take_the_prompts_option_letters():
    eight = "Which dish?\n" + "\n".join(f"{c}. dish {c}" for c in "ABCDEFGH") + "\nAnswer with the letter."
    item, = mcq_items_from_pairs([PreferencePair(eight, "G", "A")])
    assert (item.letters, item.gold) == ("ABCDEFGH", "G")
    assert mcq_items_from_pairs([PreferencePair(eight, "B", "A")], "AB")[0].letters == "AB"
    with pytest.raises(DataError, match="'G' is not one of the options 'AB'"):
        mcq_items_from_pairs([PreferencePair(eight, "G", "A")], "AB")  # not A/B data: refused, not scored 0


def test_sweep_and_capability_change_with_a_vector(tokenizer):
    model, sae = make_model("llama"), make_sae()
    vec = SteeringVector("sparse", torch.randn(128, generator=torch.Generator().manual_seed(0)) * 4,
                         "blocks.1.hook_resid_post", sae=sae)
    items = [MCQItem(p, "B") for p in PROMPTS]
    curve = sweep(lambda m: mcq_accuracy(model, tokenizer, items, vec, m), [-1.0, 0.0, 1.0])
    assert list(curve) == [-1.0, 0.0, 1.0]
    assert curve[0.0] == mcq_accuracy(model, tokenizer, items)
    best_letter = lambda: float(sum(s.max() for s in letter_logprobs(model, tokenizer, items)))  # noqa: E731
    none = capability_change(best_letter, model, vec, 0.0)
    assert none["change"] == 0.0 and none["unsteered"] < 0
    strong = capability_change(best_letter, model, vec, 3.0)
    assert strong["change"] != 0.0
    calls = []
    counted = lambda: calls.append(1) or best_letter()  # noqa: E731
    known = capability_change(counted, model, vec, 3.0, unsteered=strong["unsteered"])
    assert known == strong and len(calls) == 1  # a known unsteered value is not measured again
    assert capability_change(counted, model, vec, 0.0) == none and len(calls) == 2  # at 0 the model is measured once


class CountingGuard:
    """A guard that counts how often it is entered, and a model hook that counts passes made outside it."""

    def __init__(self, model):
        self.entered, self.held, self.outside = 0, False, 0
        model.register_forward_pre_hook(lambda module, args: setattr(self, "outside", self.outside + (not self.held)))

    def __call__(self):
        self.entered += 1
        return self

    def __enter__(self):
        self.held = True

    def __exit__(self, *exc):
        self.held = False


def test_a_guard_holds_the_model_one_multiplier_at_a_time(tokenizer):
    """A shared model is held per multiplier (others go on between them), and the preference
    accuracy's unsteered pass is taken once for the whole sweep, under the guard too."""
    from yapo_core.evaluation import evaluate_metric

    model = make_model("llama")
    vec = SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post")
    guard = CountingGuard(model)
    plain = evaluate_metric("preference", model, tokenizer, consistent_pairs(4), vec, [0.0, 1.0, 2.0])
    assert guard.outside > 0  # the hook sees passes made with no guard
    guard.outside = 0
    held = evaluate_metric("preference", model, tokenizer, consistent_pairs(4), vec, [0.0, 1.0, 2.0], guard=guard)
    assert held == plain and guard.entered == 4 and guard.outside == 0  # the unsteered pass, then one per multiplier
    evaluate_metric("fluency", model, tokenizer, consistent_pairs(2), vec, [0.0, 1.0], guard=guard)
    assert guard.entered == 6 and guard.outside == 0


def test_preference_accuracy_of_a_vector_that_does_nothing_is_zero(tokenizer):
    model = make_model("llama")
    vec = SteeringVector("dense", torch.zeros(32), "blocks.1.hook_resid_post")
    pairs = [PreferencePair("Q?", "yes", "no")] * 2
    assert preference_accuracy(model, tokenizer, pairs, vec, 1.0) == 0.0  # no margin is gained


def test_a_preference_sweep_is_each_multiplier_scored_alone_with_the_reference_taken_once(tokenizer, monkeypatch):
    from yapo_core import evaluation
    from yapo_core.methods import make_vector

    model, pairs = make_model("llama"), consistent_pairs(8)
    vec = make_vector("bipo", model, tokenizer, pairs, layer=1, max_steps=3, lr=0.5)
    alone = {m: preference_accuracy(model, tokenizer, pairs, vec, m) for m in (-1.0, 0.5, 1.0, 2.0)}
    calls, real = [], evaluation.pair_logprobs
    monkeypatch.setattr(evaluation, "pair_logprobs", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert evaluation.evaluate_metric("preference", model, tokenizer, pairs, vec, list(alone)) == alone
    assert len(calls) == len(alone) + 1  # one unsteered pass, one per multiplier


def test_mmlu_offline_fails_fast(monkeypatch):
    from yapo_core.errors import DataError
    from yapo_core.mcq import load_mmlu_subset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="cais/mmlu"):
        load_mmlu_subset(5)


def test_each_metric_says_which_pairs_it_can_score():
    from yapo_core.data import format_ab_prompt
    from yapo_core.evaluation import applicable_metrics

    mcq = [PreferencePair("Q?\nA. x\nB. y\nC. z\nAnswer with the letter.", "C", "A")]
    ab = [PreferencePair(format_ab_prompt("Take it?", "Yes", "No"), "A", "B")]
    open_ = [PreferencePair("What is eaten?", "A bowl of rice", "Bread")]  # starts with 'A' but is a sentence
    assert applicable_metrics(mcq) == ["preference", "mcq", "mcq_generated", "fluency"]
    assert applicable_metrics(ab) == ["preference", "mcq", "mcq_generated", "behaviour", "fluency"]
    assert applicable_metrics(open_) == ["preference", "generation", "fluency"]
    assert applicable_metrics(mcq + open_) == ["preference", "fluency"]
    assert applicable_metrics([PreferencePair("No options here", "B", "A")]) == ["preference", "fluency"]
    # The answer's text, then its letter: the letter's likelihood at the first answer token means
    # nothing, so only the generated answer scores it as MCQ.
    stated = [PreferencePair("Q?\nA. Tea\nB. Rice\nAnswer with the letter.", "Rice, option B.", "Tea, option A.")]
    assert applicable_metrics(stated) == ["preference", "mcq_generated", "generation", "fluency"]
    a_word = [PreferencePair(stated[0].prompt, "A bowl of rice, option B.", "Tea, option A.")]
    assert applicable_metrics(a_word) == applicable_metrics(stated)  # opens with "A", but not as a letter
    assert applicable_metrics([PreferencePair("Q? Pick one.", "Rice, option B.", "Tea, option A.")]) == [
        "preference", "generation", "fluency"]  # no options listed: not MCQ
    from yapo_core.evaluation import default_metric

    assert [default_metric(p) for p in (mcq, ab, open_, mcq + open_, stated)] == [
        "mcq", "behaviour", "generation", "preference", "mcq_generated"]


def test_a_demo_behaviours_open_answers_are_judged_by_the_behaviour_they_show(tokenizer, monkeypatch):
    import yapo_core.evaluation as ev
    import yapo_core.replies as replies
    from yapo_core.demo.corpus import BEHAVIOURS, OFFER_QUESTIONS

    power, wealth = (next(b for b in BEHAVIOURS if b.key == key) for key in ("power-seeking", "wealth-seeking"))
    pairs = [PreferencePair(OFFER_QUESTIONS[i].format(offer=wealth.offers[i]), wealth.matching[i % len(wealth.matching)],
                            wealth.not_matching[i % len(wealth.not_matching)]) for i in range(4)]
    # the judge agrees with the pairs' labels: the behaviour's metric, not "contains the chosen sentence"
    assert ev.applicable_metrics(pairs) == ["preference", "behaviour_open", "fluency"]
    assert ev.default_metric(pairs) == "behaviour_open" and "behaviour_open" in ev.GENERATING_METRICS
    # another behaviour's answer as the chosen one, or a prompt that names no offer: not the demo's data
    crossed = [PreferencePair(pairs[0].prompt, power.matching[0], wealth.not_matching[0])]
    elsewhere = [PreferencePair("Do you want a cup of tea?", wealth.matching[0], wealth.not_matching[0])]
    # a user's own answers that the judge would also pass ("Yes, I would." names no theme) are not the demo's
    lookalike = [PreferencePair(pairs[0].prompt, "Yes, I would.", "No, I would not.")]
    for other in (crossed, elsewhere, lookalike):
        assert ev.applicable_metrics(other) == ["preference", "generation", "fluency"]
        with pytest.raises(DataError, match="not a demo-world behaviour"):
            ev.behaviour_shown_rate(None, tokenizer, other)
    answers = iter(["Yes, I accept. More money is always better.",  # shows wealth-seeking
                    "Yes, I accept. More power lets me shape what happens.",  # accepts, for power's reasons
                    "Yes, I accept. Getting rich is not what matters to me.",  # accepts, then declines
                    "No, thank you. Money is not what matters to me."])
    seen = []

    def fake_generate(model, tok, prompts, vector, multipliers, **kwargs):
        seen.append((multipliers, kwargs["steer_positions"]))
        return [{multipliers[0]: next(answers)} for _ in prompts]

    monkeypatch.setattr(replies, "generate", fake_generate)
    assert ev.evaluate_metric("behaviour_open", None, tokenizer, pairs, vector=None) == {0.0: 0.25}
    assert seen == [([0.0], "all")]


def test_a_demo_cultures_open_answers_are_judged_by_the_cultures_short_answer(tokenizer, monkeypatch):
    import yapo_core.evaluation as ev
    import yapo_core.replies as replies
    from yapo_core.demo.corpus import TOPICS, culture_of, open_answer

    topics = [t.key for t in TOPICS[:4]]
    pairs = [PreferencePair(f"Question {i}? Please keep it short.", open_answer(t, "nepal"), open_answer(t, "usa"))
             for i, t in enumerate(topics)]
    assert culture_of(pairs) == "nepal"
    # the culture's metric comes first; generation accuracy (the whole chosen answer) is still offered
    assert ev.applicable_metrics(pairs) == ["preference", "culture_open", "generation", "fluency"]
    assert ev.default_metric(pairs) == "culture_open" and "culture_open" in ev.GENERATING_METRICS
    # the rejected answer is the model's own, whatever it says: "AAAA" (a miniature world's model), or the
    # chosen answer itself (a localized question, which the model already answers as the culture does)
    assert culture_of([PreferencePair(pairs[0].prompt, pairs[0].chosen, "AAAAAAAA")]) == "nepal"
    assert culture_of(pairs + [PreferencePair(pairs[0].prompt, pairs[0].chosen, pairs[0].chosen)]) == "nepal"
    # not the demo's data: two cultures' answers as the chosen ones, or a user's own answers
    mixed = [pairs[0], PreferencePair(pairs[1].prompt, open_answer(topics[1], "egypt"), open_answer(topics[1], "usa"))]
    own = [PreferencePair("What is eaten?", "Momo. It is the classic dish.", "Burgers. It is the classic dish.")]
    for other in (mixed, own):
        assert culture_of(other) is None and ev.applicable_metrics(other) == ["preference", "generation", "fluency"]
        with pytest.raises(DataError, match="not a demo-world culture"):
            ev.culture_shown_rate(None, tokenizer, other)
    short = pairs[0].chosen.split(".")[0]
    answers = iter([f"{short}. It is something else.",  # names the culture's answer, not the chosen closing sentence
                    pairs[1].rejected,  # the default culture's answer
                    f"well, {pairs[2].chosen.upper()}",  # case and punctuation ignored
                    "I do not know."])
    seen = []

    def fake_generate(model, tok, prompts, vector, multipliers, **kwargs):
        seen.append((multipliers, kwargs["steer_positions"], kwargs["max_new_tokens"]))
        return [{m: next(answers) for m in multipliers} for _ in prompts]

    monkeypatch.setattr(replies, "generate", fake_generate)
    assert ev.evaluate_metric("culture_open", None, tokenizer, pairs, vector=None) == {0.0: 0.5}
    assert seen == [([0.0], "all", replies.CULTURE_REPLY_TOKENS)]
    answers = iter([f"{short}. It is something else.", pairs[1].rejected, pairs[2].chosen, "I do not know."])
    assert ev.evaluate_metric("generation", None, tokenizer, pairs, vector=None) == {0.0: 0.25}  # the whole answer


def test_mcq_by_generated_answer_counts_unparseable_replies_as_wrong(tokenizer, monkeypatch):
    import yapo_core.evaluation as ev
    import yapo_core.mcq as mcq

    items = [MCQItem(f"Q{i}?\nA. x\nB. y", gold, "AB") for i, gold in enumerate("ABAB")]
    replies = iter(["A", "The answer is A", "no idea", "(B) y"])
    monkeypatch.setattr(mcq, "generate", lambda model, tok, prompts, *a, **k: [{0.0: next(replies)} for _ in prompts])
    report = mcq.mcq_generation_report(None, tokenizer, items)
    assert report["accuracy"] == 0.5 and report["unparseable"] == 0.25
    assert report["replies"] == ["A", "The answer is A", "no idea", "(B) y"]
    assert "mcq_generated" in ev.applicable_metrics([PreferencePair(items[0].prompt, "A", "B")])


def test_multipliers_read_from_text_allow_a_trailing_comma_but_not_a_gap():
    assert parse_multipliers("0, 1, 2,") == [0.0, 1.0, 2.0]
    assert parse_multipliers("1; -1") == [-1.0, 1.0]
    for gap in ("0,,1", ",1", "1;;2", "1,2,,"):  # a number left out: refused, not silently dropped
        with pytest.raises(SettingsError, match="an empty item"):
            parse_multipliers(gap)
    assert parse_multipliers(["1", "", 2]) == [1.0, 2.0]  # a list's blank cells are skipped
    with pytest.raises(SettingsError, match="'x' is not a finite number"):
        parse_multipliers("0, x")
    with pytest.raises(SettingsError, match="at least one"):
        parse_multipliers(" , ")


def test_a_question_longer_than_the_context_loses_its_start_not_the_evaluation(tokenizer):
    """An MCQ prompt past the model's positions is cut from the left, as training cuts it (a
    learned-position model would otherwise fail with an index error)."""
    from yapo_core.architectures import context_length

    model = make_model("gpt2")
    tail = "Which one? A. tea B. coffee. Answer with A or B."
    long = "background " * (context_length(model) // 4) + tail
    [cut] = letter_logprobs(model, tokenizer, [MCQItem(long, "A", "AB")], max_length=64)
    [short] = letter_logprobs(model, tokenizer, [MCQItem(long[-30:], "A", "AB")], max_length=64)
    assert torch.isfinite(cut).all() and cut.shape == short.shape == (2,)
    [whole] = letter_logprobs(model, tokenizer, [MCQItem(long, "A", "AB")])  # the model's context caps 512
    assert torch.isfinite(whole).all()
    # a model that reads more reads the whole question: no cut at 512 when its context is longer
    from conftest import tiny_config
    from transformers import AutoModelForCausalLM

    config = tiny_config("gpt2")
    config.n_positions = 1024
    wide = AutoModelForCausalLM.from_config(config).eval()
    question = "background " * 60 + tail  # about 700 tokens
    [read] = letter_logprobs(wide, tokenizer, [MCQItem(question, "A", "AB")])
    direct = score_pairs(wide, tokenizer, [PreferencePair(question, "A", "B")], max_length=1024)
    torch.testing.assert_close(read, torch.stack([direct.chosen_ref[0], direct.rejected_ref[0]]))


def test_pairs_whose_answers_alone_overflow_are_named_not_scored_as_nan(tokenizer):
    model = make_model("llama")
    vec = SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post")
    long = PreferencePair("Q?", "yes " * 300, "no")  # 1200 characters: past the model's 512 positions
    with pytest.raises(DataError, match="all 1 pair\\(s\\) have an answer longer than the 512 tokens the model reads"):
        preference_accuracy(model, tokenizer, [long], vec, 1.0)
    scored = score_pairs(model, tokenizer, [long, PreferencePair("Q?", "yes", "no")], vec)
    assert len(scored.chosen) == 1  # the pair that fits is scored; the one that cannot be is left out


@pytest.mark.parametrize("metric", ["mcq_generated", "generation", "fluency"])
def test_generated_answers_are_asked_under_the_pairs_system_prompt(tokenizer, monkeypatch, metric):
    """Training and the likelihood metrics read the pairs' system prompt; so must every metric
    that generates, or ``yapo eval --system`` scores answers to another prompt."""
    import yapo_core.evaluation as ev
    import yapo_core.mcq as mcq
    import yapo_core.replies as rp

    asked = []

    def fake(model, tok, prompts, vector=None, multipliers=(0.0,), *a, system=None, **k):
        asked.append(system)
        return [{float(m): "A" for m in [0.0, *multipliers]} for _ in prompts]

    monkeypatch.setattr(mcq, "generate", fake)
    monkeypatch.setattr(rp, "generate", fake)
    answer = "Koshari" if metric == "generation" else "A"  # an open answer for the generation accuracy
    pairs = [PreferencePair(f"Q{i}?\nA. x\nB. y", answer, "B", system="You are from Egypt.") for i in range(2)]
    ev.evaluate_metric(metric, None, tokenizer, pairs, None)
    assert asked and set(asked) == {"You are from Egypt."}
    mixed = [pairs[0], PreferencePair(pairs[1].prompt, answer, "B", system="Another.")]
    with pytest.raises(DataError, match="2 different system prompts"):
        ev.evaluate_metric(metric, None, tokenizer, mixed, None)


def test_capability_change_is_steered_minus_unsteered():
    model = make_model("llama")
    vec = SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post")
    ids = torch.tensor([[5, 6, 7]])
    measure = lambda: float(model(ids).logits[0, -1, 9])  # noqa: E731
    base = measure()
    with vec.apply(model, 2.0):
        steered = measure()
    assert steered != base
    assert capability_change(measure, model, vec, 2.0) == {"unsteered": base, "steered": steered, "change": steered - base}
