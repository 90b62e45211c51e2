"""YaPO Studio's web app: ``python app.py`` locally; the same file is a Hugging Face Space's entry point.

Pages live in ``pages/`` (one module each) and call ``yapo_core`` only; this file assembles them
into tabs that share one per-user :class:`~yapo_studio.session.Session` (a ``gr.State``, found again
from a token the browser keeps), so two users never see each other's runs.

Its settings are environment variables (:class:`yapo_studio.settings.Settings`); ``python app.py
--help`` lists them with their defaults.

A server that seems stuck: ``kill -USR1 <pid>`` prints every thread's stack to its stderr.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
from pathlib import Path

import gradio as gr

from pages import compare, evaluate, export, features, setup, train
from pages.common import AppContext, vector_choices
from yapo_core.errors import SettingsError
from yapo_core.models import use_available_cores
from yapo_studio.settings import current, variables

CSS = (Path(__file__).resolve().parent / "assets" / "app.css").read_text(encoding="utf-8")
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
"""System fonts only: the app must not wait on font downloads when offline."""
INTRO = """# YaPO Studio
Learn **sparse steering vectors in an SAE's latent space (YaPO)** or dense ones (BiPO) from preference pairs (CAA and SAS as baselines), watch them
train, read them latent by latent, compare steered and unsteered answers, and export them (safetensors, llama.cpp GGUF).
Start on **Setup**: the demo world is built on this machine and needs no download."""


FILES_KEPT = (1800, 7200)
"""Gradio's ``delete_cache``: every 30 minutes, remove uploaded and downloadable files older than two hours."""


def build_app(ctx: AppContext | None = None) -> gr.Blocks:
    """All pages in tabs around one session per browser (its tabs share it; a reload finds it again)."""
    ctx = ctx or AppContext.from_env()
    # Gradio's copies of uploads and downloads: removed two hours after they were made (and when the
    # app stops), so a public app's disk does not fill up and an exported file's link does not last
    with gr.Blocks(title="YaPO Studio", analytics_enabled=False, delete_cache=FILES_KEPT) as demo:
        gr.Markdown(INTRO)
        state = gr.State(None, delete_callback=ctx.state_deleted)
        # the browser keeps its session's token, so a reload or a dropped connection finds the session again
        token = gr.BrowserState(None, storage_key="yapo-studio-session")
        with gr.Tabs():
            with gr.Tab("Setup", id="setup"):
                demo_tasks, session_buttons, setup_shown = setup.build(ctx, state)
            with gr.Tab("Train", id="train") as train_tab:
                train_page = train.build(state)
            with gr.Tab("Features", id="features") as features_tab:
                features_picker = features.build(ctx, state)
            with gr.Tab("Compare", id="compare") as compare_tab:
                compare_picker = compare.build(ctx, state)
            with gr.Tab("Evaluate", id="evaluate") as evaluate_tab:
                evaluate_vectors, evaluate_metric, evaluate_listed, comparison = evaluate.build(ctx, state)
            with gr.Tab("Export", id="export") as export_tab:
                export_picker = export.build(ctx, state)

        demo.load(ctx.open_session, token, [state, token]).then(setup.demo_task_update, None, demo_tasks).then(
            setup.restored, state, setup_shown).then(
            lambda: [gr.update(interactive=True)] * len(session_buttons), None, session_buttons)
        demo.unload(ctx.end_session)
        train_tab.select(train.on_open, [state, train_page.filled_for],
                         [train_page.summary, train_page.status, train_page.curves, train_page.timer, train_page.which,
                          *train_page.defaults, train_page.filled_for])
        for tab, picker in ((features_tab, features_picker), (compare_tab, compare_picker), (export_tab, export_picker)):
            tab.select(vector_choices, [state, picker.dropdown, picker.listed], [picker.dropdown, picker.listed])
        evaluate_tab.select(evaluate.vector_checklist, [state, evaluate_vectors, evaluate_metric, evaluate_listed],
                            [evaluate_vectors, evaluate_metric, evaluate_listed])
        evaluate_tab.select(evaluate.comparison_for, [state, comparison[2]], list(comparison))
    return demo


def server_address(env=None) -> tuple[str, int]:
    """Where to listen: local only unless ``YAPO_HOST`` (or Gradio's ``GRADIO_SERVER_NAME``, which
    Spaces set) says otherwise (see :mod:`yapo_studio.settings`)."""
    try:
        settings = current(env)
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None
    return settings.host, settings.port


def parse_args(argv=None) -> argparse.Namespace:
    """``python app.py --help`` says what the app reads, and starts nothing; the app takes no other
    argument: its settings are environment variables (:mod:`yapo_studio.settings`)."""
    parser = argparse.ArgumentParser(
        prog="python app.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="YaPO Studio's web app: serves on http://127.0.0.1:7860 unless the environment says otherwise.",
        epilog="environment variables (default):\n" + "\n".join(f"  {line}" for line in variables()))
    return parser.parse_args(argv)


def main(argv=None) -> None:
    parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line for every request Gradio makes to itself
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>` prints every thread's stack to stderr (a hung server)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    use_available_cores()
    ctx = AppContext.from_env()
    host, port = server_address()
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=ctx.heavy_jobs, max_size=64)
    demo.launch(server_name=host, server_port=port, max_file_size=f"{ctx.max_upload_mb}mb", css=CSS,
                theme=THEME, run_history=False, footer_links=["api", "gradio"], show_error=False)


if __name__ == "__main__":
    main()
