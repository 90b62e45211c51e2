"""YaPO, BiPO, CAA and SAS on the same task, measured the same way.

:func:`compare_methods` trains or computes each method's vector on the same training pairs and
reports, per method: the steps until the training loss first falls below a loss every trained
method reaches (YaPO, BiPO; :func:`convergence_threshold`), the final loss, MCQ accuracy over a
multiplier sweep (at the multiplier chosen on a validation split carved from the training pairs,
at 1 and at 2, where the paper reports CAA and SAS collapse) and the capability change at the
chosen multiplier; on open answers, also the share of answers that stay fluent there. :func:`demo_comparison` runs it on a task of the built-in demo world (a
culture, or a behaviour by BiPO's protocol).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Mapping, Sequence

from torch import nn

from .data import PreferencePair, split_pairs
from .demo import build_demo_world, corpus, settings_by_method, training_settings
from .errors import SettingsError
from .evaluation import (
    DEFAULT_MULTIPLIERS,
    METRICS,
    TARGET_METRICS,
    applicable_metrics,
    capability_change,
    check_applies,
    default_metric,
    evaluate_metric,
    get_metric,
    mcq_generation_report,
    mcq_items_from_pairs,
    metric_splits,
    one_letter_baseline,
    one_letter_label,
)
from .methods import METHODS, get_method, make_vector
from .models import load_model
from .plots import loss_curves, multiplier_sweep, set_title, smoothed
from .replies import fluency_rate, shared_system
from .saes import check_sae_fits, load_sae_for
from .training import TrainConfig

LOSS_THRESHOLD = 0.1

OPEN_TEXT_METRICS = ("behaviour_open", "culture_open", "generation")
"""The target metrics that read open answers, which a reply can meet while it loops: a comparison
on one of them also reports the share of test answers that stay fluent at each method's multiplier."""


def convergence_threshold(curves: Sequence[Sequence[float]]) -> float:
    """The loss the "steps to loss < T" column counts to, on each curve's moving average
    (:func:`~yapo_core.plots.smoothed`, the line the Train page draws over a long run): 0.1 where
    every curve falls below it, or where fewer than two methods trained (nothing to compare);
    otherwise 1.1 times the highest smoothed final loss, so that each method gets there and the
    column says which got there first (a small model's losses can end far above 0.1)."""
    trained = [smoothed(c) for c in curves if c and all(math.isfinite(x) for x in c)]
    if len(trained) < 2 or all(min(c) < LOSS_THRESHOLD for c in trained):
        return LOSS_THRESHOLD
    return float(f"{1.1 * max(c[-1] for c in trained):.3g}")


def steps_below(losses: Sequence[float], threshold: float) -> int | None:
    """The first step (from 1) at which the smoothed loss is below ``threshold``; None if never."""
    return next((i + 1 for i, loss in enumerate(smoothed(losses)) if loss < threshold), None)


