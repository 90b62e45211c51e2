"""Train: hyper-parameters (the paper's defaults), Start/Stop, live curves of every run."""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr

from yapo_core.errors import SettingsError
from yapo_core.objectives import ENGINES
from yapo_core.options import MCQ_REJECTED, sets_against_other_options
from yapo_core.plots import NOISY_METRICS, SMOOTH_FROM, run_color, smoothed, training_curves
from yapo_core.training import TrainConfig
from yapo_studio.runs import CHUNK_SECONDS, Run, chunk_seconds, format_seconds
from yapo_studio.session import Session
from yapo_studio.zero_gpu import on_zero_gpu

from .common import caveat_text, esc, in_app_terms, need, number, user_errors

DEFAULTS = TrainConfig()


def zero_gpu_note() -> str:
    """Shown on ZeroGPU Spaces, where a GPU exists only inside ``spaces.GPU`` calls."""
    seconds = chunk_seconds() or CHUNK_SECONDS
    return (f"ℹ **This Space runs on ZeroGPU**, which lends a GPU one call at a time: training runs as a "
            f"series of GPU calls of about {seconds:g} s of steps each. The curves update after each call, "
            "**Stop** takes effect when the current call ends, and each call first re-reads the training "
            "pairs' activations. Every call counts against your ZeroGPU quota; for long runs on hub models, "
            "use a Space with a dedicated GPU or `python -m yapo_core train`, and load the `.safetensors` "
            "file on the Export page.")


POLL_SECONDS = 1.0  # the run lines refresh once a second while a run is active
PLOT_SECONDS = 3.0  # and the curves at most every 3 s, then once more when the runs stop: redrawing the
# figure costs the browser a large share of a core, which on a small machine the training needs


@dataclass
class TrainPage:
    summary: gr.Markdown
    status: gr.HTML
    curves: gr.Plot
    timer: gr.Timer
    which: gr.Dropdown
    defaults: list  # the fields a preset may set (PRESET_FIELDS), in that order
    filled_for: gr.State  # the preset, task and method this page filled them in for (defaults_key)


def setup_summary(session: Session | None) -> str:
    if session is None or session.bundle is None:
        return "⚠ Load a model and a task on the **Setup** page first."
    task = esc(session.task.describe()) if session.task else "⚠ no task loaded (Setup page)"
    return (f"**Model** {esc(session.bundle.label)} · **Task** {task} · **Method** {esc(session.method.label)} "
            f"(change it on Setup; the runs of every method are overlaid below)" + caveat_text(session.method_caveat()))


def run_html(i: int, run: Run) -> str:
    total = run.total_steps or 0
    bar = f"<progress max='{max(total, 1)}' value='{run.step}'></progress>" if total else ""
    eta = run.eta()
    bits = [f"step {run.step}/{total}" if total else "", f"≈ {format_seconds(eta)} left" if eta is not None else ""]
    history = run.history
    if history:
        m = history[-1]
        norm = f"{m.vector_norm:,.0f}" if m.vector_norm >= 99.95 else f"{m.vector_norm:#.3g}"  # 1.00, 0.585, 49.4, 170
        # one batch's figures each step: on a long run, quote the moving averages the curves draw
        noisy = {f: smoothed([getattr(h, f) for h in history])[-1] if len(history) >= SMOOTH_FROM else getattr(m, f)
                 for f in NOISY_METRICS}
        which = " (moving averages)" if len(history) >= SMOOTH_FROM else " (this batch)"
        bits.append(f"loss {noisy['loss']:.4f} · reward acc {noisy['reward_accuracy']:.2f} · "
                    f"margin {noisy['margin']:+.3f}{which} · ‖v‖ {norm} · L0 {m.l0}")
    if run.status in ("finished", "stopped") and run.elapsed():
        bits.append(f"took {format_seconds(run.elapsed())}")
    error = f"<div class='run-error'>{esc(run.error)}</div>" if run.error else ""
    error += "".join(f"<div class='run-note'>⚠ {esc(in_app_terms(note))}</div>" for note in run.notes)
    detail = " · ".join(esc(b) for b in bits if b)
    return (f"<div class='run-line' data-status='{run.status}'><span class='run-dot' style='background:{run_color(i)}'></span>"
            f"<b>{esc(run.name)}</b> <span class='run-status {run.status}'>{run.status}</span> {bar} "
            f"<span class='run-detail'>{detail}</span>{error}</div>")


def runs_html(session: Session | None) -> str:
    if session is None or not session.runs:
        return "<div class='run-line'>No runs yet.</div>"
    return "".join(run_html(i, r) for i, r in enumerate(session.run_list()))


