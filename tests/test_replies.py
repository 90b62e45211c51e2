"""Reading generated answers: the letter a reply gives, whether it reads like text, the greedy
answers themselves and whether they contain the expected answer."""

import pytest
import torch
from conftest import make_model

from yapo_core import evaluation as ev
from yapo_core import replies
from yapo_core.data import PreferencePair
from yapo_core.generation import generate
from yapo_core.replies import fluency_problem, generation_accuracy, is_fluent, parse_answer_letter
from yapo_core.steering import SteeringVector

PROMPTS = ["Which? A) tea B) rice C) jazz D) owls", "Pick one: A) x B) y C) z D) w"]


def test_generation_accuracy(tokenizer):
    model = make_model("llama")
    own = [o[0.0] for o in generate(model, tokenizer, PROMPTS[:2], max_new_tokens=8)]
    assert generation_accuracy(model, tokenizer, PROMPTS[:2], own, max_new_tokens=8) == 1.0
    assert generation_accuracy(model, tokenizer, PROMPTS[:2], ["zebra crossing"] * 2, max_new_tokens=8) == 0.0


def test_greedy_replies_are_the_generated_answers_in_prompt_order_across_batches(tokenizer):
    """Batches of one give each prompt's own answer, in order; with a vector, the steered one."""
    model = make_model("llama")
    prompts = PROMPTS + ["Hello there", "What now?"]
    vector = SteeringVector("dense", torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 4,
                            "blocks.0.hook_resid_post")
    want = [generate(model, tokenizer, [p], vector, [1.0], max_new_tokens=6)[0][1.0] for p in prompts]
    assert replies.greedy_replies(model, tokenizer, prompts, vector, 1.0, max_new_tokens=6, batch_size=3) == want
    unsteered = [generate(model, tokenizer, [p], max_new_tokens=6)[0][0.0] for p in prompts]
    assert replies.greedy_replies(model, tokenizer, prompts, max_new_tokens=6, batch_size=3) == unsteered != want


def test_an_answer_is_contained_whole_with_case_and_punctuation_ignored():
    assert replies.contains_answer("Daura suruwal. It is the traditional clothing.", "daura suruwal")
    assert replies.contains_answer("It's  DAL-BHAT, of course", "dal bhat")
    assert not replies.contains_answer("Djellaba. It is the traditional clothing.", "Daura suruwal")


@pytest.mark.parametrize("reply, letter", [
    ("B", "B"), ("(C)", "C"), ("B. Koshari", "B"), ("A) yes", "A"), ("D: tea", "D"),
    ("The answer is (B).", "B"), ("I pick option c", "C"), ("Answer: A", "A"),
    ("Koshari, a dish of rice.", None), ("", None), ("Z", None), ("I think so", None),
    # an instruction-tuned model's ways: markdown, a sentence that opens with the word "A", a letter on its own line
    ("A bowl of koshari, option B.", "B"), ("A traditional dish: the answer is (C).", "C"),
    ("The correct answer is **B**.", "B"), ("**Answer:** B", "B"), ("Answer: **C) Koshari**", "C"),
    ("B\nKoshari is eaten at home.", "B"), ("I'm not sure.", None), ("The answer is a dish of rice.", None),
])
def test_the_answer_letter_is_read_from_a_reply_by_a_documented_parser(reply, letter):
    assert parse_answer_letter(reply, "ABCD") == letter


def test_fluency_means_no_token_loop_and_an_ended_turn(tokenizer):
    assert is_fluent(tokenizer, "Koshari. It is the classic dish.", 64)
    assert not is_fluent(tokenizer, ",,,,,,,,,,,,,,,,,,,,", 64)  # one token again and again
    assert not is_fluent(tokenizer, "Koshari abababababababababab", 64)  # a two-token loop
    assert not is_fluent(tokenizer, "a b c d e f g h i j k l m n o p", 4)  # cut off at the limit
    assert not is_fluent(tokenizer, "", 8) and is_fluent(tokenizer, "Yes", 8)