@dataclass
class MethodResult:
    method: str
    seconds: float
    steps_to_loss_below_0_1: int | None = None  # of the loss's moving average; the table's column may count to more
    final_loss: float | None = None  # the last step's loss; the table shows where the moving average ends
    accuracy: dict[float, float] = field(default_factory=dict)  # on the test split, per multiplier
    capability_change: float | None = None  # at the chosen multiplier
    l0: int = 0
    loss_curve: list[float] = field(default_factory=list)
    validation_accuracy: dict[float, float] = field(default_factory=dict)
    unparseable: float | None = None  # mcq_generated: share of replies with no option letter, at the chosen m
    norm: float | None = None  # of the vector (SAE latents for a sparse one, the residual stream for a dense one)
    fluent: float | None = None  # open answers: share of greedy test answers that stay fluent, at the chosen m

    @classmethod
    def from_json(cls, data: dict) -> "MethodResult":
        """The inverse of the ``results`` entries of ``comparison.json``."""
        floats = lambda d: {float(k): v for k, v in (d or {}).items()}  # noqa: E731
        return cls(**{**data, "accuracy": floats(data.get("accuracy")),
                      "validation_accuracy": floats(data.get("validation_accuracy"))})

    def to_json(self) -> dict:
        return {**asdict(self), "accuracy": {str(k): v for k, v in self.accuracy.items()},
                "validation_accuracy": {str(k): v for k, v in self.validation_accuracy.items()}}

    @property
    def chosen_multiplier(self) -> float:
        """The multiplier the method is reported at: the best on the validation split (never the
        test split), the smallest in size among ties; the best on the test split without one."""
        scores = self.validation_accuracy or self.accuracy
        return best_multiplier(scores)

    def row(self, threshold: float = LOSS_THRESHOLD) -> dict:
        """The table's row; ``threshold`` is the loss its steps column counts to (see :func:`convergence_threshold`)."""
        acc = self.accuracy
        chosen = self.chosen_multiplier
        steps = steps_below(self.loss_curve, threshold) if self.loss_curve else None
        final = smoothed(self.loss_curve)[-1] if self.loss_curve else self.final_loss  # as the threshold reads it
        return {
            "method": get_method(self.method).label.split(" (")[0],
            f"steps to loss < {threshold:g}": steps if steps is not None else "—",
            "final loss": f"{final:.3f}" if final is not None else "—",
            "multiplier (validation)" if self.validation_accuracy else "best multiplier (test)": f"{chosen:g}",
            "accuracy at it": f"{acc[chosen]:.2f}",
            "accuracy at 1": f"{acc[1.0]:.2f}" if 1.0 in acc else "— (not swept)",
            "accuracy at 2": f"{acc[2.0]:.2f}" if 2.0 in acc else "— (not swept)",
            **({"fluent at it": f"{self.fluent:.2f}"} if self.fluent is not None else {}),
            "capability change": f"{self.capability_change:+.3f}" if self.capability_change is not None else "—",
            **({"unparseable replies": f"{self.unparseable:.2f}"} if self.unparseable is not None else {}),
            "L0": self.l0 if self.l0 else "0 (an empty vector: it steers nothing)",
            "norm": "—" if self.norm is None else f"{self.norm:.3g}" if self.norm < 1000 else f"{self.norm:,.0f}",
            "seconds": f"{self.seconds:.0f}",
        }


def best_multiplier(scores: dict[float, float]) -> float:
    """The multiplier with the highest score; among ties the smallest in size (then the positive)."""
    return max(scores, key=lambda m: (scores[m], -abs(m), m))


@dataclass
class ComparisonResult:
    task: str
    baseline_accuracy: float
    results: list[MethodResult]
    settings: dict
    metric: str = "mcq"
    one_letter: tuple[str, float] | None = None  # MCQ: the test split's most common gold letter and its share

    @property
    def loss_threshold(self) -> float:
        """The loss the steps column counts to, shared by the methods: :func:`convergence_threshold`."""
        return convergence_threshold([r.loss_curve for r in self.results])

    def table(self) -> list[dict]:
        threshold = self.loss_threshold
        return [r.row(threshold) for r in self.results]

    def to_markdown(self) -> str:
        rows = self.table()
        head = list(rows[0])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
        label = METRICS[self.metric].label
        letter = f"; {one_letter_label(self.one_letter[0])} {self.one_letter[1]:.2f}" if self.one_letter else ""
        return (f"Task {self.task}; {label}, unsteered {self.baseline_accuracy:.2f}{letter}.{self._chooser()}\n\n"
                + "\n".join(lines))

    def _chooser(self) -> str:
        """Which metric chose the multipliers, where it is not the reported one."""
        chosen_by = self.settings.get("validation_metric")
        return f" Multipliers chosen by the {METRICS[chosen_by].label} on the validation split." if chosen_by else ""

    def figures(self):
        """The metric against the multiplier (one line per method, each method's chosen multiplier
        marked) and the training-loss curves."""
        labels = [r.row()["method"] for r in self.results]
        label = METRICS[self.metric].label
        sweep_fig = multiplier_sweep([(name, sorted(r.accuracy.items())) for name, r in zip(labels, self.results)],
                                     y_title=label, marks=[(name, r.chosen_multiplier, r.accuracy[r.chosen_multiplier])
                                                           for name, r in zip(labels, self.results)],
                                     references=[(one_letter_label(self.one_letter[0]), self.one_letter[1])]
                                     if self.one_letter else ())
        sweep_fig.update_layout(yaxis_range=[0, 1])
        set_title(sweep_fig, f"{label} by multiplier — {self.task}.{self._chooser()}")
        # the moving averages the steps column reads, and its threshold
        threshold = self.loss_threshold
        loss_fig = loss_curves([(label, smoothed(r.loss_curve)) for label, r in zip(labels, self.results) if r.loss_curve],
                               threshold=threshold)
        set_title(loss_fig, f"training loss (moving average); dotted: the loss the steps column counts to, {threshold:g}")
        return sweep_fig, loss_fig

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "comparison.md").write_text(self.to_markdown() + "\n")
        (folder / "comparison.json").write_text(json.dumps(
            {"task": self.task, "metric": self.metric, "baseline_accuracy": self.baseline_accuracy,
             **({"one_letter": {"letter": self.one_letter[0], "accuracy": self.one_letter[1]}} if self.one_letter else {}),
             "settings": self.settings,
             "results": [r.to_json() for r in self.results]},
            indent=2))
        sweep_fig, loss_fig = self.figures()
        sweep_fig.write_html(folder / "accuracy_by_multiplier.html", include_plotlyjs="cdn")
        loss_fig.write_html(folder / "training_loss.html", include_plotlyjs="cdn")
        return folder

    @classmethod
    def load(cls, path: str | Path) -> "ComparisonResult":
        """A result from the ``comparison.json`` that :meth:`save` writes."""
        data = json.loads(Path(path).read_text())
        letter = data.get("one_letter")
        return cls(data["task"], data["baseline_accuracy"], [MethodResult.from_json(r) for r in data["results"]],
                   data["settings"], data.get("metric", "mcq"),
                   (letter["letter"], letter["accuracy"]) if letter else None)


