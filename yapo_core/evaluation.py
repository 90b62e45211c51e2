"""Measuring what a vector does (docs/method.md §7).

- :func:`preference_accuracy`: held-out pairs whose chosen answer gains more log-probability
  than the rejected one under the vector.
- :func:`mcq_accuracy`: multiple choice by the likelihood of each answer letter (the answer turn
  "X" + end of turn); with two options and the behaviour's letter as gold it is BiPO's behaviour
  rate (:func:`behaviour_rate`).
- :func:`mcq_generation_report`: multiple choice by the generated answer (greedy), its letter read
  by :func:`parse_answer_letter`; unparseable replies count as wrong and are reported.
- :func:`~.replies.generation_accuracy`: open answers by greedy generation, correct when the
  expected answer text appears in the output; :func:`~.replies.fluency_rate`: the share of
  steered answers that still read like text; :func:`~.replies.behaviour_shown_rate`: on a
  demo-world behaviour's open answers, the share that accept its offer for its own reasons.
- :func:`sweep`: any of them as a function of the multiplier; :func:`capability_change`: the same
  general set with and without the vector.

:data:`METRICS` names each metric, what its pairs must hold and how it scores them; it is the
one table the CLI, the app and the method comparison choose metrics from.
:func:`parse_multipliers` reads a user's list of multipliers.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from . import checks
from .architectures import capped_length
from .data import PreferencePair, answer_letter, is_letter_answer, option_letters
from .encoding import EncodedPair, collate, encode_pairs, fit_prompt, render_answer
from .errors import DataError, SettingsError
from .generation import STEER_POSITIONS, generate
from .hub import explain_hub_error
from .logprobs import pad_token_id, sequence_logprobs
from .models import model_device
from .replies import (
    behaviour_shown_rate,
    demo_behaviour,
    fluency_rate,
    generation_accuracy,
    parse_answer_letter,
    shared_system,
)
from .steering import SteeringVector

DEFAULT_MULTIPLIERS = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)


def steered(model, vector: SteeringVector | None, multiplier: float, sae=None):
    """``vector.apply`` or, without a vector (or at 0), a context that changes nothing."""
    if vector is None or multiplier == 0:
        return contextlib.nullcontext(model)
    return vector.apply(model, multiplier, sae=sae)


@torch.no_grad()
def _logprobs_of(model, tokenizer, encoded: list[EncodedPair], batch_size: int) -> torch.Tensor:
    """Answer log-probs of chosen then rejected rows, batch by batch: (len, 2)."""
    pad = pad_token_id(tokenizer, model)
    out = []
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start : start + batch_size], pad).to(model_device(model))
        lp = sequence_logprobs(model, batch).cpu()
        n = batch.n_pairs
        out.append(torch.stack([lp[:n], lp[n:]], 1))
    return torch.cat(out) if out else torch.zeros(0, 2)


@dataclass
class PairScores:
    """Per-pair answer log-probs (summed over answer tokens) with and without the vector."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_ref: torch.Tensor
    rejected_ref: torch.Tensor

    @property
    def reward_margin(self) -> torch.Tensor:
        """``r(y_w) − r(y_l)`` per pair, with ``r = log π_steered − log π_0``."""
        return (self.chosen - self.chosen_ref) - (self.rejected - self.rejected_ref)


def score_pairs(
    model: nn.Module,
    tokenizer,
    pairs: Sequence[PreferencePair],
    vector: SteeringVector | None = None,
    multiplier: float = 1.0,
    sae: nn.Module | None = None,
    batch_size: int = 8,
    max_length: int = 512,
) -> PairScores:
    encoded, report = encode_pairs(tokenizer, pairs, capped_length(model, max_length))
    if report.dropped:
        raise DataError(f"{report.dropped} of {len(pairs)} pair(s) have an answer longer than the "
                        f"{capped_length(model, max_length)} tokens scored per pair: leave them out, or shorten their answers.")
    reference = _logprobs_of(model, tokenizer, encoded, batch_size)
    with steered(model, vector, multiplier, sae):
        scores = _logprobs_of(model, tokenizer, encoded, batch_size)
    return PairScores(scores[:, 0], scores[:, 1], reference[:, 0], reference[:, 1])