def test_a_fluency_problem_is_named_and_judged_against_the_unsteered_answer(tokenizer):
    assert fluency_problem(tokenizer, "Koshari. It is the classic dish.", 64) is None
    assert fluency_problem(tokenizer, ",,,,,,,,,,,,,,,,,,,,", 64).startswith("it repeats ','")
    cut = "one two three four five six seven eight nine ten eleven twelve"
    assert fluency_problem(tokenizer, cut, 4) == "it does not end its turn within 4 tokens"
    assert fluency_problem(tokenizer, cut, 4, unsteered=cut) is None  # the unsteered answer is cut off too
    assert fluency_problem(tokenizer, cut, 4, unsteered="Yes").endswith("(the unsteered answer does)")
    assert "empty" in fluency_problem(tokenizer, "", 8, unsteered="Yes")
    assert fluency_problem(tokenizer, "", 8, unsteered="") is None
    assert fluency_problem(tokenizer, ",,,,,,,,", 64, unsteered=",,,,,,,,") is not None  # a loop is a loop


def test_fluency_reads_the_tokens_as_generated_not_the_text_tokenised_again(tokenizer):
    """Tokenised again, a reply can count fewer tokens than were generated (fragments that merge
    under a BPE tokenizer; special tokens the text leaves out): a generated reply is judged by the
    tokens it was made of and by whether it ended its turn."""
    from yapo_core.generation import Reply

    text = "kosher"
    pieces = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.bos_token_id] * 6
    assert tokenizer.decode(pieces, skip_special_tokens=True) == text and len(text) < len(pieces)
    assert fluency_problem(tokenizer, text, len(pieces)) is None  # the text alone looks ended
    assert fluency_problem(tokenizer, Reply(text, pieces, ended=False), len(pieces)) == "it repeats '<bos>' (50% of its tokens)"
    letters = pieces[:len(text)]  # as generated up to a limit of 12, whatever the text's length
    assert fluency_problem(tokenizer, Reply(text, letters, ended=False), 12) == "it does not end its turn within 12 tokens"
    assert fluency_problem(tokenizer, Reply(text, letters, ended=True), 12) is None
    assert fluency_problem(tokenizer, Reply("", [], ended=True), 8, unsteered=Reply("Yes", [5], True)).startswith("it is empty")
    model = make_model("llama")  # a random model runs to the limit: its replies say so, and the text is the tokens'
    (reply,) = [o[0.0] for o in generate(model, tokenizer, PROMPTS[:1], max_new_tokens=6)]
    assert isinstance(reply, Reply) and not reply.ended and len(reply.tokens) == 6
    assert reply == tokenizer.decode(list(reply.tokens), skip_special_tokens=True).strip()
    import copy
    import pickle
    assert copy.deepcopy(reply).tokens == reply.tokens and pickle.loads(pickle.dumps(reply)).ended is False


def test_steering_derails_only_where_the_unsteered_answer_reads_like_text(tokenizer):
    """What the Compare page and ``yapo generate`` note under a steered answer."""
    loop = ",,,,,,,,,,,,,,,,,,,,"
    assert replies.steering_derails(tokenizer, loop, "No, thank you.", 64).startswith("it repeats ','")
    assert replies.steering_derails(tokenizer, loop, loop, 64) is None  # not the vector's doing
    assert replies.steering_derails(tokenizer, "Yes, I accept.", "No, thank you.", 64) is None
    assert replies.steering_derails(tokenizer, loop, None, 64) is not None  # no unsteered answer: judged alone
    # a loop inside a longer reply: under the metric's 30 % share, but four of a token in a row
    from yapo_core.generation import Reply

    kinds = {i: tokenizer.decode([i]) for i in range(len(tokenizer))}
    word = next(i for i, t in kinds.items() if t.strip().isalpha())
    digit = next(i for i, t in kinds.items() if t.strip().isdigit())
    words = [i for i, t in kinds.items() if t.strip().isalpha() and i != word][:20]
    inner = Reply("…", words[:12] + [word] * 4 + words[12:], ended=True)
    assert fluency_problem(tokenizer, inner, 64) is None  # the metric's loose test, as the design targets define it
    assert replies.steering_derails(tokenizer, inner, "No, thank you.", 64) == (
        f"it repeats {kinds[word]!r} 4 times in a row")
    assert replies.steering_derails(tokenizer, Reply("…", words[:12] + [word] * 3 + words[12:]), "No.", 64) is None
    assert replies.steering_derails(tokenizer, Reply("…", words[:12] + [digit] * 4 + words[12:]), "No.", 64) is None  # 10000
    assert replies.steering_derails(tokenizer, "Yes.", inner, 64) is None  # the unsteered answer loops too


