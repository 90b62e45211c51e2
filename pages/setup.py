"""Setup: choose the model + SAE (presets from assets/presets.json), the task, and the method."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from yapo_core.demo import TASK_KINDS
from yapo_core.hooks import hook_point_from_name
from yapo_core.methods import METHODS, Method
from yapo_studio.session import Session
from yapo_studio.settings import current
from yapo_studio.tasks import (
    DATA_SUFFIXES,
    TaskSpec,
    demo_task_kinds,
    demo_task_label,
    demo_world_state,
    preview_file,
    spoken,
)

from .common import HEAVY, AppContext, caveat_text, esc, in_app_terms, need, user_errors

SOURCES = [
    ("Demo world", "demo"),
    ("Culture: Deep-Culture-Lense (Hugging Face)", "culture"),
    ("Behaviour: BiPO data (GitHub)", "behaviour"),
    ("Upload a CSV / TSV / JSONL / JSON / Parquet file", "file"),
]
ALL_COUNTRIES = "(all countries)"
AUTO = "(auto)"
DATA_TYPES = list(DATA_SUFFIXES)


def mapping_reset(choices: list[str]) -> list[dict]:
    """The three column-mapping dropdowns back on (auto), with ``choices``: one update each, since
    Gradio takes the value out of an update it applies (a shared one would reset the first only)."""
    return [gr.update(choices=choices, value=AUTO) for _ in range(3)]


def demo_task_update() -> dict:
    """The demo world's tasks (a culture task preselected), or none before it is built."""
    kinds = demo_task_kinds()
    value = next((n for n, kind in kinds.items() if kind == "culture"), next(iter(kinds), None))
    return gr.update(choices=[(demo_task_label(n, kind), n) for n, kind in kinds.items()], value=value)


def shows_culture_options(source: str, demo_name: str | None) -> bool:
    """Whether the prompt and answer-form choices apply: to culture tasks, the demo world's among them
    (a demo behaviour task has its own splits, open answers and A/B questions)."""
    return source == "culture" or (source == "demo" and (not demo_name or TASK_KINDS.get(demo_name) == "culture"))


PUBLIC_CUSTOM_NOTE = ("A Hugging Face id of a supported causal LM and an SAE by sae-lens release + id, from those this "
                      "app allows; or only a layer (BiPO without an SAE).")
"""The Custom preset's note in a public app, which loads no local folder."""


def preset_notes(ctx: AppContext, key: str) -> str:
    p = ctx.catalog.preset(key)
    note = PUBLIC_CUSTOM_NOTE if p.custom and current().public else p.notes
    parts = [esc(note)] if note else []
    if p.model:
        sae = f"`{p.sae_release}` / `{p.sae_id}`" if p.sae_release else "none"
        parts.append(f"Model `{p.model}` · SAE {sae} · layer {p.layer} · {p.dtype}")
    if p.gated:
        parts.append("**Gated** on Hugging Face: accept the licence on its page and set `HF_TOKEN` before starting the app.")
    return "\n\n".join(parts)


def method_text(method: Method) -> str:
    """What a method makes and how its vector is applied."""
    return f"{method.summary[:1].upper()}{method.summary[1:]}; applied as `{method.formula}`."  # a sentence


def missing_sae(session: Session) -> str:
    """What to do when the chosen method works in an SAE's latents and the loaded model has none."""
    b = session.bundle
    if b is None or b.sae is not None or session.method.kind != "sparse":
        return ""
    return (f"{session.method.label} works in an SAE's latents, and this model was loaded without an SAE: load one "
            "with the model (step 1), or choose BiPO or CAA.")


def bundle_summary(session: Session) -> str:
    b = session.bundle
    where = hook_point_from_name(b.hook_name).where if b.hook_name else f"the output of block {b.layer}"
    return f"✓ **Loaded** {esc(b.label)}: {esc(b.describe())}. Vectors steer **{where}**."


def model_summary(session: Session) -> str:
    """Setup's line on the loaded model, with what to do when the method needs an SAE it lacks."""
    return bundle_summary(session) + caveat_text(missing_sae(session))


def method_summary(session: Session) -> str:
    """Setup's line on the chosen method: what it makes, and its caveats on the loaded model and task."""
    return method_text(session.method) + caveat_text(session.method_caveat()) + caveat_text(missing_sae(session))


def pairs_frame(session: Session, n: int = 5) -> pd.DataFrame:
    pairs = session.task.train.pairs[:n]
    return pd.DataFrame({"prompt": [p.prompt for p in pairs], "chosen": [p.chosen for p in pairs],
                         "rejected": [p.rejected for p in pairs]})


