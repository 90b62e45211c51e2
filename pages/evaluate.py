"""Evaluate: a metric against the multiplier, one line per vector (e.g. YaPO, BiPO, CAA and SAS
on one task), and the capability check with and without a vector."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from yapo_core.errors import SettingsError
from yapo_core.evaluation import GENERATING_METRICS, METRICS, SPECIFIC_FIRST, TARGET_METRICS
from yapo_core.generation import STEER_POSITIONS
from yapo_core.methods import METHODS
from yapo_core.plots import multiplier_sweep, set_title
from yapo_studio.session import Session
from yapo_studio.zero_gpu import gpu

from .common import (
    HEAVY,
    STEER_LABELS,
    AppContext,
    caveat_text,
    need,
    number,
    parse_multipliers,
    user_errors,
    vector_labels,
    vector_options,
)

HELP = """Which multiplier, and which method? Each vector is measured on **its own task's held-out data** at every
multiplier (m = 0 is the unsteered model). The metrics offered are those that apply to the chosen vectors' tasks,
each on the split it needs: *MCQ accuracy* reads the most likely answer letter (MCQ tasks), or the letter of the
greedy reply (*generated answer*; a reply with no option letter counts as wrong); *behaviour rate* is
BiPO's A/B evaluation (its `test_infer` questions); *behaviour shown in open answers* judges a demo behaviour's
greedy answers to its held-out offers (accepted for the behaviour's own reasons); *culture shown in open answers* finds
a demo culture's short answer ("Daura suruwal") in greedy answers to its held-out questions; *preference accuracy* works for any
pairs (the share whose chosen answer gains more log-probability than the rejected one under the vector; 0 at m = 0,
where nothing gains: ties count as failures, as in training; it can rise at negative m too, where the reversed vector
pushes the rejected answer down more than the chosen one); *generation
accuracy* finds the whole expected answer in greedy open answers; the metrics that generate steer every token (the method)
or only the prompt tokens, as chosen; *fluent answers* is the share of
greedy steered answers that still read like text (no token loop, and the turn ends where the unsteered answer's does):
it shows how far a vector can be pushed before it derails the text, whatever the task. The paper reports CAA and
SAS peaking near m = 0.5 and collapsing at 1 and above, while YaPO keeps improving up to 2. For MCQ, a dashed line
marks the accuracy of answering one letter everywhere: a vector that only raises that letter reaches it."""


def metric_choices(session: Session | None, labels: list[str] | None, current: str | None = None) -> dict:
    """The metrics that apply to every chosen vector's task, each labelled with its split; with no
    vector chosen, those of the loaded task (what a method comparison measures)."""
    found = session.metrics_for(labels or []) if session is not None and labels else {}
    task = getattr(session, "task", None)
    found = found or (task.metrics() if task is not None and not labels else {})
    found = found or {key: "test" for key in METRICS}  # nothing chosen or loaded yet: offer them all
    choices = [(f"{METRICS[k].label} · {split}", k) for k, split in found.items()]
    # the task's own metric first (behaviour rate, MCQ accuracy, ...), preference accuracy last
    value = current if current in found else next((k for k in SPECIFIC_FIRST if k in found), next(iter(found)))
    return gr.update(choices=choices, value=value, info=partly_applicable(session, labels or [], found))


def partly_applicable(session: Session | None, labels: list[str], found: dict) -> str:
    """Why a metric one ticked vector's task has is not offered: it does not apply to another's
    ("" when nothing is left out: Gradio drops a None update, which would leave an earlier line)."""
    if session is None or len(labels) < 2:
        return ""
    each = [session.metrics_for([label]) for label in labels]
    some = [k for k in METRICS if k not in found and any(k in own for own in each)]
    if not some:
        return ""
    return ("Offered: the metrics every ticked vector's task has. Tick only the vectors of one task for "
            + ", ".join(METRICS[k].label.split(" (")[0] for k in some) + ".")


def vector_checklist(session: Session | None, chosen: list[str] | None = None, metric: str | None = None,
                     listed: list[str] | None = None):
    """The vector checklist, the metrics for what it checks, and the labels it lists: the vectors
    added since ``listed`` (the labels it last showed) are checked alone, else ``chosen`` as far as
    it still exists, else every vector."""
    labels, added = vector_labels(session, listed)
    keep = added or [c for c in (chosen or []) if c in labels] or labels
    return gr.update(choices=vector_options(session, labels), value=keep), metric_choices(session, keep, metric), labels


def loaded_task(session: Session | None) -> str | None:
    """The label of the session's loaded task, if any."""
    task = getattr(session, "task", None)
    return task.label if task is not None else None


def comparison_for(session: Session | None, shown: str | None):
    """The method comparison's table, plot, task and note as they are while they belong to the
    loaded task, else cleared: a comparison never stands under another task than its own."""
    if shown is None or shown == loaded_task(session):
        return gr.update(), gr.update(), shown, gr.update()
    return gr.update(value=None, visible=False), None, None, ""


def comparison_note(session: Session, methods) -> str:
    """What a user must know about the compared methods on the loaded task (the task's caveat for
    each, once), as a warning paragraph."""
    return caveat_text(session.method_caveat(*methods)).strip()


def build(ctx: AppContext, state: gr.State) -> tuple[gr.CheckboxGroup, gr.Radio, gr.State, tuple]:
    """The page's components and callbacks; returns its vector list, metric choice and the labels
    the list showed last, refreshed when the tab opens, and the comparison's table, plot, the
    task they show and its note (:func:`comparison_for`)."""
    gr.Markdown(HELP)
    vectors = gr.CheckboxGroup([], label="Vectors", elem_id="eval-vectors")
    listed = gr.State([])
    with gr.Row():
        metric = gr.Radio([(m.label, m.key) for m in METRICS.values()], value="mcq",
                          label="Metric", elem_id="eval-metric", scale=3)
        positions = gr.Radio([(STEER_LABELS[k], k) for k in STEER_POSITIONS], value="all", visible=False,
                             label="Steer (generated answers)", elem_id="eval-steer", scale=1)
        multipliers = gr.Textbox("-2, -1, -0.5, 0, 0.5, 1, 2", label="Multipliers", scale=2)
    run = gr.Button("Sweep", variant="primary", elem_id="eval-sweep")
    plot = gr.Plot(label="Metric against the multiplier", elem_id="eval-plot")
    with gr.Accordion("Compare methods: YaPO, BiPO, CAA and SAS on the loaded task", open=False):
        gr.Markdown("Each method is trained or computed on the task's training pairs less a 20% validation split; "
                    "its multiplier is **chosen on the validation split** (ringed in the plot) and the chosen "
                    "metric above is reported on the held-out data at every multiplier above. YaPO and BiPO train "
                    "with the Train page's preset defaults (a few minutes on the demo world). It takes a training "
                    "slot, in turn with the runs, and **Stop** on Train stops it (on a ZeroGPU Space it is a GPU call of "
                    "its own, which ends with its time).")
        with gr.Row():
            cmp_methods = gr.CheckboxGroup([(m.label, m.key) for m in METHODS.values()], value=list(METHODS),
                                           label="Methods", elem_id="cmp-methods", scale=3)
            cmp_steps = gr.Number(0, label="Training steps (0: the preset's)", precision=0, scale=1)
            cmp_btn = gr.Button("Compare methods", elem_id="cmp-run", scale=1)
        cmp_table = gr.Dataframe(interactive=False, wrap=True, elem_id="cmp-table", visible=False)  # shown with its rows
        cmp_plot = gr.Plot(label="Metric against the multiplier, every method", elem_id="cmp-plot")
        cmp_note = gr.Markdown(elem_id="cmp-note")
        cmp_task = gr.State(None)
    with gr.Accordion("Capability check: general questions with and without the vector", open=False):
        gr.Markdown("The demo world's general questions (arithmetic, facts) answered greedily; for hub models a small "
                    "MMLU subset (needs the Hub). Reported as the change when the vector is applied.")
        with gr.Row():
            cap_m = gr.Slider(-2, 2, value=1.0, step=0.5, label="Multiplier")
            cap_btn = gr.Button("Check")
        cap_table = gr.Dataframe(interactive=False, elem_id="capability", visible=False)  # shown with its rows

    @user_errors(cleared=lambda: None)  # a refused sweep leaves no earlier sweep as if it were its result
    @gpu  # ZeroGPU attaches a GPU for this call; a no-op elsewhere
    def on_sweep(session, labels, metric_, ms, positions_):
        session = need(session)
        curves = session.evaluate(labels, metric_, parse_multipliers(ms), steer_positions=positions_ or "all")
        fig = multiplier_sweep(curves, y_title=METRICS[metric_].label, references=session.letter_baselines(labels, metric_))
        if metric_ in GENERATING_METRICS:  # where the vector acts changes these answers: the plot says which
            steering = "every token" if (positions_ or "all") == "all" else "the prompt tokens only"
            set_title(fig, f"{METRICS[metric_].label} — steering {steering}")
        return fig

    @user_errors
    @gpu  # ZeroGPU attaches a GPU for this call; a no-op elsewhere
    def on_capability(session, labels, m):
        table = pd.DataFrame(need(session).capability(labels, float(m))).round(3)
        table["change"] = table["change"].map(lambda x: f"{x:+.3f}")  # signed, as the method comparison shows it
        return gr.update(value=table, visible=True)

    @user_errors
    @gpu  # ZeroGPU attaches a GPU for this call; a no-op elsewhere
    def on_compare(session, metric_, ms, methods_, steps_, progress=gr.Progress()):
        session = need(session)
        steps = number(0 if steps_ is None else steps_, "Training steps", int, 0, " (the preset's)")
        if not methods_:
            raise SettingsError("choose at least one method to compare.")
        if metric_ not in TARGET_METRICS:
            raise SettingsError(f"the comparison uses the Metric chosen above, and “{METRICS[metric_].label}” does not "
                                "measure the task's target, so no multiplier can be chosen on it; choose another "
                                "Metric above.")
        said = []  # the stage: a plan, then each method's vector and sweep (a bar with text; no bar shows no text)

        def say(msg: str) -> None:
            said.append(msg)
            progress(min(0.95, len(said) / (2 * len(methods_) + 2)), desc=msg)

        result = session.compare(metric_, parse_multipliers(ms), methods_, max_steps=steps or None, on_progress=say)
        sweep_fig, _ = result.figures()
        return (gr.update(value=pd.DataFrame(result.table()), visible=True), sweep_fig, loaded_task(session),
                comparison_note(session, methods_))

    heavy = dict(concurrency_id=HEAVY, concurrency_limit=ctx.heavy_jobs)
    cmp_btn.click(on_compare, [state, metric, multipliers, cmp_methods, cmp_steps], [cmp_table, cmp_plot, cmp_task, cmp_note],
                  **heavy)
    run.click(on_sweep, [state, vectors, metric, multipliers, positions], plot, **heavy)
    cap_btn.click(on_capability, [state, vectors, cap_m], cap_table, **heavy)
    vectors.input(metric_choices, [state, vectors, metric], metric)
    metric.change(lambda m: gr.update(visible=m in GENERATING_METRICS), metric, positions)  # only these generate
    for control in (vectors, metric, positions):  # a sweep of another selection does not stay under this one
        control.change(lambda: None, None, plot)
    vectors.change(lambda: gr.update(value=None, visible=False), None, cap_table)  # nor another vector's capability
    return vectors, metric, listed, (cmp_table, cmp_plot, cmp_task, cmp_note)