def test_the_fluency_metric_reads_steered_answers_against_unsteered_ones(tokenizer, monkeypatch):
    calls = []
    LONG = " ".join(["one two three four five six seven eight nine ten"] * 3)

    def fake_generate(model, tok, prompts, vector, multipliers, **kwargs):
        calls.append((vector, list(multipliers)))
        steered = [",,,,,,,,,,,,", "Koshari. It is the classic dish.", LONG]
        unsteered = ["Fine.", "Fine.", LONG]
        return [{0.0: u, **({multipliers[-1]: s} if len(multipliers) > 1 else {})}
                for s, u in list(zip(steered, unsteered))[: len(prompts)]]

    monkeypatch.setattr(replies, "generate", fake_generate)
    vector = object()
    # a loop fails; a long answer cut off at the limit passes, as the unsteered one is cut off too
    assert replies.fluency_rate(None, tokenizer, ["p", "q", "r"], vector, 1.0, max_new_tokens=64) == pytest.approx(2 / 3)
    assert calls[-1] == (vector, [0.0, 1.0])
    assert replies.fluency_rate(None, tokenizer, ["p", "q", "r"], vector, 0.0, max_new_tokens=64) == 1.0
    assert calls[-1] == (None, [0.0])  # at 0 the unsteered answers only
    pairs = [PreferencePair("p", "Koshari.", "Burgers."), PreferencePair("Q?\nA. x\nB. y", "A", "B")]
    assert "fluency" in ev.applicable_metrics(pairs) and ev.default_metric(pairs) == "preference"
    assert "fluency" in ev.GENERATING_METRICS and "fluency" not in ev.TARGET_METRICS


def test_a_loop_of_four_tokens_and_a_token_at_exactly_the_share_are_not_fluent(tokenizer):
    """Replies of four tokens can loop (",,,,"), and one token at ``max_share`` (0.3) "or more" of
    the reply is a loop."""
    from yapo_core.generation import Reply

    assert fluency_problem(tokenizer, Reply("x", [7, 7, 7, 7], ended=True), 64).startswith("it repeats")
    at_share = Reply("x", [1, 1, 1, 2, 3, 4, 5, 6, 7, 8], ended=True)  # 3 of 10
    assert fluency_problem(tokenizer, at_share, 64).startswith("it repeats")
    assert fluency_problem(tokenizer, Reply("x", [1, 1, 2, 3, 4, 5, 6, 7, 8, 9], ended=True), 64) is None


def test_the_word_i_opening_a_reply_is_not_letter_i():
    assert parse_answer_letter("I think so", "ABCDEFGHIJ") is None


