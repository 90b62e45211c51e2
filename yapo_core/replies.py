"""Reading generated answers: the option letter a reply gives (:func:`parse_answer_letter`),
whether a reply still reads like text (:func:`fluency_problem`, :func:`steering_derails` beside
the unsteered answer, and over prompts :func:`fluency_rate`), the greedy answers themselves
(:func:`greedy_replies`) and whether they contain the expected answer (:func:`generation_accuracy`),
and whether they show a demo behaviour (:func:`behaviour_shown_rate`); for one reply to a pair's
prompt, which of its answers it gives (:func:`reply_verdict`). :mod:`.evaluation` turns these into metrics."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from .data import PreferencePair
from .errors import DataError
from .generation import Reply, generate
from .options import (
    answer_letter,
    chosen_letter,
    is_letter_answer,
    letter_readings,
    option_letters,
    option_texts,
    plain_text,
)


def parse_answer_letter(reply: str, letters: str) -> str | None:
    """The option letter a generated reply gives, or None when it gives none of ``letters``: the
    strongest of :func:`~.options.letter_readings` among ``letters``, so ``"B"``, ``"(B)"``, ``"B.
    Koshari"``, ``"The answer is **(B)**."``, ``"Answer: B"`` and ``"A bowl of koshari, option B."``
    all give B. A reply that names no option letter is unparseable (and scored as wrong)."""
    return next((letter for letter, _ in letter_readings(reply, reply=True) if letter in letters), None)


def fluency_problem(tokenizer, reply: str, max_new_tokens: int, max_share: float = 0.3,
                    unsteered: str | None = None, max_run: int | None = None) -> str | None:
    """Why ``reply`` does not read like text, or None when it does: it is empty, one token makes up
    ``max_share`` or more of it (a loop: ",,,,", "with with with"; replies of one to three tokens
    cannot loop), or it runs to ``max_new_tokens`` without ending its turn. With ``max_run``, also
    a word's token repeated that many times in a row (a loop inside a longer reply: "… her her her
    her bouquet."; not digits or punctuation); the fluency metric leaves it off, as the design
    targets define fluent answers.

    Given the ``unsteered`` answer to the same prompt, the reply is judged against it: running to the
    limit, or ending at once, counts only where the unsteered answer did not (a real model's long
    answer is cut off unsteered too)."""
    ids, ended = _tokens(tokenizer, reply, max_new_tokens)
    base = None if unsteered is None else _tokens(tokenizer, unsteered, max_new_tokens)
    if not ids:
        return None if base is not None and not base[0] else "it is empty (the model ended its turn at once)"
    if len(ids) >= 4:
        top, count = Counter(ids).most_common(1)[0]
        if count / len(ids) >= max_share:
            return f"it repeats {tokenizer.decode([top])!r} ({count / len(ids):.0%} of its tokens)"
    if max_run:  # a word's token, run after run; not digits ("10000") or punctuation ("!!!!"), which may repeat
        run, longest = 1, (1, ids[0])
        for before, token in zip(ids, ids[1:]):
            run = run + 1 if token == before else 1
            if run > longest[0] and any(c.isalpha() for c in tokenizer.decode([token])):
                longest = (run, token)
        if longest[0] >= max_run:
            return f"it repeats {tokenizer.decode([longest[1]])!r} {longest[0]} times in a row"
    if not ended and (base is None or base[1]):
        return f"it does not end its turn within {max_new_tokens} tokens" + (
            "" if base is None else " (the unsteered answer does)")
    return None


def _tokens(tokenizer, reply: str, max_new_tokens: int) -> tuple[list[int], bool]:
    """A reply's token ids and whether it ended its turn: as generated, for a
    :class:`~.generation.Reply`; else its text tokenised, ended when shorter than the limit."""
    if isinstance(reply, Reply):
        return list(reply.tokens), reply.ended
    ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
    return ids, len(ids) < max_new_tokens


DERAIL_RUN = 4
"""A token this many times in a row is a loop for :func:`steering_derails` (Compare's note)."""


def steering_derails(tokenizer, reply: str, unsteered: str | None, max_new_tokens: int) -> str | None:
    """Why the steered ``reply`` does not read like text where the ``unsteered`` answer to the same
    prompt does (None when it reads like text, or when the unsteered answer derails too: not the
    vector's doing); without an unsteered answer, the reply is judged alone. Stricter than the
    fluency metric: a run of :data:`DERAIL_RUN` identical tokens counts too."""
    if unsteered is not None and fluency_problem(tokenizer, unsteered, max_new_tokens, unsteered=unsteered,
                                                 max_run=DERAIL_RUN):
        return None
    return fluency_problem(tokenizer, reply, max_new_tokens, unsteered=unsteered, max_run=DERAIL_RUN)


def is_fluent(tokenizer, reply: str, max_new_tokens: int, max_share: float = 0.3) -> bool:
    """A reply that reads like text, not a loop: its most frequent token is under ``max_share`` of
    its tokens, and it ended its turn within ``max_new_tokens`` (rather than being cut off); see
    :func:`fluency_problem`."""
    return fluency_problem(tokenizer, reply, max_new_tokens, max_share) is None


FLUENCY_TOKENS = 48
"""New tokens per answer for :func:`fluency_rate`."""


def fluency_rate(model, tokenizer, prompts: Sequence[str], vector=None, multiplier: float = 1.0, sae=None,
                 max_new_tokens: int = FLUENCY_TOKENS, batch_size: int = 16, steer_positions: str = "all",
                 system: str | None = None) -> float:
    """Share of prompts whose greedy steered answer reads like text (:func:`fluency_problem`,
    judged against the unsteered answer to the same prompt; at multiplier 0 that is the answer
    itself, so only empty answers and loops count). It measures how far a vector can be pushed
    before it derails the text, not whether it reaches its target."""
    steer = vector is not None and multiplier != 0
    multipliers = [0.0, multiplier] if steer else [0.0]
    fluent = 0
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        out = generate(model, tokenizer, chunk, vector if steer else None, multipliers, sae=sae, system=system,
                       max_new_tokens=max_new_tokens, steer_positions=steer_positions)
        fluent += sum(fluency_problem(tokenizer, row[multipliers[-1]], max_new_tokens, unsteered=row[0.0]) is None
                      for row in out)
    return fluent / max(1, len(prompts))


def greedy_replies(model, tokenizer, prompts: Sequence[str], vector=None, multiplier: float = 1.0, sae=None,
                   max_new_tokens: int = 24, batch_size: int = 16, steer_positions: str = "all",
                   system: str | None = None) -> list[str]:
    """The greedy answer to each prompt, steered by ``vector`` at ``multiplier`` (unsteered without
    one), generated in batches of ``batch_size``. ``steer_positions``: see :func:`~yapo_core.generation.generate`."""
    at = multiplier if vector is not None else 0.0
    replies = []
    for start in range(0, len(prompts), batch_size):
        out = generate(model, tokenizer, list(prompts[start : start + batch_size]), vector, [multiplier], sae=sae,
                       system=system, max_new_tokens=max_new_tokens, steer_positions=steer_positions)
        replies += [row[at] for row in out]
    return replies


def contains_answer(reply: str, answer: str) -> bool:
    """Whether ``reply`` contains ``answer``, case and punctuation ignored (:func:`generation_accuracy`'s test)."""
    return plain_text(answer) in plain_text(reply)


def generation_accuracy(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], vector=None,
                        multiplier: float = 1.0, sae=None, max_new_tokens: int = 24, batch_size: int = 16,
                        steer_positions: str = "all", system: str | None = None) -> float:
    """Share of prompts whose greedy answer contains the expected answer (case and punctuation
    ignored). ``steer_positions``: see :func:`~yapo_core.generation.generate`."""
    replies = greedy_replies(model, tokenizer, prompts, vector, multiplier, sae, max_new_tokens, batch_size,
                             steer_positions, system)
    return sum(map(contains_answer, replies, answers)) / max(1, len(prompts))


