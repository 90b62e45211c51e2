"""Features: the learned vector read through the SAE, one card per latent and one for the whole vector."""

from __future__ import annotations

import gradio as gr

from yapo_core.features import (
    FeatureReport,
    LatentCard,
    LatentMatch,
    LatentWeight,
    LogitLens,
    VectorCard,
    explain_report,
)
from yapo_core.plots import cosine_bars, latent_bars
from yapo_studio.zero_gpu import gpu

from .common import HEAVY, AppContext, VectorPicker, esc, need, user_errors


def token_chip(token: str, score: float | None = None, cls: str = "") -> str:
    shown = token.replace("\n", "⏎") or "∅"
    title = f" title='{score:+.3f}'" if score is not None else ""
    return f"<span class='tok {cls}'{title}>{esc(shown)}</span>"


def lens_html(lens: LogitLens) -> str:
    if not lens.top:
        return "<div class='muted'>(zero direction)</div>"
    up = "".join(token_chip(t.token, t.score, "up") for t in lens.top)
    down = "".join(token_chip(t.token, t.score, "down") for t in lens.bottom)
    return (f"<div class='lens'><div><span class='lbl'>promotes</span>{up}</div>"
            f"<div><span class='lbl'>suppresses</span>{down}</div></div>")


def _bin(edges: list[float], i: int) -> str:
    """Bin ``i``'s range as torch.histogram counts it: half-open, but for the last bin, which is closed."""
    lo, hi = edges[i], edges[i + 1]
    return f"at {lo:.3g}" if lo == hi else f"in [{lo:.3g}, {hi:.3g}{']' if i == len(edges) - 2 else ')'}"


def histogram_html(counts: list[int], edges: list[float] | None = None) -> str:
    """The non-zero activations' histogram as inline bars between its least and largest value;
    each bar's tooltip gives its range and count."""
    if not counts:
        return ""
    peak = max(counts) or 1
    edges = edges if edges and len(edges) == len(counts) + 1 else None
    bars = "".join(f"<span style='height:{max(2, round(28 * c / peak))}px' "
                   f"title='{c:,} token{'' if c == 1 else 's'}" + (f" {_bin(edges, i)}'" if edges else "'") + "></span>"
                   for i, c in enumerate(counts))
    ends = (f"<span class='hist-end'>{edges[0]:.3g}</span>", f"<span class='hist-end'>{edges[-1]:.3g}</span>") \
        if edges else ("", "")
    return (f"<span class='hist-wrap'>{ends[0]}<span class='hist' title='histogram of the non-zero activations "
            f"(height: tokens per bin)'>{bars}</span>{ends[1]}</span>")


def example_html(tokens: list[str], values: list[float], scale: float) -> str:
    spans = []
    for tok, v in zip(tokens, values):
        alpha = 0 if scale <= 0 else min(1.0, max(0.0, v / scale))
        style = f" style='background:rgba(234,88,12,{alpha:.2f})'" if alpha > 0 else ""
        spans.append(f"<span class='act'{style} title='{v:.3f}'>{esc(tok.replace(chr(10), '⏎'))}</span>")
    return f"<div class='example'>{''.join(spans)}</div>"


def latent_card_html(card: LatentCard, explanation: str | None = None) -> str:
    weight = f"v = {card.weight:+.4g}" if card.weight_kind == "value" else f"cos = {card.weight:+.3f}"
    link = (f"<a href='{esc(card.neuronpedia_url)}' target='_blank' rel='noopener'>Neuronpedia ↗</a>"
            if card.neuronpedia_url else "")  # an SAE without pages says so once, above the cards
    parts = [f"<div class='latent-card' data-index='{card.index}'>",
             f"<div class='card-head'><b>latent #{card.index}</b> <span class='w {'pos' if card.weight >= 0 else 'neg'}'>{weight}</span> {link}</div>"]
    if explanation:
        parts.append(f"<div class='explanation'>“{esc(explanation)}”</div>")
    parts.append(lens_html(card.logit_lens))
    a = card.activity
    if a is not None and a.density == 0:  # a latent the vector sets that the SAE never turns on for these pairs
        why = ": only the vector turns it on" if card.weight_kind == "value" else ""  # a sparse vector's own entry
        parts.append(f"<div class='density'>never fires on the {a.n_tokens:,} tokens of the task's pairs{why}</div>")
    elif a is not None:
        parts.append(f"<div class='density'>fires on <b>{a.density:.1%}</b> of {a.n_tokens:,} tokens · max {a.max_value:.3g}"
                     f" · mean when active {a.mean_active:.3g}"
                     + (f" · histogram {histogram_html(a.histogram_counts, a.histogram_edges)}" if a.histogram_counts else "")
                     + "</div>")
        if a.examples:
            parts.append("<div class='lbl'>top-activating tokens on the task's pairs</div>")
            parts += [example_html(e.tokens, e.values, a.max_value) for e in a.examples]
        else:
            parts.append("<div class='muted'>never active on the task's pairs</div>")
    parts.append("</div>")
    return "".join(parts)


