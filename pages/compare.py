"""Compare: steered and unsteered answers side by side, streamed from one batched generate call."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from yapo_core.errors import SettingsError
from yapo_core.evaluation import METRICS
from yapo_core.generation import STEER_POSITIONS
from yapo_core.hooks import hook_point_from_name
from yapo_core.options import answer_letter, is_letter_answer, option_texts
from yapo_core.plots import multiplier_sweep
from yapo_core.steering import FORMULAS
from yapo_studio.session import Session
from yapo_studio.settings import current
from yapo_studio.zero_gpu import gpu

from .common import HEAVY, STEER_LABELS, AppContext, VectorPicker, esc, need, parse_multipliers, user_errors

EMPTY_ANSWER = "∅ (empty answer: the model ended its turn at once)"


def fluency_note(problem: str | None, multiplier: float, positions: str) -> str:
    """What the page says under the answers when the steered one derails while the unsteered one
    reads like text (``problem`` from :meth:`Session.fluency_problem`); empty otherwise."""
    if problem is None:
        return ""
    fixes = "a smaller multiplier" + (", or steering the prompt tokens only" if positions == "all" else "")
    loose = (" (it counts a loop by its share of an answer, so it lets a short run like this one pass)"
             if "in a row" in problem else "")
    return (f"⚠ **The steered answer does not read like text: {esc(problem)}.** At m = {multiplier:+.1f} this vector "
            f"derails the model's text. Try {fixes}; the Evaluate page's *fluent answers* metric shows, over the "
            f"test split, the multipliers where answers stay fluent{loose}.")


def verdict_note(session: Session, label: str, prompt: str, answers: dict[float, str]) -> str:
    """On a test prompt, which of its pair's answers each shown answer gives (``answers`` by
    multiplier), as the Evaluate page's metrics read it; empty for a prompt the user typed."""
    task = session.task_for(label)
    verdicts = task.verdicts(prompt, answers) if task else {}
    if not verdicts:
        return ""
    said = [f"{'unsteered' if not m else f'at m = {m:+.1f}'} {esc(verdict_phrase(*verdicts[m], m))}" for m in answers]
    return "**Against the test pair:** " + "; ".join(said) + "."


def verdict_phrase(side: str | None, phrase: str, m: float) -> str:
    """A verdict's phrase, marked ✓ where a steered answer (m > 0) gives the vector's target."""
    return phrase + (" ✓" if side == "chosen" and m > 0 else "")


def where_steering_applies(session: Session | None, label: str | None, positions: str = "all") -> str:
    """The sentence that says exactly where and how the chosen vector acts."""
    tokens = ("at **every token**: every prompt token (prefill) and every generated token" if positions == "all" else
              "at the **prompt tokens only** (prefill); the generated tokens run unsteered and read the steered "
              "prompt through attention (not the method's default: it keeps long answers fluent where a strong "
              "vector added at every new token derails them)")
    if session is None or not label or label not in session.vectors():
        return f"Steering applies at the output of one decoder block, {tokens}."
    v = session.entry(label).vector
    return (f"**Where steering applies:** **{hook_point_from_name(v.hook_name).where}** (`{esc(v.hook_name)}`), {tokens}, as "
            f"`{FORMULAS[v.kind]}`. Both columns come from one batched `generate` call with identical decoding "
            "settings and seed; at m = 0 the model is exactly unsteered.")


def prompt_choices(session: Session | None, label: str | None) -> dict:
    prompts = []
    if session is not None:
        try:
            prompts = [p.prompt for p in session.test_pairs(label if label in session.vectors() else None)]
        except SettingsError:
            prompts = []
    return gr.update(choices=[(_short(p), p) for p in prompts], value=None)


def expected_answer(session: Session | None, label: str | None, prompt: str | None) -> str:
    """What the picked test prompt's pair holds: the chosen answer (the vector's target) and the
    rejected one, to read the answers against (an MCQ answer is only a letter)."""
    if session is None or not prompt:
        return ""
    try:
        task = session.task_for(label if label in session.vectors() else None)
        pair = task.test_pair(prompt) if task else None
    except SettingsError:
        return ""
    if pair is None:
        return ""
    texts = option_texts(pair.prompt)

    def shown(answer: str) -> str:  # an option letter with its option's text: "H (Long distance running)"
        letter = answer_letter(answer) if is_letter_answer(answer) else None
        return _short(answer, 120) + (f" ({texts[letter[0]]})" if letter and letter[0] in texts else "")

    return (f"The test pair's **chosen** answer (the vector's target): {esc(shown(pair.chosen))} · "
            f"**rejected**: {esc(shown(pair.rejected))}")


