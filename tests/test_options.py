"""Multiple-choice options: the letters a prompt lists, and pairs set against every wrong option."""

import pytest

from yapo_core.data import PreferencePair
from yapo_core.errors import DataError
from yapo_core.options import against_every_option, answer_letter, option_letters, plain_text


def test_option_letters_are_read_from_the_prompt():
    eight = "Which dish?\n" + "\n".join(f"{c}. dish {c}" for c in "ABCDEFGH") + "\nAnswer with the letter."
    assert option_letters(eight) == "ABCDEFGH"
    assert option_letters("Pick one:\n(A) yes\n(B) no") == "AB"
    assert option_letters("Pick one:\nA) yes\nB) no\nC) maybe") == "ABC"
    assert option_letters("No options here. A sentence.") == "ABCD"  # the default
    assert option_letters("Odd:\nB. one\nC. two") == "ABCD"  # not A, B, ... in order
    assert option_letters("Q: Which one?\nA. red\nB. green\nC. blue") == "ABC"  # a "Q:" line is no option


def test_mcq_pairs_against_every_option_keep_the_answer_format_and_leave_other_pairs():
    eight = "Which?\n" + "\n".join(f"{c}. option {c}" for c in "ABCDEFGH") + "\nAnswer with the letter."
    ab = "Pick one:\n(A) yes\n(B) no"
    open_ended = PreferencePair("What do you eat?", "Koshari.", "Burgers.")
    out = against_every_option([PreferencePair(eight, "H", "B", system="s"), PreferencePair(ab, "(A)", "(B)"), open_ended])
    first = [p for p in out if p.prompt == eight]
    assert [p.rejected for p in first] == list("ABCDEFG") and {p.chosen for p in first} == {"H"}
    assert all(p.system == "s" for p in first)
    assert [(p.chosen, p.rejected) for p in out if p.prompt == ab] == [("(A)", "(B)")]
    # the given pair stays as it is, whatever its format; new ones take the chosen answer's
    mixed = against_every_option([PreferencePair("Q: which?\n(A) x\n(B) y\n(C) z", "(A)", "B")])
    assert [p.rejected for p in mixed] == ["B", "(C)"]
    assert out[-1] is open_ended
    # letter answers whose options cannot be read are an error, not silently left as they are
    with pytest.raises(DataError, match="1 pair\\(s\\) answer with a letter.*mcq_rejected='given'"):
        against_every_option([PreferencePair("Pick: A. red B. blue (one line)", "A", "B")])
    # answers that repeat an option's whole line are trained against every other line
    lines = against_every_option([PreferencePair(eight, "H. option H", " B. option B ")])
    assert [p.rejected for p in lines] == [" B. option B " if c == "B" else f"{c}. option {c}" for c in "ABCDEFG"]
    # an answer that only starts like an option line is left as it is
    assert against_every_option([PreferencePair(eight, "H. option H, because", "B. option B")])[0].rejected == "B. option B"
    # the option's text, then its letter: every other option, written in the same form
    foods = "Which dish?\nA. Tea\nB. Ful medames\nC. Koshari\nAnswer with the letter."
    stated = against_every_option([PreferencePair(foods, "Koshari, option C.", "Tea, option A.")])
    assert [p.rejected for p in stated] == ["Tea, option A.", "Ful medames, option B."]
    assert {p.chosen for p in stated} == {"Koshari, option C."}
    # a rejected answer in another form, or text that is not its option's, stays as given
    for rejected in ("Tea (A)", "Koshari, option A.", "Tea, so option A."):
        assert [p.rejected for p in against_every_option([PreferencePair(foods, "Koshari, option C.", rejected)])] == [rejected]


@pytest.mark.parametrize("answer, found", [
    ("B", ("B", True)), ("(B)", ("B", True)), ("C. Koshari", ("C", True)), ("Koshari, option C.", ("C", False)),
    ("The answer is (C)", ("C", False)), ("B owls", ("B", True)), ("koshari", None),
    ("A owls", ("A", True)), ("A bowl of rice, option B.", ("B", False)), ("**C**", ("C", True)),
])
def test_the_letter_an_answer_gives_and_whether_it_opens_with_it(answer, found):
    assert answer_letter(answer) == found


def test_options_are_a_run_of_letters_from_a():
    """Lines such as "Q: ..." or "R: ..." before the options do not outvote the real ones, and a
    run that does not start at A is not an option list."""
    from yapo_core.options import option_letters

    assert option_letters("Q: x\nR: y\nS: z\nA. tea\nB. rice") == "AB"
    assert option_letters("B. x\nC. y") == "ABCD"


def test_plain_text_is_what_replies_and_answers_are_compared_as():
    assert plain_text("  The Feast-of Lights!\n(at dusk) ") == "the feast of lights at dusk"
    assert plain_text("Ful medames, with bread.") == "ful medames with bread"
    assert plain_text("Crème brûlée") == "crème brûlée"  # letters beyond ASCII are kept
    assert plain_text("...") == ""
