"""Multiple-choice questions (docs/method.md §7): reading the answer letter from pairs, scoring a
question by the likelihood of each letter (the answer turn "X" + end of turn) or by the letter a
generated answer states, BiPO's behaviour rate on A/B pairs, and the MMLU subset used as a
general-ability check.

- :func:`mcq_accuracy`: the share of questions whose most likely letter is the gold one; with two
  options and the behaviour's letter as gold it is BiPO's behaviour rate (:func:`behaviour_rate`).
- :func:`mcq_generation_report`: the letter of the greedy answer, read by
  :func:`~.replies.parse_answer_letter`; unparseable replies count as wrong and are reported.
- :func:`one_letter_accuracy`: what answering one letter everywhere scores, the floor a vector
  reaches without steering any answer's content.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import torch

from .architectures import capped_length
from .data import PreferencePair
from .encoding import EncodedPair, fit_prompt, render_answer
from .errors import DataError
from .generation import generate
from .hub import explain_hub_error
from .logprobs import pair_logprobs
from .options import answer_letter, option_letters
from .replies import parse_answer_letter, shared_system
from .steering import steered


@dataclass
class MCQItem:
    """A multiple-choice question: the prompt (options included), the option letters, the gold."""

    prompt: str
    gold: str
    letters: str = "ABCD"
    system: str | None = None


def gold_letter(answer: str) -> str:
    """``"B"``, ``"(B)"``, ``"B) text"``, and answers that state their letter after the text
    (``"Koshari, option B."``, ``"The answer is (B)"``) → ``"B"``."""
    found = answer_letter(answer)
    if found is None:
        raise DataError(f"cannot read an answer letter from {answer!r}.")
    return found[0]


def mcq_items_from_pairs(pairs: Sequence[PreferencePair], letters: str | None = None) -> list[MCQItem]:
    """MCQ items from pairs whose chosen answer is a letter (Deep-Culture-Lense MCQ, BiPO A/B).

    The option letters are read from each prompt unless ``letters`` is given; a gold letter that
    is not among them is refused (the pairs are not multiple choice of that kind)."""
    items = [MCQItem(p.prompt, gold_letter(p.chosen), letters or option_letters(p.prompt), p.system) for p in pairs]
    for item in items:
        if item.gold not in item.letters:
            raise DataError(f"the answer letter {item.gold!r} is not one of the options {item.letters!r} of "
                            f"{item.prompt[:80]!r}.")
    return items


@torch.no_grad()
def one_letter_accuracy(items: Sequence[MCQItem]) -> tuple[str, float]:
    """The most common gold letter of ``items`` and its share: the MCQ accuracy of answering that
    letter to every question. A steering vector can reach it by raising one letter's logit, without
    steering the content of any answer, so an MCQ accuracy at or near it shows nothing about the
    target; where answers are spread over the letters (as in a benchmark), it is near 1/options."""
    if not items:
        raise DataError("no MCQ items to count letters in.")
    letter, count = Counter(item.gold for item in items).most_common(1)[0]
    return letter, count / len(items)


def letter_logprobs(model, tokenizer, items: Sequence[MCQItem], batch_size: int = 8,
                    max_length: int | None = None) -> list[torch.Tensor]:
    """log p(answer turn = letter) for each option letter of each item; a prompt longer than
    ``max_length`` (default: the model's context) loses the start of its text, as in training."""
    encoded, room = [], capped_length(model, max_length)
    for item in items:
        answers = [tokenizer(render_answer(tokenizer, item.prompt, letter, item.system), add_special_tokens=False)["input_ids"]
                   for letter in item.letters]
        prompt_ids, _ = fit_prompt(tokenizer, item.prompt, item.system, room - max(map(len, answers)))
        if prompt_ids is None:
            raise DataError(f"the question {item.prompt[:60]!r} does not fit the model's {room} tokens even without "
                            "its text: the chat template alone is longer.")
        # two letters per pair row (its chosen and rejected side share the prompt): each answer scored once
        encoded += [EncodedPair(prompt_ids, answers[k], answers[min(k + 1, len(answers) - 1)])
                    for k in range(0, len(answers), 2)]
    flat = pair_logprobs(model, tokenizer, encoded, batch_size).reshape(-1)
    out, i = [], 0
    for item in items:
        n = len(item.letters)
        out.append(flat[i : i + n])
        i += n + n % 2  # an odd count's last row scored its last letter twice
    return out


def mcq_accuracy(model, tokenizer, items: Sequence[MCQItem], vector=None, multiplier: float = 1.0, sae=None,
                 batch_size: int = 8) -> float:
    """Share of items whose most likely answer letter is the gold one."""
    if not items:
        raise DataError("no MCQ items to evaluate.")
    with steered(model, vector, multiplier, sae):
        scores = letter_logprobs(model, tokenizer, items, batch_size)
    right = [item.letters[int(s.argmax())] == item.gold for item, s in zip(items, scores)]
    return sum(right) / len(right)


def behaviour_rate(model, tokenizer, pairs: Sequence[PreferencePair], vector=None, multiplier: float = 1.0,
                   sae=None) -> float:
    """BiPO's A/B evaluation (``test_infer`` pairs): share of questions where the model picks the
    option that shows the behaviour."""
    return mcq_accuracy(model, tokenizer, mcq_items_from_pairs(pairs, "AB"), vector, multiplier, sae)


def mcq_generation_report(model, tokenizer, items: Sequence[MCQItem], vector=None, multiplier: float = 1.0,
                          sae=None, max_new_tokens: int = 16, batch_size: int = 16,
                          steer_positions: str = "all") -> dict:
    """MCQ scored by the generated answer (greedy): the letter read by :func:`parse_answer_letter`.
    Returns the accuracy, the share of unparseable replies (counted as wrong) and the replies."""
    if not items:
        raise DataError("no MCQ items to evaluate.")
    replies, system = [], shared_system(items)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        out = generate(model, tokenizer, [i.prompt for i in chunk], vector, [multiplier], sae=sae,
                       system=system, max_new_tokens=max_new_tokens, steer_positions=steer_positions)
        replies += [o[multiplier if vector is not None else 0.0] for o in out]
    letters = [parse_answer_letter(r, i.letters) for r, i in zip(replies, items)]
    return {"accuracy": sum(a == i.gold for a, i in zip(letters, items)) / len(items),
            "unparseable": sum(a is None for a in letters) / len(items), "replies": replies}


def load_mmlu_subset(n: int = 100, subject: str = "all", seed: int = 0) -> list[MCQItem]:
    """A seeded MMLU subset (``cais/mmlu`` through ``datasets``; needs the Hub or its cache)."""
    import datasets

    try:
        ds = datasets.load_dataset("cais/mmlu", subject, split="test")
    except Exception as exc:
        raise DataError(explain_hub_error("dataset", "cais/mmlu", exc)) from exc
    ds = ds.shuffle(seed=seed).select(range(min(n, len(ds))))
    items = []
    for row in ds:
        options = "\n".join(f"{letter}. {choice}" for letter, choice in zip("ABCD", row["choices"]))
        items.append(MCQItem(f"{row['question']}\n{options}\nAnswer with the letter.", "ABCD"[row["answer"]]))
    return items


# --- the metric table ------------------------------------------------------------------------------