def _short(prompt: str, width: int = 90) -> str:
    flat = " ".join(prompt.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def empty_grid() -> pd.DataFrame:
    """The grid before any answer: its columns, no rows."""
    return pd.DataFrame({"multiplier": [], "answer": [], "note": []})


def grid_rows(session: Session, label: str, text: str, multipliers: list[float], settings: dict):
    """The grid's rows as they stream: each multiplier's answer, and at the end a note on each: on a
    test prompt, which of its pair's answers it gives; for a steered answer that does not read like
    text where the unsteered one does, why (the unsteered answer is generated in the same batch when
    the grid does not ask for m = 0)."""
    answers = {}
    for answers in session.generate_stream(label, text, sorted({*multipliers, 0.0}), **settings):
        yield pd.DataFrame({"multiplier": multipliers, "answer": [answers.get(m, "") for m in multipliers],
                            "note": [""] * len(multipliers)})
    notes = {m: [] for m in multipliers}
    task = session.task_for(label)
    verdicts = task.verdicts(text, {m: answers.get(m, "") for m in multipliers}) if task else {}
    for m in multipliers:
        if m in verdicts:  # a test prompt: which of its pair's answers this one gives
            notes[m].append(verdict_phrase(*verdicts[m], m))
        problem = session.fluency_problem(label, answers.get(m, ""), answers.get(0.0, ""),
                                          settings["max_new_tokens"]) if m else None
        if problem:
            notes[m].append(f"⚠ does not read like text: {problem}")
    yield pd.DataFrame({"multiplier": multipliers, "answer": [answers.get(m) or EMPTY_ANSWER for m in multipliers],
                        "note": ["; ".join(notes[m]) for m in multipliers]})


def build(ctx: AppContext, state: gr.State) -> VectorPicker:
    """The page's components and callbacks; returns its vector picker, refreshed when the tab opens."""
    with gr.Row():
        picker = VectorPicker.build("compare-vector", scale=2)
        vector = picker.dropdown
        test_prompt = gr.Dropdown([], label="A prompt from the test split", elem_id="test-prompt", scale=3)
    where = gr.Markdown(where_steering_applies(None, None), elem_id="where-steering")
    prompt = gr.Textbox(label="Prompt", lines=3, elem_id="compare-prompt",
                        placeholder="Type a prompt, or pick one from the test split above.")
    expected = gr.Markdown("", elem_id="expected-answer")
    multiplier = gr.Slider(-2, 2, value=1.0, step=0.1, label="Multiplier m", elem_id="multiplier")
    positions = gr.Radio([(STEER_LABELS[k], k) for k in STEER_POSITIONS], value="all", label="Steer",
                         elem_id="steer-positions")
    with gr.Accordion("Decoding (identical for every column)", open=False):
        with gr.Row():
            cap = max(8, min(256, current().max_new_tokens))
            max_new = gr.Slider(8, cap, value=min(64, cap), step=8, label="Max new tokens")
            sample = gr.Checkbox(False, label="Sample (off: greedy)")
            temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.1, label="Temperature (when sampling)")
            seed = gr.Number(0, label="Seed", precision=0)
    run = gr.Button("Generate", variant="primary", elem_id="generate")
    with gr.Row():
        plain = gr.Textbox(label="Unsteered (m = 0)", lines=8, interactive=False, elem_id="unsteered")
        steered = gr.Textbox(label="Steered (m = +1.0)", lines=8, interactive=False, elem_id="steered")
    note = gr.Markdown("", elem_id="fluency-note")
    with gr.Accordion("Grid over several multipliers", open=False):
        with gr.Row():
            grid_ms = gr.Textbox("-2, -1, 0, 1, 2", label="Multipliers", scale=3)
            grid_btn = gr.Button("Generate grid", scale=1)
        grid = gr.Dataframe(headers=["multiplier", "answer", "note"], interactive=False, wrap=True, elem_id="grid")
    with gr.Accordion("Sweep: held-out preference accuracy against the multiplier", open=False):
        gr.Markdown("Share of the test split's pairs whose chosen answer gains more log-probability than the rejected "
                    "one under the vector (at m = 0 no pair gains anything, so the share is 0). It can rise at "
                    "negative m too: a reversed vector that pushes the rejected answer down more than the chosen "
                    "one counts as moving towards the chosen answer.")
        with gr.Row():
            sweep_ms = gr.Textbox("-2, -1, -0.5, 0, 0.5, 1, 2", label="Multipliers", scale=3)
            sweep_btn = gr.Button("Sweep", scale=1)
        sweep_plot = gr.Plot(label="Sweep")

    def decoding(max_new_, sample_, temperature_, seed_, positions_):
        return dict(max_new_tokens=int(max_new_), do_sample=bool(sample_), temperature=float(temperature_),
                    seed=int(seed_ or 0), steer_positions=positions_ or "all")

    def no_answers():  # answers to another prompt or vector must not stand under this one
        return "", "", ""

    @user_errors(cleared=no_answers)
    @gpu  # ZeroGPU attaches a GPU for this call; a no-op elsewhere
    def on_generate(session, label, text, m, max_new_, sample_, temperature_, seed_, positions_):
        session = need(session)
        m = round(float(m), 2)
        title = f"Steered (m = {m:+.1f})" if m else "Steered (m = 0: no hook, the unsteered answer)"
        answers = {}
        settings = decoding(max_new_, sample_, temperature_, seed_, positions_)
        for answers in session.generate_stream(label, text, [0.0, m], **settings):
            yield answers.get(0.0, ""), gr.update(value=answers.get(m, ""), label=title), ""
        plain_, steered_ = answers.get(0.0, ""), answers.get(m, "")
        problem = session.fluency_problem(label, steered_, plain_, settings["max_new_tokens"]) if m else None
        notes = [verdict_note(session, label, text, {0.0: plain_, **({m: steered_} if m else {})}),
                 fluency_note(problem, m, settings["steer_positions"])]
        # An empty box would look as if nothing ran: say so when a model ended its turn at once.
        yield (plain_ or EMPTY_ANSWER), gr.update(value=steered_ or EMPTY_ANSWER, label=title), \
            "\n\n".join(n for n in notes if n)

    @user_errors
    @gpu  # ZeroGPU attaches a GPU for this call; a no-op elsewhere
    def on_grid(session, label, text, ms, max_new_, sample_, temperature_, seed_, positions_):
        session = need(session)
        yield from grid_rows(session, label, text, parse_multipliers(ms),
                             decoding(max_new_, sample_, temperature_, seed_, positions_))

    @user_errors
    @gpu  # ZeroGPU attaches a GPU for this call; a no-op elsewhere
    def on_sweep(session, label, ms):
        session = need(session)
        curves = session.evaluate([label], "preference", parse_multipliers(ms))
        return multiplier_sweep(curves, y_title=METRICS["preference"].label)

    def on_vector(session, label, positions_):  # nothing made with another vector stays under this one
        return (where_steering_applies(session, label, positions_), prompt_choices(session, label), *no_answers(),
                empty_grid(), None)

    heavy = dict(concurrency_id=HEAVY, concurrency_limit=ctx.heavy_jobs)
    inputs = [state, vector, prompt, multiplier, max_new, sample, temperature, seed, positions]
    # The button is off while the answers stream, so a second click cannot start another generation,
    # and it comes back on when the call ends, with or without an error.
    run.click(lambda: gr.update(interactive=False), None, run, queue=False) \
        .then(on_generate, inputs, [plain, steered, note], **heavy) \
        .then(lambda: gr.update(interactive=True), None, run, queue=False)
    grid_btn.click(on_grid, [state, vector, prompt, grid_ms, max_new, sample, temperature, seed, positions], grid, **heavy)
    sweep_btn.click(on_sweep, [state, vector, sweep_ms], sweep_plot, **heavy)
    vector.change(on_vector, [state, vector, positions], [where, test_prompt, plain, steered, note, grid, sweep_plot])
    positions.change(where_steering_applies, [state, vector, positions], where)
    test_prompt.change(lambda p: gr.update(value=p) if p else gr.update(), test_prompt, prompt)
    test_prompt.change(expected_answer, [state, vector, test_prompt], expected)
    # a prompt typed by the user is no test prompt: the list and the expected answer let go of theirs
    prompt.input(lambda: (gr.update(value=None), ""), None, [test_prompt, expected])
    return picker