def task_summary(session: Session) -> str:
    """Setup's line on the loaded task: what it is, the loader's notes and the method's caveat on it."""
    task = session.task
    notes = "".join(f"\n\n⚠ {esc(in_app_terms(note))}" for note in task.notes())
    return f"✓ **Task loaded**: {esc(task.describe())}{notes}{caveat_text(task.caveat_for(session.method.key))}"


TASK_CONTROLS = ("source", "name", "country", "localization", "form", "behaviour")
"""The task fields :func:`restored` sets from the loaded task's spec, in the order Setup lists them."""


NO_MODEL = "No model loaded yet."


def no_model_status() -> str:
    """Setup's model line before a model is loaded, saying where the demo world stands: a page
    reloaded during the first build (or opened beside one) must not read as if nothing ran."""
    state = demo_world_state()
    if state == "ready":
        return NO_MODEL + " The demo world is built: with the demo preset, **Load model** takes seconds."
    if state == "building":
        return (NO_MODEL + " **The demo world is being built** (started before this page was opened or reloaded): "
                "press **Load model** with the demo preset to wait for it; the model loads when the build ends.")
    return NO_MODEL


def restored(session: Session | None) -> list:
    """What Setup shows of a session a page comes back to (a reload, a dropped connection): its
    model, task (and the task fields it was asked with, so that Load task loads it again, not the
    page's first choice) and method; nothing changes for a new session."""
    if session is None or getattr(session, "bundle", None) is None:
        return [no_model_status(), *[gr.skip()] * (4 + len(TASK_CONTROLS))]
    spec = session.task_spec if session.task is not None else None
    if spec is None:
        return [model_summary(session), gr.skip(), gr.skip(), session.method.key, method_summary(session),
                *[gr.skip()] * len(TASK_CONTROLS)]
    fields = [spec.source, spec.name if spec.source == "demo" else gr.skip(),
              (spec.country or ALL_COUNTRIES) if spec.source == "culture" else gr.skip(),
              spec.localization if spec.source in ("demo", "culture") else gr.skip(),
              spec.form if spec.source in ("demo", "culture") else gr.skip(),
              spec.name if spec.source == "behaviour" else gr.skip()]
    return [model_summary(session), task_summary(session), gr.update(value=pairs_frame(session), visible=True),
            session.method.key, method_summary(session), *fields]


def file_status(session: Session | None, chosen: bool, recognised: bool = True) -> str:
    """Setup's task line when a file is chosen (``chosen``) or cleared: it says which task is loaded
    until the file is, so that a failed load never reads as the file's, nor a cleared file as chosen;
    a file whose schema is not ``recognised`` is mapped first."""
    loaded = session.task if session is not None else None
    if chosen:
        step = "press **Load task** to use it" if recognised else "map its three columns below, then press **Load task**"
        return f"A new file is chosen: {step}" + (
            f" (the task loaded is still {esc(loaded.describe())})." if loaded else ".")
    return "No file is chosen; " + (f"the task loaded is still {esc(loaded.describe())}." if loaded else "no task is loaded.")


