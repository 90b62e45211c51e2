"""Multiple-choice options in prompts and answers: which letters a prompt lists, which letter an
answer gives, and multiple-choice pairs set against every wrong option (``mcq_rejected``)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable, Iterable, Iterator, Protocol, TypeVar

from .errors import DataError


class Pair(Protocol):
    """What these functions read of a pair: :class:`~.data.PreferencePair`, or another dataclass with
    these fields (:func:`against_every_option` writes new pairs with :func:`dataclasses.replace`)."""

    prompt: str
    chosen: str
    rejected: str


P = TypeVar("P", bound=Pair)

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


def _option_lines(prompt: str) -> dict[str, str]:
    """The prompt's option lines by letter (``{"A": "A. Koshari", ...}``), for the letters
    :func:`option_letters` reads; empty when it reads none."""
    letters = option_letters(prompt, default="")
    lines: dict[str, str] = {}
    for line in prompt.splitlines():
        match = _OPTION_LINE.match(line)
        if match and match.group(1) in letters and match.group(1) not in lines:
            lines[match.group(1)] = line.strip()
    return lines if len(lines) == len(letters) else {}


def option_texts(prompt: str) -> dict[str, str]:
    """The texts of the prompt's options by letter (``{"A": "Koshari", ...}``); empty when it lists none."""
    return {letter: _OPTION_LINE.sub("", line, count=1).strip() for letter, line in _option_lines(prompt).items()}


_BARE_LETTER = re.compile(r"^\s*\(?([A-Z])\)?\.?\s*$")
_MARKED_OPENING = re.compile(r"^\W*\(?([A-Z])(?:\)|[.:]|\s*$|\s*\n)")  # "B", "(B)", "B.", "B) text", "C. Koshari"
_STATED_GOLD = re.compile(r"\b(?i:answer|option|choice)\s*(?i:is)?:?\s*\(?([A-Z])\)?(?:\W|$)")  # the letter in capitals
# in a reply, also a small letter where no word follows it ("option c", "the answer is (b)"; not "the answer is a dish")
_STATED_LETTER = re.compile(r"\b(?i:answer|option|choice)\s*(?i:is)?:?\s*"
                            r"(?:\(([A-Za-z])\)|([A-Z])(?=\W|$)|([a-z])(?=[.:),;!?]|\s*$))")
_OPENING_WORD = re.compile(r"^\W*([A-Z])\b")  # a dataset's "B owls", "A owls"
_OPENING_NOT_A_WORD = re.compile(r"^\W*(?![AI](?:\s+[a-z]|['’]\w))([A-Z])\b")  # in a reply: not "A bowl", "I think", "I'm"
_EMPHASIS = re.compile(r"\*+|`+|(?<!\w)_+|_+(?!\w)")  # markdown's bold, italics and code marks


def letter_readings(text: str, reply: bool = False) -> Iterator[tuple[str, bool]]:
    """Every option letter ``text`` gives, the strongest reading first, with whether the text opens
    with it: a letter that opens the text as a mark (``"B"``, ``"(B)"``, ``"B) text"``, ``"C.
    Koshari"``); a letter stated after "answer", "option" or "choice" (``"Koshari, option C."``,
    ``"The answer is (c)"``, ``"Answer: B"``), first to last; a capital letter that opens the text as
    a word (a dataset's ``"B owls"``, ``"A owls"``; in a generated ``reply``, not the English words
    of ``"A bowl of rice"`` or ``"I think"``). Markdown's emphasis is read through (``"The answer is
    **B**."``)."""
    plain = _EMPHASIS.sub("", text).strip()
    match = _MARKED_OPENING.match(plain)
    if match:
        yield match.group(1), True
    for match in _STATED_LETTER.finditer(plain):
        yield next(g for g in match.groups() if g).upper(), False
    match = (_OPENING_NOT_A_WORD if reply else _OPENING_WORD).match(plain)
    if match:
        yield match.group(1), True


def answer_letter(answer: str) -> tuple[str, bool] | None:
    """The option letter a chosen answer gives, and whether the answer opens with it: the strongest
    of :func:`letter_readings` (``"B"``, ``"C. Koshari"``, ``"Koshari, option C."``, ``"B owls"``,
    and, with nothing else, ``"A bowl of rice"`` as A); None when there is none."""
    return next(letter_readings(answer), None)