def curves(session: Session | None):
    runs = session.run_list() if session is not None else []
    return training_curves([(r.name, r.history) for r in runs])


def any_active(session: Session | None) -> bool:
    return session is not None and any(r.active for r in session.run_list())


def snapshot(session: Session | None):
    """Status, curves and whether to keep polling (a run is active).

    Whether to poll is read first: a run that ends while the status is drawn then gets one more
    tick, which shows it ended. Read last, it could switch polling off under a status drawn while
    the run was still running, and the page would show "running" for good."""
    active = any_active(session)
    return runs_html(session), curves(session), gr.Timer(active=active)


def curves_shown(session: Session | None) -> tuple:
    """What the curves show: each run's name, logged steps and status."""
    runs = session.run_list() if session is not None else ()
    return tuple((r.name, len(r.history), r.status) for r in runs)


def redraw_due(shown: tuple, drawn: tuple | None, active: bool, now: float) -> bool:
    """Whether a tick redraws the curves: they changed since ``drawn`` (what they showed and when),
    and either ``PLOT_SECONDS`` have passed or no run is active (the final state is always drawn)."""
    last, at = drawn or (None, float("-inf"))
    return shown != last and (not active or now - at >= PLOT_SECONDS)


def tick(session: Session | None, drawn: tuple | None, now: float | None = None):
    """One timer tick: the run lines, the curves when :func:`redraw_due` (else left as they are),
    polling while any run is active, and what the curves now show. Whether to poll is read first
    (see :func:`snapshot`)."""
    active = any_active(session)
    shown, now = curves_shown(session), time.monotonic() if now is None else now
    if redraw_due(shown, drawn, active, now):
        return runs_html(session), curves(session), gr.Timer(active=active), (shown, now)
    return runs_html(session), gr.skip(), gr.Timer(active=active), drawn


def build(state: gr.State) -> TrainPage:
    summary = gr.Markdown(setup_summary(None), elem_id="train-summary")
    gr.Markdown(zero_gpu_note(), visible=on_zero_gpu(), elem_id="zero-gpu-note")
    with gr.Accordion("Hyper-parameters (defaults: the public YaPO/BiPO runs, or the preset's own)", open=True):
        with gr.Row():
            lr = gr.Number(DEFAULTS.lr, label="Learning rate")
            warmup = gr.Number(DEFAULTS.warmup_steps, label="Warm-up steps", precision=0)
            epochs = gr.Number(DEFAULTS.epochs, label="Epochs", precision=0)
            max_steps = gr.Number(0, label="Max steps (0: all epochs)", precision=0)
            batch = gr.Number(DEFAULTS.batch_size, label="Batch size", precision=0)
        with gr.Row():
            beta = gr.Number(DEFAULTS.beta, label="β")
            clip = gr.Number(DEFAULTS.grad_clip, label="Gradient clipping")
            decay = gr.Number(DEFAULTS.weight_decay, label="Weight decay")
            seed = gr.Number(DEFAULTS.seed, label="Seed", precision=0)
            max_length = gr.Number(DEFAULTS.max_length, label="Max length (tokens)", precision=0)
            engine = gr.Dropdown(list(ENGINES), value=DEFAULTS.engine, label="Engine",
                                 info="fast = cached activations, tail blocks only; same loss and gradient")
            mcq_rejected = gr.Dropdown(list(MCQ_REJECTED), value=DEFAULTS.mcq_rejected, label="MCQ rejected answers",
                                       info="every_option: the chosen letter must beat every option, not only "
                                            "the given (default) answer")
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="start-run")
        stop = gr.Button("Stop", variant="stop", elem_id="stop-runs")  # every active run of this session
    status = gr.HTML(runs_html(None), elem_id="run-status")
    plot = gr.Plot(curves(None), label="Training curves", elem_id="train-curves")
    timer = gr.Timer(POLL_SECONDS, active=False)
    drawn = gr.State(None)  # what the curves showed when the timer last drew them, and when
    with gr.Accordion("Remove a run or a loaded vector file", open=False):
        with gr.Row():
            which = gr.Dropdown([], label="Vector", elem_id="remove-vector")
            remove = gr.Button(REMOVE, size="sm", elem_id="remove")
    armed = gr.State(None)  # the vector the next click on Remove removes (see remove_click)

    @user_errors
    def on_start(session, lr_, warmup_, epochs_, max_steps_, batch_, beta_, clip_, decay_, seed_, max_length_, engine_,
                 mcq_rejected_):
        session = need(session)
        config = TrainConfig(
            kind=session.method.kind, lr=number(lr_, "Learning rate"),
            warmup_steps=number(warmup_, "Warm-up steps", int, 0), epochs=number(epochs_, "Epochs", int, 1),
            max_steps=number(max_steps_, "Max steps", int, 0, " (all epochs)") or None,
            batch_size=number(batch_, "Batch size", int, 1), beta=number(beta_, "β"),
            grad_clip=number(clip_, "Gradient clipping"), weight_decay=number(decay_, "Weight decay"),
            seed=number(seed_, "Seed", int), max_length=number(max_length_, "Max length", int, 8),
            engine=engine_, mcq_rejected=mcq_rejected_,
        )
        session.start_run(config)
        return setup_summary(session), *snapshot(session)[:2], gr.Timer(active=True), removable(session)

    @user_errors
    def on_stop(session):
        need(session).stop_all()
        return snapshot(session)

    hparams = [lr, warmup, epochs, max_steps, batch, beta, clip, decay, seed, max_length, engine, mcq_rejected]
    # Off while a start is handled, so that a double click does not queue the same run twice.
    start.click(lambda: gr.update(interactive=False), None, start, queue=False) \
        .then(on_start, [state, *hparams], [summary, status, plot, timer, which]) \
        .then(lambda: gr.update(interactive=True), None, start, queue=False)
    timer.tick(tick, [state, drawn], [status, plot, timer, drawn], show_progress="hidden", concurrency_limit=None)
    stop.click(on_stop, state, [status, plot, timer])
    remove.click(user_errors(remove_click), [state, which, armed], [status, plot, timer, which, remove, armed])
    which.change(lambda: (disarmed(), None), None, [remove, armed])
    return TrainPage(summary, status, plot, timer, which, [lr, warmup, epochs, max_steps, batch, mcq_rejected],
                     gr.State(None))