def compare_methods(
    model: nn.Module,
    tokenizer,
    sae: nn.Module,
    train_pairs: Sequence[PreferencePair],
    test_pairs: Sequence[PreferencePair],
    capability: Callable[[], float] | None = None,
    methods: Sequence[str] = tuple(METHODS),
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    train_config: dict | None = None,
    task: str = "task",
    method_configs: Mapping[str, dict] | None = None,
    on_progress: Callable[[str], None] | None = None,
    validation_fraction: float = 0.2,
    seed: int = 0,
    metric: str = "mcq",
    done: Sequence[MethodResult] = (),
    on_result: Callable[[MethodResult], None] | None = None,
    progress: bool = False,
    guard: Callable[[], ContextManager] = nullcontext,
) -> ComparisonResult:
    """Make each method's vector on ``train_pairs`` and measure it on ``test_pairs`` with
    ``metric`` (a key of :data:`~yapo_core.evaluation.METRICS`; MCQ accuracy by default).

    A seeded ``validation_fraction`` of the training pairs is held out from training; each
    method's multiplier is chosen on it (:attr:`MethodResult.chosen_multiplier`), so the test
    split is used for nothing but the report. ``validation_fraction=0`` trains on every pair and
    reports each method at its best test multiplier (labelled as such).

    ``done`` holds results of an interrupted run of the same comparison: those methods are not
    made again. ``on_result`` is called with each method's result as soon as it is measured (to
    store it). ``progress`` shows a progress bar for each training. ``method_configs`` overrides
    ``train_config`` for one method (e.g. ``{"bipo": {"lr": 0.01}}``). ``guard()`` is entered
    around each use of the model (a training step, a metric at one multiplier, a capability
    measure): a model shared with others is held one step at a time, and a guard that raises stops
    the comparison."""
    say = on_progress or (lambda msg: None)
    own = {key: dict(v) for key, v in (method_configs or {}).items()}
    check_sae_fits(model, sae)  # every method acts at the SAE's hook point (make_vector takes it from the SAE)
    config = dict(train_config or {})
    chosen = [get_method(m) for m in methods]  # refuse an unknown method before any work
    if get_metric(metric).key not in TARGET_METRICS:
        raise SettingsError(f"the metric {metric!r} ({METRICS[metric].label}) does not measure the target, so no "
                            f"multiplier can be chosen on it; compare on one of {', '.join(TARGET_METRICS)}.")
    test_pairs = list(test_pairs)
    metric = get_metric(metric).key
    check_applies(metric, test_pairs, "the test pairs")  # before any training
    # a demo behaviour's validation split holds out whole offers, as its test split does
    fit, held = split_pairs(train_pairs, validation_fraction, seed, group=corpus.offer_grouping(train_pairs))
    if validation_fraction > 0 and not held:  # choosing on the test split would report a multiplier fitted to it
        raise SettingsError(f"{len(fit)} training pair(s) are too few to set {validation_fraction:.0%} aside for choosing "
                            "each method's multiplier (it takes at least two pairs, or two offers of a demo behaviour); "
                            "give more training pairs, or validation_fraction=0 to report each method at its best test "
                            "multiplier, labelled as such.")
    choose_by = validation_metric(metric, held)
    if choose_by != metric:
        say(f"multipliers are chosen by the {METRICS[choose_by].label} on the validation split: the "
            f"{METRICS[metric].label} cannot score its pairs")
    def score(pairs, vector, ms, by=metric) -> dict[float, float]:  # one multiplier at a time under the guard
        return evaluate_metric(by, model, tokenizer, pairs, vector, ms if vector is not None else [0.0], sae=sae,
                               guard=guard)

    def measure() -> float:
        with guard():
            return capability()
    results = []
    finished = {r.method: r for r in done}
    say(plan(chosen, config, multipliers, len(fit), len(held), len(test_pairs), skip=set(finished)))
    baseline = score(test_pairs, None, [0.0])[0.0] if metric != "preference" else 0.0
    unsteered_capability = None
    for method in chosen:
        if method.key in finished:
            say(f"{method.key}: measured before, kept")
            results.append(finished[method.key])
            continue
        say(f"{method.key}: building the vector")
        start = time.perf_counter()
        losses: list[float] = []
        settings = TrainConfig(**{**config, **own.get(method.key, {})})
        vector = make_vector(method, model, tokenizer, fit, sae=sae, config=settings,
                             on_step=lambda m: losses.append(m.loss), progress=progress, guard=guard)
        seconds = time.perf_counter() - start
        say(f"{method.key}: sweeping multipliers")
        on_validation = score(held, vector, multipliers, choose_by) if held else {}
        accuracy = score(test_pairs, vector, multipliers)
        below = steps_below(losses, LOSS_THRESHOLD)
        result = MethodResult(method.key, seconds, below, losses[-1] if losses else None, accuracy, l0=vector.l0(),
                              loss_curve=losses, validation_accuracy=on_validation, norm=float(f"{vector.norm():.4g}"))
        if metric == "mcq_generated":
            with guard():
                result.unparseable = mcq_generation_report(model, tokenizer, mcq_items_from_pairs(test_pairs), vector,
                                                           result.chosen_multiplier, sae=sae)["unparseable"]
        if metric in OPEN_TEXT_METRICS:  # a reply can name its target and still loop: say how many stay text
            with guard():
                result.fluent = fluency_rate(model, tokenizer, [p.prompt for p in test_pairs], vector,
                                             result.chosen_multiplier, sae=sae, system=shared_system(test_pairs))
        if capability:
            if unsteered_capability is None:  # once per comparison: it does not depend on the vector
                unsteered_capability = measure()
            result.capability_change = capability_change(measure, model, vector, result.chosen_multiplier, sae,
                                                         unsteered_capability)["change"]
        results.append(result)
        if on_result is not None:
            on_result(result)
    return ComparisonResult(task, baseline, results, {
        "train_config": config, **({"method_configs": own} if own else {}), "multipliers": list(multipliers),
        "n_train": len(fit), "n_validation": len(held), "n_test": len(test_pairs),
        "multiplier_choice": "validation split" if held else "best on the test split",
        **({"validation_metric": choose_by} if choose_by != metric else {})},
        metric, one_letter_baseline(metric, test_pairs))