def preference_accuracy(model, tokenizer, pairs, vector, multiplier: float = 1.0, sae=None, **kwargs) -> float:
    """Share of pairs whose chosen answer gains more log-probability than the rejected one when
    the vector is applied at ``multiplier`` (the held-out form of the training reward accuracy)."""
    scores = score_pairs(model, tokenizer, pairs, vector, multiplier, sae, **kwargs)
    return float((scores.reward_margin > 0).float().mean())


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
                    max_length: int = 512) -> list[torch.Tensor]:
    """log p(answer turn = letter) for each option letter of each item; a prompt longer than
    ``max_length`` (or the model's context) loses the start of its text, as in training."""
    encoded = []
    for item in items:
        answers = [tokenizer(render_answer(tokenizer, item.prompt, letter, item.system), add_special_tokens=False)["input_ids"]
                   for letter in item.letters]
        prompt_ids, _ = fit_prompt(tokenizer, item.prompt, item.system,
                                   capped_length(model, max_length) - max(map(len, answers)))
        if prompt_ids is None:
            raise DataError(f"the question {item.prompt[:60]!r} does not fit the model's {capped_length(model, max_length)} "
                            "tokens even without its text: the chat template alone is longer.")
        encoded += [EncodedPair(prompt_ids, answer, answer) for answer in answers]
    flat = _logprobs_of(model, tokenizer, encoded, batch_size)[:, 0]
    out, i = [], 0
    for item in items:
        out.append(flat[i : i + len(item.letters)])
        i += len(item.letters)
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
    replies = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        out = generate(model, tokenizer, [i.prompt for i in chunk], vector, [multiplier], sae=sae,
                       system=shared_system(items), max_new_tokens=max_new_tokens, steer_positions=steer_positions)
        replies += [o[multiplier if vector is not None else 0.0] for o in out]
    letters = [parse_answer_letter(r, i.letters) for r, i in zip(replies, items)]
    return {"accuracy": sum(a == i.gold for a, i in zip(letters, items)) / len(items),
            "unparseable": sum(a is None for a in letters) / len(items), "replies": replies}


def sweep(metric: Callable[[float], float], multipliers: Sequence[float] = DEFAULT_MULTIPLIERS) -> dict[float, float]:
    """``{multiplier: metric(multiplier)}``, e.g. ``sweep(lambda m: mcq_accuracy(..., multiplier=m))``."""
    return {float(m): float(metric(float(m))) for m in multipliers}


def capability_change(measure: Callable[[], float], model, vector, multiplier: float = 1.0, sae=None,
                      unsteered: float | None = None) -> dict:
    """``measure()`` without and with the vector, and the change. ``unsteered``: the measure
    without a vector, when it is already known (it does not depend on the vector)."""
    base = measure() if unsteered is None else unsteered
    with steered(model, vector, multiplier, sae):
        steered_value = measure()
    return {"unsteered": base, "steered": steered_value, "change": steered_value - base}


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


def parse_multipliers(text: str | Sequence[float]) -> list[float]:
    """Multipliers from ``"-2, -1, 0, 1, 2"`` (commas or semicolons) or a list, sorted and unique.

    Refuses anything that is not a finite number, naming the value and the expected form.
    """
    if isinstance(text, str):
        parts = text.replace(";", ",").split(",")
        if len(parts) > 1 and not parts[-1].strip():  # one trailing separator ("0, 1,")
            parts.pop()
        if len(parts) > 1 and any(not part.strip() for part in parts):  # "0,,1" or ",1": a number left out
            raise SettingsError(f"multipliers {text.strip()!r} have an empty item (an extra comma or semicolon); put a "
                                "number there or remove the separator, e.g. -2, -1, 0, 1, 2.")
    else:
        parts = list(text)
    values = []
    for part in parts:
        if isinstance(part, str) and not part.strip():  # nothing given, or a list's blank cell
            continue
        try:
            value = float(part)
        except (TypeError, ValueError):
            value = float("nan")
        if value != value or value in (float("inf"), float("-inf")):
            raise SettingsError(f"multiplier {str(part).strip()!r} is not a finite number; give numbers separated by "
                                "commas, e.g. -2, -1, 0, 1, 2.")
        values.append(value)
    if not values:
        raise SettingsError("give at least one multiplier, e.g. -2, -1, 0, 1, 2.")
    return sorted(set(checks.multipliers(values)))


@dataclass(frozen=True)
class Metric:
    """One way of scoring a vector on test pairs at a multiplier.

    ``score(model, tokenizer, pairs, vector, multiplier, sae, steer_positions)`` returns a number
    in [0, 1]; ``needs`` says what the pairs must hold, and ``applies(pairs)`` whether they do.
    """

    key: str
    label: str
    needs: str
    score: Callable[..., float]
    applies: Callable[[Sequence[PreferencePair]], bool] = lambda pairs: True