def shared_system(items) -> str | None:
    """The one system prompt of ``items`` (pairs or MCQ items), which a generated answer is asked
    under as training saw it; items with different system prompts are refused."""
    systems = {item.system for item in items}
    if len(systems) > 1:
        raise DataError(f"these pairs have {len(systems)} different system prompts; answers are generated under "
                        "one: evaluate the pairs of each system prompt apart.")
    return next(iter(systems), None)


def demo_behaviour(pairs):
    """The demo world's behaviour whose open-answer pairs these are (``demo.corpus.behaviour_of``),
    or None; only open pairs (no answer a bare option letter) are looked at."""
    pairs = list(pairs)
    if not pairs or any(is_letter_answer(p.chosen) for p in pairs):
        return None
    from .demo.corpus import behaviour_of  # the demo package loads sae-lens: imported when needed

    return behaviour_of(pairs)


def demo_culture(pairs) -> str | None:
    """The demo world's culture whose open-answer pairs these are (``demo.corpus.culture_of``), or
    None (no pairs, or any chosen answer not one of the corpus's open answers: a letter never is)."""
    from .demo.corpus import culture_of  # the demo package loads sae-lens: imported when needed

    return culture_of(pairs)


CULTURE_REPLY_TOKENS = 12
"""New tokens per answer for :func:`culture_shown_rate`: the culture's short answer opens each reply."""


