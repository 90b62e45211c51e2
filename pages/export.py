"""Export: download a vector as .safetensors and as a llama.cpp GGUF control vector; load one back."""

from __future__ import annotations

import gradio as gr

from yapo_core.errors import SettingsError
from yapo_studio.session import ExportResult

from .common import HEAVY, AppContext, VectorPicker, esc, need, user_errors, vector_choices


def export_note(result: ExportResult, kind: str) -> str:
    """What was written, and how exact the GGUF is."""
    lines = [f"✓ **Exported** `{esc(result.safetensors.name)}`: the vector with its metadata (method, model, layer, "
             "hook, SAE, training settings). YaPO Studio and `yapo_core.load_vector` read it back and check it fits."]
    if result.gguf is None:
        lines.append(f"⚠ No GGUF: {esc(result.gguf_error)}")
        return "\n\n".join(lines)
    lines.append(f"**GGUF** `{esc(result.gguf.name)}`: a llama.cpp control vector `direction.{result.layer}` with the "
                 f"multiplier **{result.multiplier:+g}** baked in. Use it with "
                 f"`llama-cli -m <model.gguf> --control-vector {esc(result.gguf.name)}`; llama.cpp adds it to the "
                 f"output of block {result.layer} at every token, like YaPO Studio does.")
    if kind == "sparse":
        if result.dropped_fraction:
            lines.append(
                f"⚠ **Not exact:** a sparse vector becomes the dense `relu(m·v)·W_dec`, which is exact only where "
                f"m·v ≥ 0. This vector's negative entries at m = {result.multiplier:+g} carry "
                f"**{result.dropped_fraction:.1%}** of its L1 mass; they only clamp latents that are already active "
                "at a token, which no fixed vector can do, so the GGUF drops them. The .safetensors file keeps them.")
        else:
            lines.append(f"The GGUF is exact at m = {result.multiplier:+g}: every entry of m·v is ≥ 0.")
        lines.append("llama.cpp's `--control-vector-scaled FILE s` with s > 0 gives this vector at s × the baked-in "
                     "multiplier; for a negative multiplier export it here, since a negative strength is not the "
                     "same for a sparse vector.")
    return "\n\n".join(lines)


def build(ctx: AppContext, state: gr.State) -> VectorPicker:
    """The page's components and callbacks; returns its vector picker, refreshed when the tab opens."""
    gr.Markdown("#### Download")
    with gr.Row():
        picker = VectorPicker.build("export-vector", scale=3)
        vector = picker.dropdown
        multiplier = gr.Number(1.0, label="Multiplier baked into the GGUF", scale=1)
        export = gr.Button("Export", variant="primary", elem_id="export", scale=1)
    note = gr.Markdown(elem_id="export-note")
    with gr.Row():
        st_file = gr.DownloadButton("Download .safetensors", visible=False, elem_id="download-safetensors")
        gguf_file = gr.DownloadButton("Download .gguf (llama.cpp)", visible=False, elem_id="download-gguf")
    gr.Markdown("#### Load a vector file\nA `.safetensors` vector made for the loaded model (and SAE); once loaded it "
                "appears in the vector lists of Features, Compare and Export.")
    upload = gr.File(label=f"Vector file (.safetensors, up to {ctx.max_upload_mb} MB)", file_types=[".safetensors"],
                     type="filepath", elem_id="vector-upload")
    load_note = gr.Markdown(elem_id="load-note")

    def no_files():  # a failed export offers no earlier export's files as its own
        return "", gr.update(value=None, visible=False), gr.update(value=None, visible=False)

    @user_errors(cleared=no_files)
    def on_export(session, label, m):
        session = need(session)
        entry = session.entry(label)
        if m is None:
            raise SettingsError("enter the multiplier to bake into the GGUF (1 is the vector as trained).")
        result = session.export(label, float(m))
        return (export_note(result, entry.vector.kind), gr.update(value=str(result.safetensors), visible=True),
                gr.update(value=str(result.gguf) if result.gguf else None, visible=result.gguf is not None))

    def not_loaded():  # a refused file leaves no earlier file's "Loaded" note as if it were its own
        return ("⚠ This file was not loaded (the message says why); the vectors loaded before are unchanged.",
                gr.skip(), gr.skip(), gr.skip())

    @user_errors(cleared=not_loaded)
    def on_upload(session, path, current, listed):
        session = need(session)
        if not path:
            return gr.update(), gr.update(), listed, gr.skip()
        entry = session.load_vector_file(path)
        v = entry.vector
        text = (f"✓ **Loaded** {esc(entry.label)}: {v.kind} ({v.method}) vector, {v.l0():,} non-zero of {v.width:,}, "
                f"steering `{esc(v.hook_name)}`, checked against the loaded model ({esc(entry.bundle.label)}; "
                + (f"the file names it `{esc(v.model_id)}`" if v.model_id else "the file names no model") + "). Use it on Compare.")
        # the box empties once its file is loaded, so the note speaks of the last file loaded, and a file the
        # browser itself refuses later (type or size: no event reaches the server) leaves no file shown as if loaded
        return text, *vector_choices(session, current, listed), gr.update(value=None)

    export.click(on_export, [state, vector, multiplier], [note, st_file, gguf_file],
                 concurrency_id=HEAVY, concurrency_limit=ctx.heavy_jobs)
    upload.upload(on_upload, [state, upload, vector, picker.listed], [load_note, vector, picker.listed, upload])
    for control in (vector, multiplier):  # the files offered are those of the vector and multiplier shown
        control.change(no_files, None, [note, st_file, gguf_file])
    return picker