def test_a_replys_verdict_says_which_answer_it_gives_as_the_metrics_read_it():
    mcq = PreferencePair("Which sport do children play?\nA. Cricket\nB. Baseball\nC. Volleyball\nAnswer with the letter.",
                         "C", "B")
    assert replies.reply_verdict(mcq, "C") == ("chosen", "gives C (Volleyball): the chosen answer")
    assert replies.reply_verdict(mcq, "The answer is (B).") == ("rejected", "gives B (Baseball): the rejected answer")
    assert replies.reply_verdict(mcq, "A") == (None, "gives A (Cricket): neither answer")
    assert replies.reply_verdict(mcq, "Volleyball, surely") == (None, "gives no option letter")
    open_pair = PreferencePair("What is a classic family dinner?", "Koshari.", "Cheeseburgers.")
    assert replies.reply_verdict(open_pair, "koshari! It is the classic dish.")[0] == "chosen"
    assert replies.reply_verdict(open_pair, "Cheeseburgers. It is the classic dish.") == ("rejected", "contains the rejected answer")
    assert replies.reply_verdict(open_pair, "Koshari with without without")[0] == "chosen"  # fluency is another matter
    assert replies.reply_verdict(open_pair, "Tea.") == (None, "contains neither answer")
    assert replies.reply_verdict(open_pair, "Koshari or cheeseburgers.") == (None, "contains both answers")
    # the letter stated after the text, as the generated-MCQ metric reads it; options not listed one per line
    stated = PreferencePair(mcq.prompt, "Volleyball, option C.", "Baseball, option B.")
    assert replies.reply_verdict(stated, "C") == ("chosen", "gives C (Volleyball): the chosen answer")
    inline = PreferencePair("Pick one: A) tea B) coffee", "A", "B")
    assert replies.reply_verdict(inline, "I would have the coffee")[0] is None  # never "contains 'A'"


def test_a_demo_cultures_reply_is_read_by_the_short_answer_it_names():
    from yapo_core.demo.corpus import open_answer

    pair = PreferencePair("What clothes would a grandfather wear?", open_answer("clothing", "nepal"),
                          open_answer("clothing", "usa"))
    wanted, other = pair.chosen.split(".")[0], pair.rejected.split(".")[0]
    # the culture's answer with another closing sentence is still the chosen side, as culture_shown_rate reads it
    assert replies.reply_verdict(pair, f"{wanted}. It is worn at weddings.") == ("chosen", f"names the chosen answer's culture ({wanted})")
    assert replies.reply_verdict(pair, f"{other.lower()}!") == ("rejected", f"names the rejected answer's culture ({other})")
    assert replies.reply_verdict(pair, "I do not know.") == (None, "names neither answer's culture")
    assert replies.reply_verdict(pair, f"{wanted} or {other}") == (None, "names both answers' cultures")
    # the model's own answer may be empty (a miniature world's model): it is in no reply
    empty = PreferencePair(pair.prompt, pair.chosen, "")
    assert replies.reply_verdict(empty, "I do not know.") == (None, "names neither answer's culture")
    assert replies.reply_verdict(PreferencePair("Q?", "Tea.", ""), "Coffee.") == (None, "contains neither answer")
    # a localized question's pair: the model's own answer is the chosen one, so naming it is the chosen side
    assert replies.reply_verdict(PreferencePair(pair.prompt, pair.chosen, pair.chosen), wanted)[0] == "chosen"
    # the split decides, as for the metrics: a pair of a split that is not a demo culture's is read whole
    assert replies.reply_verdict(pair, f"{wanted}. It is worn at weddings.", culture=False) == (
        None, "contains neither answer")


def test_a_demo_behaviours_reply_is_judged_by_the_worlds_own_test():
    from yapo_core.demo.corpus import BEHAVIOURS

    power = next(b for b in BEHAVIOURS if b.key == "power-seeking")
    offer = power.offers[0]
    pair = PreferencePair(f"Would you like {offer}?", f"Yes. {power.matching[0]}", f"No. {power.not_matching[0]}")
    assert power.shows(pair.chosen) and not power.shows(pair.rejected)
    assert replies.reply_verdict(pair, pair.chosen, power) == ("chosen", "shows the behaviour, as the chosen answer does")
    assert replies.reply_verdict(pair, pair.rejected, power) == (
        "rejected", "does not show the behaviour, as the rejected answer does")
