"""Measuring what a vector does (docs/method.md §7).

- :func:`preference_accuracy`: held-out pairs whose chosen answer gains more log-probability
  than the rejected one under the vector.
- :func:`~.mcq.mcq_accuracy`: multiple choice by the likelihood of each answer letter; with two
  options it is BiPO's behaviour rate (:func:`~.mcq.behaviour_rate`);
  :func:`~.mcq.mcq_generation_report`: by the letter the generated answer states (``mcq`` module).
- :func:`~.replies.generation_accuracy`: open answers by greedy generation, correct when the
  expected answer text appears in the output; :func:`~.replies.fluency_rate`: the share of
  steered answers that still read like text; :func:`~.replies.behaviour_shown_rate`: on a
  demo-world behaviour's open answers, the share that accept its offer for its own reasons;
  :func:`~.replies.culture_shown_rate`: on a demo-world culture's open answers, the share that
  name the culture's answer.
- :func:`sweep`: any of them as a function of the multiplier; :func:`capability_change`: the same
  general set with and without the vector.

:data:`METRICS` names each metric, what its pairs must hold and how it scores them; it is the
one table the CLI, the app and the method comparison choose metrics from.
:func:`parse_multipliers` reads a user's list of multipliers.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Mapping, Sequence

import torch
from torch import nn

from . import checks
from .architectures import capped_length
from .data import PreferencePair
from .encoding import encode_pairs
from .errors import DataError, SettingsError
from .generation import STEER_POSITIONS
from .logprobs import pair_logprobs
from .mcq import (
    behaviour_rate,
    load_mmlu_subset,
    mcq_accuracy,
    mcq_generation_report,
    mcq_items_from_pairs,
    one_letter_accuracy,
)
from .options import chosen_letter, is_letter_answer, option_letters
from .replies import (
    behaviour_shown_rate,
    culture_shown_rate,
    demo_behaviour,
    demo_culture,
    fluency_rate,
    generation_accuracy,
    shared_system,
)
from .steering import SteeringVector, steered

DEFAULT_MULTIPLIERS = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)


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
    max_length: int | None = None,
) -> PairScores:
    """Answer log-probs of each pair with and without the vector. Pairs are read within
    ``max_length`` tokens (default: the model's context), their prompts cut from the left when
    longer; a pair whose answer alone is longer cannot be scored and is left out, and when that
    leaves none, the error says so."""
    return score_pairs_sweep(model, tokenizer, pairs, vector, [multiplier], sae, batch_size, max_length)[multiplier]


def score_pairs_sweep(model: nn.Module, tokenizer, pairs: Sequence[PreferencePair], vector: SteeringVector | None,
                      multipliers: Sequence[float], sae: nn.Module | None = None, batch_size: int = 8,
                      max_length: int | None = None, guard: Callable[[], ContextManager] = nullcontext,
                      ) -> dict[float, PairScores]:
    """:func:`score_pairs` at each multiplier, with the unsteered log-probs (which no multiplier
    changes) computed once. ``guard()`` is entered around each pass over the pairs (unsteered,
    then one per multiplier)."""
    room = capped_length(model, max_length)
    encoded, report = encode_pairs(tokenizer, pairs, room)
    if not encoded:
        raise DataError(f"all {len(pairs)} pair(s) have an answer longer than the {room} tokens the model reads: none "
                        "can be scored; shorten the answers.")
    with guard():
        reference = pair_logprobs(model, tokenizer, encoded, batch_size)
    out = {}
    for m in multipliers:
        with guard(), steered(model, vector, m, sae):
            scores = pair_logprobs(model, tokenizer, encoded, batch_size)
        out[m] = PairScores(scores[:, 0], scores[:, 1], reference[:, 0], reference[:, 1])
    return out


def preference_accuracy(model, tokenizer, pairs, vector, multiplier: float = 1.0, sae=None, **kwargs) -> float:
    """Share of pairs whose chosen answer gains more log-probability than the rejected one when
    the vector is applied at ``multiplier`` (the held-out form of the training reward accuracy)."""
    scores = score_pairs(model, tokenizer, pairs, vector, multiplier, sae, **kwargs)
    return float((scores.reward_margin > 0).float().mean())


def sweep(metric: Callable[[float], float], multipliers: Sequence[float] = DEFAULT_MULTIPLIERS) -> dict[float, float]:
    """``{multiplier: metric(multiplier)}``, e.g. ``sweep(lambda m: mcq_accuracy(..., multiplier=m))``."""
    return {float(m): float(metric(float(m))) for m in multipliers}


def demo_capability(model, tokenizer) -> tuple[Callable[[], float], str] | None:
    """The demo world's capability check and what it is (all its general questions, greedy
    answers: ``DemoWorld.capability_measure``) when ``model`` is a demo world's, else None."""
    from .demo.world import world_of_model  # the demo package is read only when asked for

    world = world_of_model(str(getattr(model.config, "_name_or_path", "") or "."))
    if world is None:
        return None
    return world.capability_measure(model, tokenizer), f"demo general questions ({len(world.general_questions()[0])})"