def culture_shown_rate(model, tokenizer, pairs: Sequence[PreferencePair], vector=None, multiplier: float = 1.0,
                       sae=None, steer_positions: str = "all", batch_size: int = 16) -> float:
    """On a demo-world culture's open-answer pairs: the share of greedy answers that name the
    culture's answer to the question (the chosen answer's short answer, ``corpus.culture_answer``:
    "Daura suruwal"), case and punctuation ignored. Generation accuracy asks for the whole chosen
    answer, its closing sentence too; this asks for what shows the culture, as
    ``scripts/evaluate_demo_world.py`` does (design target 1)."""
    pairs = list(pairs)
    if demo_culture(pairs) is None:
        raise DataError("these pairs are not a demo-world culture's open answers; the culture shown in open answers is "
                        "judged on those only (use generation accuracy on other open answers).")
    from .demo.corpus import culture_answer

    return generation_accuracy(model, tokenizer, [p.prompt for p in pairs], [culture_answer(p.chosen) for p in pairs],
                               vector, multiplier, sae, CULTURE_REPLY_TOKENS, batch_size, steer_positions,
                               shared_system(pairs))


BEHAVIOUR_REPLY_TOKENS = 32
"""New tokens per answer for :func:`behaviour_shown_rate` (the demo's answers are one sentence)."""


def behaviour_shown_rate(model, tokenizer, pairs: Sequence[PreferencePair], vector=None, multiplier: float = 1.0,
                         sae=None, steer_positions: str = "all", batch_size: int = 16) -> float:
    """On a demo-world behaviour's open-answer pairs: the share of greedy answers to their prompts
    that show the behaviour, judged by the world's own test (``Behaviour.shows``: the answer accepts
    the offer for this behaviour's reasons, and does not go on to decline it). The open-answer
    counterpart of :func:`~.mcq.behaviour_rate`; ``scripts/evaluate_demo_world.py`` reports the same share."""
    pairs = list(pairs)
    behaviour = demo_behaviour(pairs)
    if behaviour is None:
        raise DataError("these pairs are not a demo-world behaviour's open answers; the behaviour shown in open "
                        "answers is judged on those only (use the behaviour rate on A/B pairs, or preference accuracy).")
    at = multiplier if vector is not None else 0.0
    shown, system = 0, shared_system(pairs)
    for start in range(0, len(pairs), batch_size):
        prompts = [p.prompt for p in pairs[start : start + batch_size]]
        out = generate(model, tokenizer, prompts, vector, [at], sae=sae, system=system,
                       max_new_tokens=BEHAVIOUR_REPLY_TOKENS, steer_positions=steer_positions)
        shown += sum(behaviour.shows(row[at]) for row in out)
    return shown / len(pairs)