def vector_card_html(card: VectorCard, hook: str) -> str:
    rows = [("kind", f"{card.kind} ({card.method})"), ("entries", f"{card.width:,}"), ("non-zero (L0)", f"{card.l0:,}"),
            ("‖v‖", f"{card.norm:.4g}"), ("top-10 share of |v|", f"{card.top10_mass:.1%}"),
            ("‖decoded direction‖" if card.kind == "sparse" else "‖v‖ in the residual", f"{card.direction_norm:.4g}")]
    if card.dropped_at_plus is not None:
        rows.append(("dense export drops", f"{card.dropped_at_plus:.1%} at m=+1 · {card.dropped_at_minus:.1%} at m=−1"))
    table = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    what = ("the signed decoding v·W_dec of the whole vector" if card.kind == "sparse" else "the vector itself")
    return (f"<div class='vector-card'><div class='card-head'><b>The whole vector</b> · steers <code>{esc(hook)}</code></div>"
            f"<table>{table}</table><div class='lbl'>logit lens of {what}</div>{lens_html(card.logit_lens)}</div>")


def cards_html(report: FeatureReport, explanations: dict[int, str] | None = None) -> str:
    if not report.latents:
        return "<div class='muted'>No latents to show: the vector is zero (train a few steps first).</div>"
    explanations = explanations or {}
    note = ("" if any(c.neuronpedia_url for c in report.latents)
            else "<div class='muted'>This SAE has no Neuronpedia pages: the cards read it locally.</div>")
    return note + "<div class='cards'>" + "".join(latent_card_html(c, explanations.get(c.index)) for c in report.latents) + "</div>"


def bars(report: FeatureReport):
    if report.vector.kind == "sparse":
        return latent_bars([LatentWeight(c.index, c.weight) for c in report.latents], "top latents of v by |v| (signed)")
    return cosine_bars([LatentMatch(c.index, c.weight) for c in report.latents], "SAE latents nearest to the dense vector (cosine)")


def build(ctx: AppContext, state: gr.State) -> VectorPicker:
    """The page's components and callbacks; returns its vector picker, refreshed when the tab opens."""
    with gr.Row():
        picker = VectorPicker.build("features-vector", scale=3)
        vector = picker.dropdown
        k = gr.Slider(1, 40, value=10, step=1, label="Latents to show", scale=2)
        show = gr.Button("Show features", variant="primary", elem_id="show-features", scale=1)
    gr.Markdown("Cards read each latent through the model's final norm and unembedding (logit lens) and show where it "
                "fires on the task's pairs (prompt and chosen answer). For a dense (BiPO) vector the cards are the "
                "SAE latents whose decoder directions are nearest to it.")
    report_state = gr.State(None)
    with gr.Row():
        with gr.Column(scale=2):
            vector_card = gr.HTML(elem_id="vector-card")
        with gr.Column(scale=3):
            bar_plot = gr.Plot(label="Latents", elem_id="latent-bars")
    explain = gr.Button("Fetch explanations from Neuronpedia", size="sm", visible=False)
    cards = gr.HTML(elem_id="latent-cards")

    def no_report():  # a failed Show leaves no other vector's features under this one's name
        return "", None, "", None, gr.update(visible=False)

    @user_errors(cleared=no_report)
    @gpu  # ZeroGPU attaches a GPU for this call; a no-op elsewhere
    def on_show(session, label, k_):
        session = need(session)
        entry = session.entry(label)
        report = session.features(label, k=int(k_))
        return (vector_card_html(report.vector, entry.vector.hook_name), bars(report), cards_html(report), report,
                gr.update(visible=bool(report.neuronpedia_id and report.latents)))

    @user_errors
    def on_explain(report):
        if report is None:
            raise gr.Error("Show the features first.")
        found = explain_report(report)
        if not found:
            gr.Warning("Neuronpedia has no explanations for these latents.")
        return cards_html(report, found)

    show.click(on_show, [state, vector, k], [vector_card, bar_plot, cards, report_state, explain],
               concurrency_id=HEAVY, concurrency_limit=ctx.heavy_jobs)
    explain.click(on_explain, report_state, cards)
    vector.change(no_report, None, [vector_card, bar_plot, cards, report_state, explain])  # another vector's cards go
    return picker