def plan(methods, config: dict, multipliers: Sequence[float], n_fit: int, n_validation: int, n_test: int,
         skip: set[str] = frozenset()) -> str:
    """What a comparison will do, before it does it: trainings and their steps, computed vectors,
    and evaluations (one per multiplier and split)."""
    todo = [m for m in methods if m.key not in skip]
    trained = [m.label for m in todo if m.trained]
    steps = config.get("max_steps") or TrainConfig(**{k: v for k, v in config.items() if k != "kind"}).epochs
    unit = "steps" if config.get("max_steps") else "epochs"
    evaluations = len(todo) * len(multipliers) * (2 if n_validation else 1)
    return (f"plan: {len(trained)} training(s) of at most {steps} {unit} ({', '.join(trained) or 'none'}), "
            f"{len(todo) - len(trained)} computed vector(s), {evaluations} evaluations over {n_test} test"
            + (f" and {n_validation} validation" if n_validation else "") + f" pairs; {n_fit} training pairs"
            + (f"; kept from before: {', '.join(sorted(skip))}" if skip else ""))


def validation_metric(metric: str, held: Sequence[PreferencePair]) -> str:
    """The metric a multiplier is chosen by on the validation split ``held``: ``metric`` where it can
    score those pairs, else the most specific target metric that can (:func:`default_metric`). A
    behaviour trained on open answers and measured by its A/B rate (BiPO's protocol) has open
    validation pairs, which no A/B rate can score: its multiplier is chosen by the behaviour shown
    in them (a demo behaviour) or by preference accuracy."""
    held = list(held)
    if not held or metric in applicable_metrics(held):
        return metric
    return default_metric(held)