REMOVE = "Remove"


def disarmed() -> dict:
    """The Remove button as it is before a first click arms it."""
    return gr.update(value=REMOVE, variant="secondary")


def remove_click(session: Session | None, name: str | None, armed: str | None):
    """Remove asks twice: a first click on a chosen vector arms the button for it (a run's vector
    may have taken long to train), a second click removes it; choosing another vector disarms it.
    Updates the status, plot, timer, vector list, button and the armed vector."""
    session = need(session)
    if not name:
        raise SettingsError("choose the run or vector file to remove in the list beside Remove.")
    if armed != name:
        return (gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                gr.update(value=f"Click again to remove “{name}”", variant="stop"), name)
    session.delete(name)
    return (*snapshot(session), removable(session), disarmed(), None)


def removable(session: Session | None) -> dict:
    """Runs and loaded vector files, for the Remove control."""
    names = [r.name for r in session.run_list()] + list(session.files) if session is not None else []
    return gr.update(choices=names, value=None)


PRESET_FIELDS = ("lr", "warmup_steps", "epochs", "max_steps", "batch_size", "mcq_rejected")


def defaults_key(session: Session | None) -> tuple | None:
    """The loaded preset, task and method, whose recommended hyper-parameters the page shows."""
    if session is None or session.preset is None:
        return None
    return session.preset.key, session.task.label if session.task is not None else None, session.method.key


def preset_defaults(session: Session | None, filled_for: tuple | None = None) -> list:
    """The preset's recommended hyper-parameters for the loaded task and method, unless this page
    filled them in for the same preset, task and method already (``filled_for``, the page's own
    memory: a reloaded page is filled again), so that later visits keep what the user typed."""
    key = defaults_key(session)
    if key is None or filled_for == key:
        return [gr.update() for _ in PRESET_FIELDS]
    config = session.default_config()
    updates = [gr.update(value=(getattr(config, f) or 0) if f == "max_steps" else getattr(config, f)) for f in PRESET_FIELDS]
    # the choice of rejected answers acts on multiple-choice pairs only: shown where the task has them
    acts = session.task is None or any(sets_against_other_options(p) for p in session.task.train.pairs)
    updates[PRESET_FIELDS.index("mcq_rejected")] = gr.update(value=config.mcq_rejected, visible=acts)
    return updates


def on_open(session: Session | None, filled_for: tuple | None = None):
    """When the tab is shown: the setup summary, the runs, polling while any is active, the loaded
    preset's recommended hyper-parameters (see :func:`preset_defaults`) and what they were filled for."""
    return (setup_summary(session), *snapshot(session), removable(session), *preset_defaults(session, filled_for),
            defaults_key(session))