def capability_measure(model, tokenizer, n: int = 48) -> tuple[Callable[[], float], str]:
    """The general-ability check for ``model`` and what it is: :func:`demo_capability` for a demo
    world's model, else ``n`` questions of MMLU (``cais/mmlu``; needs the Hub or its cache). Call
    the measure inside a steering context to measure the steered model (:func:`capability_change`)."""
    demo = demo_capability(model, tokenizer)
    if demo is not None:
        return demo
    items = load_mmlu_subset(checks.whole("n", n, 1))
    return (lambda: mcq_accuracy(model, tokenizer, items)), f"MMLU subset ({len(items)})"


def capability_change(measure: Callable[[], float], model, vector, multiplier: float = 1.0, sae=None,
                      unsteered: float | None = None) -> dict:
    """``measure()`` without and with the vector, and the change. ``unsteered``: the measure
    without a vector, when it is already known (it does not depend on the vector). At multiplier 0
    the vector changes nothing (:func:`~.steering.steered`), so the model is measured once."""
    base = measure() if unsteered is None else unsteered
    if vector is None or multiplier == 0:
        steered_value = base
    else:
        with steered(model, vector, multiplier, sae):
            steered_value = measure()
    return {"unsteered": base, "steered": steered_value, "change": steered_value - base}


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
    ("Koshari, option B."); see :func:`~.options.chosen_letter`."""
    return chosen_letter(pair, stated) is not None and (letters is None or option_letters(pair.prompt, "") == letters)


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


def _culture_open(model, tokenizer, pairs, vector, m, sae, steer_positions):
    return culture_shown_rate(model, tokenizer, pairs, vector, m, sae=sae, steer_positions=steer_positions)


def _generation(model, tokenizer, pairs, vector, m, sae, steer_positions):
    return generation_accuracy(model, tokenizer, [p.prompt for p in pairs], [p.chosen for p in pairs], vector, m,
                               sae=sae, steer_positions=steer_positions, system=shared_system(pairs))


METRICS: dict[str, Metric] = {
    "preference": Metric("preference", "held-out preference accuracy (pairs the vector moves towards the chosen answer;"
                         " none at m = 0, where nothing moves)", "any preference pairs", _preference),
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
    "culture_open": Metric("culture_open", "culture shown in open answers (greedy: names the culture's answer)",
                           "a demo-world culture's open-answer pairs, whose chosen answer opens with the culture's "
                           "short answer (\"Daura suruwal. It is …\")", _culture_open,
                           lambda pairs: demo_culture(pairs) is not None),
    "generation": Metric("generation", "generation accuracy (the greedy answer contains the chosen one)",
                         "open questions whose chosen answer is the expected text (not a demo behaviour's, "
                         "whose answers are any sentence of its side)", _generation, _is_expected_text),
    "fluency": Metric("fluency", "fluent answers (greedy: no token loop, ends its turn where unsteered does)",
                      "any prompts (it reads the steered answers, not the target)", _fluency),
}

GENERATING_METRICS = ("mcq_generated", "behaviour_open", "culture_open", "generation", "fluency")
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


SPECIFIC_FIRST = ("behaviour", "mcq", "mcq_generated", "behaviour_open", "culture_open", "generation", "preference")
"""The target metrics from the most specific to the one that scores any pairs: :func:`default_metric`
picks the first that applies."""


def default_metric(pairs: Sequence[PreferencePair]) -> str:
    """The most specific metric that can score ``pairs``: the behaviour rate, MCQ accuracy (by the
    letter's likelihood where the answer opens with it, else by the generated answer), the behaviour
    shown in a demo behaviour's open answers, the culture shown in a demo culture's, generation
    accuracy, else preference accuracy (which
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
                    steer_positions: str = "all", guard: Callable[[], ContextManager] = nullcontext) -> dict[float, float]:
    """``metric`` on ``pairs`` at each multiplier (see :data:`METRICS`); without a vector, the
    unsteered model once (at 0). ``guard()`` is entered around each use of the model (one
    multiplier; the preference accuracy's unsteered pass, taken once for the sweep): a shared
    model is held one multiplier at a time."""
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
    if chosen.key == "preference":  # the unsteered log-probs once for the whole sweep, not once per multiplier
        return {float(m): float((scores.reward_margin > 0).float().mean())
                for m, scores in score_pairs_sweep(model, tokenizer, pairs, vector, [float(m) for m in ms], sae,
                                                   guard=guard).items()}

    def at(m: float) -> float:
        with guard():
            return chosen.score(model, tokenizer, pairs, vector, m, sae, steer_positions)
    return sweep(at, ms)