def _letter_question(pair: PreferencePair, letters: str | None = None, stated: bool = False) -> bool:
    """The pair answers a lettered question with one of its letters (``letters`` when given): an
    answer that opens with the letter, or (``stated``) one that also may state it after its text
    ("Koshari, option B.")."""
    found = answer_letter(pair.chosen)
    options = option_letters(pair.prompt, default="")
    return bool(found and (found[1] or stated) and len(options) >= 2 and found[0] in options
                and (letters is None or options == letters))


def _is_mcq(pairs) -> bool:
    return bool(pairs) and all(_letter_question(p) for p in pairs)


def _states_mcq(pairs) -> bool:
    return bool(pairs) and all(_letter_question(p, stated=True) for p in pairs)


def _is_ab(pairs) -> bool:
    return bool(pairs) and all(_letter_question(p, "AB") for p in pairs)


def _is_open(pairs) -> bool:
    return bool(pairs) and not any(is_letter_answer(p.chosen) for p in pairs)


def _is_expected_text(pairs) -> bool:
    """Open pairs whose chosen answer is the text to find in a reply; a demo behaviour's are one of
    several sentences of its side, which a steered reply need not repeat."""
    return _is_open(pairs) and demo_behaviour(pairs) is None


def _preference(model, tokenizer, pairs, vector, m, sae, steer_positions):
    return preference_accuracy(model, tokenizer, pairs, vector, m, sae=sae) if vector is not None else float("nan")


def _mcq(model, tokenizer, pairs, vector, m, sae, steer_positions):
    return mcq_accuracy(model, tokenizer, mcq_items_from_pairs(pairs), vector, m, sae=sae)


def _mcq_generated(model, tokenizer, pairs, vector, m, sae, steer_positions):
    return mcq_generation_report(model, tokenizer, mcq_items_from_pairs(pairs), vector, m, sae=sae,
                                 steer_positions=steer_positions)["accuracy"]


def _behaviour(model, tokenizer, pairs, vector, m, sae, steer_positions):
    return behaviour_rate(model, tokenizer, pairs, vector, m, sae=sae)


def _fluency(model, tokenizer, pairs, vector, m, sae, steer_positions):
    return fluency_rate(model, tokenizer, [p.prompt for p in pairs], vector, m, sae=sae, steer_positions=steer_positions,
                        system=shared_system(pairs))


def _behaviour_open(model, tokenizer, pairs, vector, m, sae, steer_positions):
    return behaviour_shown_rate(model, tokenizer, pairs, vector, m, sae=sae, steer_positions=steer_positions)


def _generation(model, tokenizer, pairs, vector, m, sae, steer_positions):
    return generation_accuracy(model, tokenizer, [p.prompt for p in pairs], [p.chosen for p in pairs], vector, m,
                               sae=sae, steer_positions=steer_positions, system=shared_system(pairs))


METRICS: dict[str, Metric] = {
    "preference": Metric("preference", "held-out preference accuracy", "any preference pairs", _preference),
    "mcq": Metric("mcq", "MCQ accuracy (answer-letter likelihood)",
                  "multiple-choice pairs whose chosen answer is an option letter", _mcq, _is_mcq),
    "mcq_generated": Metric("mcq_generated", "MCQ accuracy (generated answer)",
                            "multiple-choice pairs whose chosen answer gives an option letter, first (\"B\") or "
                            "after its text (\"Koshari, option B.\"); the letter is read from the greedy reply "
                            "(unparseable replies count as wrong)", _mcq_generated, _states_mcq),
    "behaviour": Metric("behaviour", "behaviour rate (A/B: picks the behaviour's option)",
                        "A/B pairs whose chosen answer is the behaviour's letter (BiPO's test_infer)", _behaviour, _is_ab),
    "behaviour_open": Metric("behaviour_open", "behaviour shown in open answers (greedy: accepts for its reasons)",
                             "a demo-world behaviour's open-answer pairs (its test split), whose judge "
                             "(accepts the offer for the behaviour's own reasons) agrees with their labels",
                             _behaviour_open, lambda pairs: demo_behaviour(pairs) is not None),
    "generation": Metric("generation", "generation accuracy (the greedy answer contains the chosen one)",
                         "open questions whose chosen answer is the expected text (not a demo behaviour's, "
                         "whose answers are any sentence of its side)", _generation, _is_expected_text),
    "fluency": Metric("fluency", "fluent answers (greedy: no token loop, ends its turn where unsteered does)",
                      "any prompts (it reads the steered answers, not the target)", _fluency),
}