def chosen_letter(pair: Pair, stated: bool = False) -> str | None:
    """The option letter ``pair``'s chosen answer gives, when its prompt lists two or more lettered
    options and the answer opens with one of their letters (``"H"``, ``"C. Koshari"``) or, with
    ``stated``, states it after its text (``"Koshari, option C."``); None otherwise."""
    found = answer_letter(pair.chosen)
    options = option_letters(pair.prompt, default="")
    return found[0] if found and (found[1] or stated) and len(options) >= 2 and found[0] in options else None


def answers_with_letter(pair: Pair) -> bool:
    """The pair's prompt lists lettered options and its chosen answer opens with one of their
    letters (``"H"``, ``"(B)"``, ``"C. Koshari"``), rather than giving text first."""
    found = answer_letter(pair.chosen)
    return bool(found and found[1] and found[0] in option_letters(pair.prompt, default=""))


def _restated(answer: str, texts: dict[str, str]) -> tuple[str, Callable[[str], str]] | None:
    """For an answer that opens with an option's text and then states that option's letter
    ("Koshari, option C."): the letter, and a function that writes the same answer for another
    letter ("Tea, option A."); None for any other answer."""
    match = _STATED_GOLD.search(answer)
    letter = match.group(1) if match else None
    if letter not in texts or not texts[letter] or not answer.startswith(texts[letter]):
        return None
    head, tail = len(texts[letter]), answer[match.end(1):]
    return letter, lambda other: texts[other] + answer[head:match.start(1)] + other + tail


def is_letter_answer(text: str) -> bool:
    """``"B"``, ``"(B)"``, ``"B."``: an answer that is an option letter and nothing else."""
    return bool(_BARE_LETTER.match(text))


def plain_text(text: str) -> str:
    """``text`` lower-cased, with its punctuation and runs of whitespace made one space and no space
    at either end: how a reply and an expected answer are compared (``"The Feast!"`` -> ``"the feast"``)."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


MCQ_REJECTED = ("given", "every_option")


def against_every_option(pairs: Iterable[P]) -> list[P]:
    """Multiple-choice pairs become one pair per wrong option; other pairs stay as they are.

    A pair counts as multiple-choice when its chosen and rejected answers are bare letters
    (``"H"``, ``"(B)"``) and its prompt lists lettered options (:func:`option_letters`), when
    both answers repeat one of those option lines whole (``"C. Koshari"``; the new rejected
    answers are the other lines), or when both give an option's text and then its letter in one
    form (``"Koshari, option C."``; the new rejected answers are the other options in that form). The
    preference objective compares only the chosen answer with the rejected one, so a vector
    trained against the model's default answer alone can make the chosen letter beat the default
    while a third option wins (measured on the demo world; see docs/results.md). Against every option,
    the chosen letter has to beat them all. The given pair stays as it is; the new rejected
    answers take the chosen answer's format (``"(B)"`` → ``"(C)"``). Letter answers whose prompt
    lists no readable options are an error (rather than silently trained against the given answer
    only).
    """
    out: list[P] = []
    unreadable = 0
    for p in pairs:
        lines = _option_lines(p.prompt)
        if p.chosen.strip() in lines.values() and p.rejected.strip() in lines.values():
            # answers that repeat an option's whole line ("C. Koshari"): against every other line
            out += [p if line == p.rejected.strip() else replace(p, rejected=line)
                    for line in lines.values() if line != p.chosen.strip()]
            continue
        texts = {letter: line[_OPTION_LINE.match(line).end():] for letter, line in lines.items()}
        chosen_form, rejected_form = _restated(p.chosen, texts), _restated(p.rejected, texts)
        if chosen_form and rejected_form and chosen_form[1](rejected_form[0]) == p.rejected:
            # the option's text, then its letter ("Koshari, option C."): every other option, written alike
            gold, write = chosen_form
            out += [replace(p, rejected=write(letter)) for letter in lines if letter != gold]
            continue
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


def sets_against_other_options(pair: Pair) -> bool:
    """Whether :func:`against_every_option` sets ``pair`` against other answers than its own."""
    try:
        return any(p.rejected != pair.rejected for p in against_every_option([pair]))
    except DataError:  # letter answers whose options cannot be read
        return False