def build(ctx: AppContext, state: gr.State) -> tuple[gr.Dropdown, list[gr.Button], list]:
    """The page's components and callbacks; returns the demo-task list, which the app fills on load,
    the buttons that need the tab's session, which the app enables once it exists (a click in the
    first moment after the page opens would otherwise find no session), and what :func:`restored`
    fills in for a session the page comes back to."""
    tasks = ctx.catalog.tasks
    culture = tasks.get("culture", {})
    behaviours = tasks.get("behaviour", {}).get("behaviours", [])

    gr.Markdown("### 1 · Model and SAE")
    with gr.Row():
        with gr.Column(scale=3):
            preset = gr.Dropdown([(p.label, p.key) for p in ctx.catalog.presets], value=ctx.catalog.default_key,
                                 label="Preset", elem_id="preset")
            notes = gr.Markdown(preset_notes(ctx, ctx.catalog.default_key))
        with gr.Column(scale=1, min_width=160):
            load_model_btn = gr.Button("Load model", variant="primary", elem_id="load-model", interactive=False)
    public = current().public  # a public app: hub ids from its allow-list only, no server paths
    with gr.Group(visible=False) as custom_box:
        if public:
            gr.Markdown("This is a public app: **Custom** loads only the presets' models and SAE releases and those "
                        "its operator allows (`YAPO_ALLOW_MODELS`, `YAPO_ALLOW_SAES`); local folders are off.")
        with gr.Row():
            model = gr.Textbox(label="Model: Hugging Face id" + ("" if public else " or local folder"),
                               placeholder="openai-community/gpt2")
            layer = gr.Number(label="Layer (block whose output is steered)", precision=0, value=None)
        with gr.Row():
            sae_release = gr.Textbox(label="SAE release (sae-lens registry)", placeholder="gpt2-small-res-jb")
            sae_id = gr.Textbox(label="SAE id", placeholder="blocks.8.hook_resid_pre")
            sae_path = gr.Textbox(label="…or a local sae-lens SAE folder", placeholder="/path/to/sae", visible=not public)
    model_status = gr.Markdown(NO_MODEL, elem_id="model-status")

    gr.Markdown("### 2 · Task (preference pairs: prompt, chosen, rejected)")
    source = gr.Radio(SOURCES, value="demo", label="Source", elem_id="task-source")
    with gr.Group(visible=True) as demo_box:
        demo_task = gr.Dropdown(label="Demo task", choices=[], elem_id="demo-task",
                                info="Filled from the demo world once it is built (Load model with the demo preset).")
    with gr.Group(visible=False) as culture_box:
        with gr.Row():
            country = gr.Dropdown([ALL_COUNTRIES] + culture.get("countries", []), value="egypt", label="Country")
            rejected_model = gr.Textbox(label="Rejected answers of model (rejected_<model>_… columns)",
                                        placeholder="e.g. gemma_2_2b_it; empty: the preset's model")
    with gr.Row(visible=True) as culture_options:
        localization = gr.Radio([(spoken(v), v) for v in culture.get("localization", ["both", "localized", "nolocalized"])],
                                value="nolocalized",
                                label="Prompts", info="localized prompts name the country; non-localized ones do not")
        form = gr.Radio([("multiple choice", "mcq"), (spoken("open_ended"), "open_ended")], value="mcq", label="Answer form")
    with gr.Group(visible=False) as behaviour_box:
        behaviour = gr.Dropdown(behaviours, value=behaviours[0] if behaviours else None, label="Behaviour",
                                info="BiPO's train.csv and test.csv; set YAPO_BIPO_DIR to read a local copy")
    with gr.Group(visible=False) as file_box:
        upload = gr.File(label=f"Preference data (up to {ctx.max_upload_mb} MB)", file_types=DATA_TYPES,
                         type="filepath", elem_id="task-upload")
        preview_info = gr.Markdown()
        preview = gr.Dataframe(label="Preview", interactive=False, wrap=True, max_height=240, visible=False)
        with gr.Row():
            prompt_col = gr.Dropdown([AUTO], value=AUTO, label="Prompt column", elem_id="prompt-col")
            chosen_col = gr.Dropdown([AUTO], value=AUTO, label="Chosen column (shows the target behaviour)",
                                     elem_id="chosen-col")
            rejected_col = gr.Dropdown([AUTO], value=AUTO, label="Rejected column", elem_id="rejected-col")
        test_fraction = gr.Slider(0.05, 0.5, value=0.2, step=0.05, label="Share held out for testing")
    load_task_btn = gr.Button("Load task", variant="primary", elem_id="load-task", interactive=False)
    task_status = gr.Markdown("No task loaded yet.", elem_id="task-status")
    task_preview = gr.Dataframe(label="First training pairs", interactive=False, wrap=True, visible=False, max_height=300,
                                column_widths=["50%", "25%", "25%"])

    gr.Markdown("### 3 · Method")
    method = gr.Radio([(m.label, m.key) for m in METHODS.values()], value="yapo", label="Method", elem_id="method")
    method_info = gr.Markdown(method_text(METHODS["yapo"]), elem_id="method-info")

    # -- callbacks --

    def on_preset(key):
        p = ctx.catalog.preset(key)
        return preset_notes(ctx, key), gr.update(visible=p.custom), gr.update(value=p.dcl_rejected_model or "")

    @user_errors
    def on_load_model(session, key, model_, release, sae_id_, path, layer_, progress=gr.Progress(track_tqdm=True)):
        session = need(session)
        preset_ = ctx.catalog.preset(key)
        state = demo_world_state() if preset_.demo else "ready"
        progress(0, desc={"absent": "building the demo world (first use only, about 4 to 21 minutes on 2 cores)",
                          "building": "waiting for the demo world's build, started before (it loads when the build ends)"}
                 .get(state, "loading model and SAE"))
        custom = {}
        if preset_.custom:
            custom = dict(model=model_, sae_release=release, sae_id=sae_id_, sae_path=path,
                          layer=int(layer_) if layer_ is not None else None)
        session.load_preset(preset_, **custom)
        return model_summary(session), demo_task_update()

    def on_source(src, demo_name):
        return (gr.update(visible=src == "demo"), gr.update(visible=src == "culture"),
                gr.update(visible=shows_culture_options(src, demo_name)), gr.update(visible=src == "behaviour"),
                gr.update(visible=src == "file"))

    def no_preview(status=gr.skip()):  # a file that cannot be previewed leaves no earlier file's preview or mapping
        return "", gr.update(value=None, visible=False), *mapping_reset([AUTO]), status

    def unreadable():
        return no_preview("⚠ This file cannot be read (the message says why); any task loaded before stays loaded.")

    @user_errors(cleared=unreadable)
    def on_upload(session, path):
        if not path:  # cleared, or refused before it reached the page: no file is chosen any more
            return no_preview(file_status(session, chosen=False))
        p = preview_file(path)
        status = file_status(session, chosen=True, recognised=bool(p.schema))
        info = f"{p.n_rows} rows, columns: {', '.join(f'`{esc(c)}`' for c in p.columns)}. "
        info += (f"Recognised as **{p.schema}**; leave the mapping on (auto)." if p.schema
                 else "Schema not recognised: map the three columns below.")
        return info, gr.update(value=p.rows, visible=True), *mapping_reset([AUTO] + p.columns), status

    def not_loaded(session, *_):  # the status must not keep reading as a success, or as "press Load task"
        loaded = getattr(session, "task", None)
        still = f"the task loaded is still {esc(loaded.describe())}" if loaded else "no task is loaded"
        return f"⚠ This task was not loaded (the message says why); {still}.", gr.skip()

    @user_errors(cleared=not_loaded)
    def on_load_task(session, src, demo_name, country_, rejected, loc, form_, behaviour_, path, pc, cc, rc, frac,
                     progress=gr.Progress(track_tqdm=True)):
        session = need(session)
        progress(0, desc="loading the task")
        if src == "demo":
            if not demo_name:
                raise gr.Error("Build the demo world first: choose the demo preset and press Load model.")
            spec = TaskSpec("demo", name=demo_name, localization=loc, form=form_)
        elif src == "culture":
            spec = TaskSpec("culture", country=None if country_ == ALL_COUNTRIES else country_, localization=loc,
                            form=form_, rejected_model=(rejected or "").strip() or None)
        elif src == "behaviour":
            spec = TaskSpec("behaviour", name=behaviour_)
        else:
            mapped = {role: col for role, col in (("prompt", pc), ("chosen", cc), ("rejected", rc)) if col and col != AUTO}
            if mapped and len(mapped) < 3:
                raise gr.Error("Map all three columns (prompt, chosen, rejected), or leave all three on (auto).")
            spec = TaskSpec("file", path=path, columns=mapped or None, schema="pairs" if mapped else "auto",
                            test_fraction=float(frac))
        session.load_task(spec)
        return task_summary(session), gr.update(value=pairs_frame(session), visible=True)

    @user_errors
    def on_method(session, key):
        session = need(session)
        session.set_method(key)
        return method_summary(session)

    preset.change(on_preset, preset, [notes, custom_box, rejected_model])
    load_model_btn.click(on_load_model, [state, preset, model, sae_release, sae_id, sae_path, layer],
                         [model_status, demo_task], concurrency_id=HEAVY, concurrency_limit=ctx.heavy_jobs)
    source.change(on_source, [source, demo_task], [demo_box, culture_box, culture_options, behaviour_box, file_box])
    demo_task.change(lambda src, name: gr.update(visible=shows_culture_options(src, name)), [source, demo_task],
                     culture_options)
    upload.change(on_upload, [state, upload], [preview_info, preview, prompt_col, chosen_col, rejected_col, task_status])
    load_task_btn.click(on_load_task, [state, source, demo_task, country, rejected_model, localization, form, behaviour,
                                       upload, prompt_col, chosen_col, rejected_col, test_fraction],
                        [task_status, task_preview], concurrency_id=HEAVY, concurrency_limit=ctx.heavy_jobs)
    method.change(on_method, [state, method], method_info)
    return demo_task, [load_model_btn, load_task_btn], [model_status, task_status, task_preview, method, method_info,
                                                        source, demo_task, country, localization, form, behaviour]