GENERATING_METRICS = ("mcq_generated", "behaviour_open", "generation", "fluency")
"""The metrics that generate answers, for which steering every token or the prompt only differs."""

TARGET_METRICS = tuple(k for k in METRICS if k != "fluency")
"""The metrics that measure a vector's target (a multiplier can be chosen on them)."""


def applicable_metrics(pairs: Sequence[PreferencePair]) -> list[str]:
    """The keys of the metrics that can score ``pairs`` (see each :class:`Metric`'s ``needs``)."""
    pairs = list(pairs)
    return [key for key, metric in METRICS.items() if metric.applies(pairs)]


def check_applies(metric: str, pairs: Sequence[PreferencePair], what: str = "these pairs") -> None:
    """Refuse ``pairs`` that ``metric`` cannot score, naming what it needs and the metrics that can."""
    chosen = get_metric(metric)
    if not chosen.applies(pairs):
        raise DataError(f"the {chosen.label} cannot score {what}: it needs {chosen.needs}. Metrics that can: "
                        f"{', '.join(applicable_metrics(pairs))}.")


def metric_splits(splits: Mapping[str, Sequence[PreferencePair]]) -> dict[str, str]:
    """Each metric that can score one of a task's test ``splits`` (name: pairs), with the first
    split it can score, in :data:`METRICS` order."""
    found: dict[str, str] = {}
    for name, pairs in splits.items():
        for key in applicable_metrics(pairs):
            found.setdefault(key, name)
    return {key: found[key] for key in METRICS if key in found}


SPECIFIC_FIRST = ("behaviour", "mcq", "mcq_generated", "behaviour_open", "generation", "preference")
"""The target metrics from the most specific to the one that scores any pairs: :func:`default_metric`
picks the first that applies."""


def default_metric(pairs: Sequence[PreferencePair]) -> str:
    """The most specific metric that can score ``pairs``: the behaviour rate, MCQ accuracy (by the
    letter's likelihood where the answer opens with it, else by the generated answer), the behaviour
    shown in a demo behaviour's open answers, generation accuracy, else preference accuracy (which
    scores any pairs)."""
    usable = applicable_metrics(pairs)
    return next(k for k in SPECIFIC_FIRST if k in usable)


LETTER_METRICS = ("mcq", "mcq_generated")
"""The metrics that score a chosen option letter, for which :func:`one_letter_baseline` applies."""


def one_letter_baseline(metric: str, pairs: Sequence[PreferencePair]) -> tuple[str, float] | None:
    """For an MCQ metric, :func:`one_letter_accuracy` of ``pairs``: the accuracy a vector reaches by
    raising one letter everywhere, to read an MCQ curve against; None for the other metrics."""
    get_metric(metric)
    return one_letter_accuracy(mcq_items_from_pairs(pairs)) if metric in LETTER_METRICS else None


def one_letter_label(letter: str) -> str:
    """How plots and tables name :func:`one_letter_baseline`'s line: ``"one letter everywhere (H)"``."""
    return f"one letter everywhere ({letter})"


def get_metric(key: str) -> Metric:
    """The table entry for ``key``, or an error naming the choices."""
    if key not in METRICS:
        raise SettingsError(f"metric {key!r} is unknown; use one of {', '.join(METRICS)}.")
    return METRICS[key]


def evaluate_metric(metric: str, model, tokenizer, pairs: Sequence[PreferencePair], vector: SteeringVector | None,
                    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS, sae=None,
                    steer_positions: str = "all") -> dict[float, float]:
    """``metric`` on ``pairs`` at each multiplier (see :data:`METRICS`); without a vector, the
    unsteered model once (at 0)."""
    chosen = get_metric(metric)
    if steer_positions not in STEER_POSITIONS:
        raise SettingsError(f"steer_positions={steer_positions!r} is unknown; use one of {list(STEER_POSITIONS)}.")
    pairs = list(pairs)
    if not pairs:
        raise DataError("no pairs to evaluate.")
    if vector is not None:
        multipliers = checks.multipliers(multipliers)
    elif chosen.key == "preference":
        raise SettingsError("the preference accuracy compares the steered model with the unsteered one; give a vector.")
    check_applies(chosen.key, pairs)
    ms = multipliers if vector is not None else [0.0]
    return sweep(lambda m: chosen.score(model, tokenizer, pairs, vector, m, sae, steer_positions), ms)