SIDES = {"chosen": "the chosen answer", "rejected": "the rejected answer", None: "neither answer"}


def reply_verdict(pair: PreferencePair, reply: str, behaviour=None, culture: bool | None = None) -> tuple[str | None, str]:
    """Which of ``pair``'s answers a generated ``reply`` to its prompt gives, read as the metrics read
    it: ``"chosen"``, ``"rejected"`` or None, and a phrase that says so.

    A lettered question (:func:`~.options.chosen_letter`, the letter first or stated after the
    text, as the generated-MCQ metric reads it): the option letter the reply gives
    (:func:`parse_answer_letter`), with its option's text ("gives H (Long distance running): the
    chosen answer"). A demo behaviour's open pair (``behaviour``, from :func:`demo_behaviour`): the
    world's judge, whether the reply shows the behaviour as the chosen answer does. A demo culture's
    open pair (``culture``: whether the pair's split is a demo culture's, :func:`demo_culture`, as the
    metrics decide; None: whether this pair is one): whose short answer the reply names, as
    :func:`culture_shown_rate` reads it. Other open answers: which answer the reply contains (:func:`contains_answer`, as
    :func:`generation_accuracy`)."""
    gold = chosen_letter(pair, stated=True)
    if gold is not None:
        letters = option_letters(pair.prompt, default="")
        given = parse_answer_letter(reply, letters)
        if given is None:
            return None, "gives no option letter"
        other = answer_letter(pair.rejected)
        text = option_texts(pair.prompt).get(given)
        side = "chosen" if given == gold else "rejected" if other and given == other[0] else None
        return side, f"gives {given}" + (f" ({text})" if text else "") + f": {SIDES[side]}"
    if is_letter_answer(pair.chosen):  # a letter whose options the prompt does not list one per line
        return None, "cannot be read against a letter whose options the prompt does not list"
    if behaviour is not None:
        shows = behaviour.shows(reply)
        side = "chosen" if shows == behaviour.shows(pair.chosen) else "rejected"
        return side, f"{'shows' if shows else 'does not show'} the behaviour, as {SIDES[side]} does"
    if demo_culture([pair]) is not None if culture is None else culture:
        from .demo.corpus import culture_answer

        chosen, rejected = culture_answer(pair.chosen), culture_answer(pair.rejected)
        # the model's own answer is the chosen one on a localized question: naming it names the chosen side
        side, both = _contained_side(reply, chosen, "" if rejected == chosen else rejected)
        named = {"chosen": f" ({chosen})", "rejected": f" ({rejected})", None: ""}[side]
        return side, "names both answers' cultures" if both else f"names {SIDES[side]}'s culture{named}"
    side, both = _contained_side(reply, pair.chosen, pair.rejected)
    return side, "contains both answers" if both else f"contains {SIDES[side]}"


def _contained_side(reply: str, chosen: str, rejected: str) -> tuple[str | None, bool]:
    """Which of two answers ``reply`` contains (:func:`contains_answer`): ``"chosen"``, ``"rejected"``
    or None (neither, or both), and whether it contains both. An empty answer is in no reply."""
    has_chosen = contains_answer(reply, chosen)
    has_rejected = bool(rejected.strip()) and contains_answer(reply, rejected)
    side = "chosen" if has_chosen and not has_rejected else "rejected" if has_rejected and not has_chosen else None
    return side, has_chosen and has_rejected