def demo_comparison(
    country: str = "egypt",
    methods: Sequence[str] = tuple(METHODS),
    steps: int | None = None,
    size: str = "full",
    seed: int = 0,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    on_progress=None,
    progress: bool = False,
    device: str = "cpu",
    metric: str = "auto",
    form: str = "mcq",
    behaviour: str | None = None,
    **train_config,
) -> ComparisonResult:
    """The comparison on a task of the demo world: the culture of ``country``, trained on its
    non-localized training questions in ``form`` (``mcq`` or ``open_ended``) and measured on its
    held-out ones; or a ``behaviour`` (``power-seeking``, ``wealth-seeking``), trained on its open
    answers and measured by BiPO's protocol, its A/B questions (``test_infer``), or on its held-out
    open answers by a ``metric`` that scores those. ``auto``: the most specific metric of the first
    of these splits (:func:`~.evaluation.default_metric`), the answer letter's likelihood for MCQ.

    Each method trains with the demo's settings for the task and its kind
    (:func:`yapo_core.demo.training_settings`), for ``steps`` steps when given;
    ``train_config`` overrides any :class:`TrainConfig` field for all of them."""
    behaviours = [b.key for b in corpus.BEHAVIOURS]
    if behaviour is not None and behaviour not in behaviours:  # all before the world is built
        raise SettingsError(f"behaviour {behaviour!r} is not one of the demo world's: {', '.join(behaviours)}.")
    if behaviour is None and country not in corpus.TARGET_COUNTRIES:
        raise SettingsError(f"country {country!r} is not one of the demo world's target cultures: "
                            f"{', '.join(corpus.TARGET_COUNTRIES)}.")
    if form not in ("mcq", "open_ended"):
        raise SettingsError(f"form {form!r} is unknown; use mcq or open_ended.")
    if metric != "auto":
        get_metric(metric)
    chosen = [get_method(m).key for m in methods]
    world = build_demo_world(seed=seed, size=size)
    if behaviour is not None:
        task = world.task(behaviour)
        train, label = list(task.pairs("train")), f"demo {behaviour} (trained on open answers)"
        splits = {"test_infer": task.pairs("test_infer"), "test": task.pairs("test")}
    else:
        task = world.culture(country)
        train = list(task.pairs("train", form=form))
        label = f"demo culture-{country} (non-localized {'MCQ' if form == 'mcq' else 'open answers'})"
        splits = {"test": task.pairs("test", form=form)}
    test, metric = _demo_test_split(splits, metric, label)
    model, tokenizer = load_model(world.model_dir, device=device)
    sae = load_sae_for(path=str(world.sae_dir), model=model)  # beside the model's block, on its device
    kind = "culture" if behaviour is None else "behaviour"  # a culture's open answers train longer
    base = training_settings(train, task=kind)
    config = {**base, "epochs": 10_000, "seed": 11, **({"max_steps": steps} if steps else {}), **train_config}
    own = settings_by_method(train, chosen, keep=train_config, task=kind)  # the dense rate for open answers, unless set
    return compare_methods(model, tokenizer, sae, train, test, world.capability_measure(model, tokenizer), chosen,
                           multipliers, config, task=label, method_configs=own, on_progress=on_progress,
                           progress=progress, metric=metric)


def _demo_test_split(splits: Mapping[str, Sequence[PreferencePair]], metric: str, label: str):
    """``(pairs, metric)``: the first of a demo task's test ``splits`` that ``metric`` can score
    (``auto``: the first split, by its most specific metric), or an error naming what can."""
    if metric == "auto":
        first = list(next(iter(splits.values())))
        return first, default_metric(first)
    found = metric_splits({name: list(pairs) for name, pairs in splits.items()})
    if metric not in found:
        usable = [k for k in found if k in TARGET_METRICS]
        raise SettingsError(f"the {METRICS[metric].label} cannot score {label}: it needs {METRICS[metric].needs}. "
                            f"Metrics for this task: {', '.join(usable)}.")
    return list(splits[found[metric]]), metric
