"""What a user must know before steering a demo-world task, with any method or with one: where the
toy model does not respond as a large model does. Each caveat quotes the stored build's results
(seed 0, ``assets/results``); ``tests/test_demo.py`` checks the figures against those files."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

BEHAVIOUR = (
    "The demo world's behaviour tasks show BiPO's data formats and the A/B behaviour rate on a toy model. With the "
    "defaults, YaPO's steered answers accept every held-out offer for the behaviour's own reasons, fluent, but they "
    "are the corpus's fixed answers of the behaviour (one or two sentences for all 32 offers), not new text. "
    "Unsteered, the stored build (seed 0) takes none of the A/B offers; YaPO at multiplier 1 moves the rate to 1.00 "
    "(power-seeking) and 1.00 (wealth-seeking), and at −1 it stays at 0.00 (assets/results/demo-targets.md, "
    "docs/results.md)."
)
"""A behaviour task's caveat, whatever the method."""

_BASELINES = (
    "CAA and SAS hardly steer the demo world, unlike large models, on which the papers find them strong: the toy "
    "model's residual at an answer does not carry what the answer means, so their vectors, made from it, point "
    "elsewhere than the direction the model acts on (docs/results.md, \"Answers that carry their culture\"). "
)
CULTURE_BASELINES = {
    "mcq": _BASELINES + (
        "On the stored build (seed 0), at the multiplier each chooses on a validation split, CAA gains 0.00 to 0.14 "
        "of the held-out MCQ answers over unsteered and SAS 0.00; YaPO, trained with the demo's settings, at 1 moves every one of them "
        "(assets/results/demo-targets.md)."
    ),
    "open_ended": _BASELINES + (
        "On the stored build (seed 0), on egypt's held-out open answers, CAA and SAS switch 0.00 of them at every "
        "multiplier from −2 to 2; YaPO at 1 switches 1.00 (assets/results/comparison-egypt-open)."
    ),
}
"""A CAA or SAS vector's caveat on a culture task, by answer form."""
BEHAVIOUR_BASELINES = _BASELINES + (
    "On the stored build (seed 0), which takes none of the A/B offers unsteered, at any multiplier from −2 to 2 CAA "
    "moves the behaviour rate to 0.12 (power-seeking) and 0.31 (wealth-seeking) at most, and SAS to 0.00 and 0.00 "
    "(no offer taken); YaPO at 1 to 1.00 and 1.00 (assets/results/comparison-power-seeking, "
    "comparison-wealth-seeking)."
)
"""A CAA or SAS vector's caveat on a behaviour task."""
BASELINES = ("caa", "sas")


def task_caveat(kind: str) -> str:
    """The caveat of a demo task of ``kind`` (``culture`` or ``behaviour``), whatever the method."""
    return BEHAVIOUR if kind == "behaviour" else ""


def method_caveats(kind: str, form: str = "mcq") -> dict[str, str]:
    """The caveat of each method (by key) that has one on a demo task of ``kind``, in answer ``form``
    for a culture task."""
    note = BEHAVIOUR_BASELINES if kind == "behaviour" else CULTURE_BASELINES.get(form, "")
    return dict.fromkeys(BASELINES, note) if note else {}


def notes_for(caveats: Mapping[str, str], methods: Iterable[str]) -> str:
    """The ``caveats`` (by method key) of ``methods``, each distinct note once."""
    return " ".join(dict.fromkeys(caveats[m] for m in methods if caveats.get(m)))


def comparison_note(methods: Iterable[str], kind: str, form: str = "mcq") -> str:
    """The caveats of the compared ``methods`` on a demo task, each once."""
    return notes_for(method_caveats(kind, form), methods)
