"""Plotly figures of training runs, vectors and multiplier sweeps.

Built from the core's plain results (:class:`~yapo_core.training.StepMetrics`,
:class:`~yapo_core.features.LatentWeight`, ...), so the app's pages stay thin and a notebook gets
the same figures.
"""

from __future__ import annotations

import math
from typing import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .features import LatentMatch, LatentWeight
from .training import StepMetrics

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
POSITIVE, NEGATIVE = "#2563eb", "#dc2626"

TRAINING_METRICS: tuple[tuple[str, str], ...] = (
    ("loss", "loss"),
    ("reward_accuracy", "reward accuracy"),
    ("margin", "reward margin"),
    ("vector_norm", "vector norm ‖v‖"),
    ("l0", "L0 (non-zero entries)"),
)


NOISY_METRICS = ("loss", "reward_accuracy", "margin")
"""Metrics of one batch each step, drawn faint with a smoothed line over them on long runs."""
SMOOTH_FROM = 100
"""Runs of this many steps or more have their noisy metrics drawn (and quoted) as moving averages."""
SMOOTHING = 0.95
"""The exponential moving average's weight on the past (TensorBoard's smoothing, debiased)."""


def smoothed(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
    """``values`` as an exponential moving average, debiased so that it starts at the first value."""
    out, average = [], 0.0
    for i, value in enumerate(values, 1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return out


def run_color(i: int) -> str:
    """A run's colour, stable by its position in the session (the same in every figure)."""
    return PALETTE[i % len(PALETTE)]


def training_curves(
    runs: Sequence[tuple[str, Sequence[StepMetrics]]],
    metrics: Sequence[tuple[str, str]] = TRAINING_METRICS,
    colors: Sequence[str] | None = None,
    height: int = 480,
    max_points: int = 1500,
    smooth_from: int = SMOOTH_FROM,
) -> go.Figure:
    """One panel per metric, every run overlaid (one colour per run, one legend entry).

    The loss panel has a dashed line at ln 2, where the objective starts (v = 0). Loss, reward
    accuracy and margin are one batch's each step: on runs of ``smooth_from`` steps or more they
    are drawn faint, with their moving average (:func:`smoothed`) over them. ``uirevision`` is
    fixed, so zoom and legend toggles survive the figure being rebuilt every second. Runs longer
    than ``max_points`` steps are thinned evenly (the last step is always kept; the average is
    taken over every step first), so the figure sent to the browser stays small.
    """
    cols = 3
    rows = math.ceil(len(metrics) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[title for _, title in metrics],
                        horizontal_spacing=0.07, vertical_spacing=0.16)
    for r, (label, history) in enumerate(runs):
        color = colors[r] if colors else run_color(r)
        smooth = len(history) >= smooth_from
        kept = thin(range(len(history)), max_points)
        steps = [history[i].step for i in kept]
        for p, (field, _) in enumerate(metrics):
            values = [getattr(m, field) for m in history]
            noisy = smooth and field in NOISY_METRICS
            lines = [(values, dict(color=color, width=1), 0.3, "")] if noisy else []
            lines.append((smoothed(values) if noisy else values, dict(color=color, width=2), 1.0,
                          " (moving average)" if noisy else ""))
            for y, line, opacity, what in lines:
                fig.add_trace(
                    go.Scatter(
                        x=steps,
                        y=[y[i] for i in kept],
                        mode="lines+markers" if len(steps) < 40 else "lines",
                        marker=dict(size=4),
                        line=line,
                        opacity=opacity,
                        name=label,
                        legendgroup=label,
                        showlegend=p == 0 and opacity == 1.0,
                        hovertemplate=f"{label}{what}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>",
                    ),
                    row=p // cols + 1,
                    col=p % cols + 1,
                )
    loss_panel = [i for i, (field, _) in enumerate(metrics) if field == "loss"]
    if loss_panel and runs:  # with no runs, no panel draws axes (an empty one would show ln 2's alone)
        i = loss_panel[0]
        fig.add_hline(y=math.log(2), line=dict(color="#9ca3af", dash="dash", width=1),
                      annotation_text="ln 2", annotation_position="top right", row=i // cols + 1, col=i % cols + 1)
    for p in range(len(metrics)):
        fig.update_xaxes(title_text="step", row=p // cols + 1, col=p % cols + 1, title_standoff=4)
    fig.update_layout(
        height=height,
        margin=dict(l=40, r=20, t=50, b=40),
        legend=dict(orientation="h", y=-0.12),
        template="plotly_white",
        uirevision="training",
    )
    if not runs:
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.add_annotation(text="No runs yet: press Start.", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def thin(items: Sequence, max_points: int) -> Sequence:
    """At most ``max_points`` items, evenly spaced, always including the last one."""
    if len(items) <= max_points:
        return items
    stride = math.ceil(len(items) / max_points)
    kept = list(items[::stride])
    return kept if kept[-1] is items[-1] else kept + [items[-1]]


def latent_bars(weights: Sequence[LatentWeight], title: str = "top latents by |v|", height: int | None = None) -> go.Figure:
    """Signed horizontal bars, largest ``|v|`` on top; blue raises a latent, red lowers it."""
    labels = [f"#{w.index}" for w in weights]
    values = [w.value for w in weights]
    return _signed_bars(labels, values, title, "value in v", height)


def cosine_bars(matches: Sequence[LatentMatch], title: str = "nearest SAE latents", height: int | None = None) -> go.Figure:
    """Signed cosines of a dense vector with SAE decoder rows."""
    return _signed_bars([f"#{m.index}" for m in matches], [m.cosine for m in matches], title, "cosine", height)


def _signed_bars(labels, values, title, axis, height) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=values[::-1],
            y=labels[::-1],
            orientation="h",
            marker_color=[POSITIVE if v >= 0 else NEGATIVE for v in values[::-1]],
            hovertemplate="latent %{y}<br>%{x:.4g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title=axis,
        height=height or max(220, 28 * len(labels) + 90),
        margin=dict(l=70, r=20, t=50, b=40),
        template="plotly_white",
    )
    fig.add_vline(x=0, line=dict(color="#6b7280", width=1))
    return fig


def multiplier_sweep(
    curves: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    y_title: str = "held-out preference accuracy",
    colors: Sequence[str] | None = None,
    marks: Sequence[tuple[str, float, float]] = (),
    references: Sequence[tuple[str, float]] = (),
) -> go.Figure:
    """A metric against the multiplier, one line per vector (e.g. YaPO and BiPO on one task);
    ``marks`` ``(label, multiplier, value)`` ring a point of the line of that label (e.g. the
    multiplier chosen on a validation split); ``references`` ``(label, value)`` are dashed
    horizontal lines (e.g. the MCQ accuracy of answering one letter everywhere)."""
    fig = go.Figure()
    for r, (label, points) in enumerate(curves):
        xs, ys = zip(*sorted(points)) if points else ((), ())
        color = colors[r] if colors else run_color(r)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=label, line=dict(color=color, width=2)))
        for name, x, y in marks:
            if name == label:
                fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", name=f"{label}: chosen m = {x:g}",
                                         marker=dict(symbol="circle-open", size=16, color=color, line=dict(width=3))))
    for name, y in references:
        fig.add_hline(y=y, line=dict(color="#6b7280", dash="dash", width=1), annotation_text=name,
                      annotation_position="top left")
    fig.add_vline(x=0, line=dict(color="#9ca3af", dash="dot", width=1))
    # The axis names the metric short ("MCQ accuracy"); the title gives its whole label, which may be long.
    short = y_title.split(" (")[0]
    values = [y for _, points in curves for _, y in points] + [y for _, y in references]
    share = all(0 <= y <= 1 for y in values)  # every metric here is a share: drawn on 0..1 whatever it reached
    fig.update_layout(xaxis_title="multiplier", yaxis_title=short, template="plotly_white", height=360,
                      yaxis=dict(range=[-0.03, 1.03]) if share else {}, showlegend=True,
                      margin=dict(l=50, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.2))
    set_title(fig, y_title if short != y_title else "")
    return fig


def set_title(fig: go.Figure, text: str, width: int = 80) -> go.Figure:
    """A small title wrapped at ``width`` characters, with the top margin and height its lines
    need: plotly draws a title on one line and cuts what does not fit."""
    import textwrap

    lines = textwrap.wrap(text, width) or [""]
    extra = 16 * (len(lines) - 1)
    before = 16 * (fig.layout.title.text or "").count("<br>")  # what an earlier title added
    height = fig.layout.height
    fig.update_layout(title=dict(text="<br>".join(lines), font=dict(size=12)),
                      margin=dict(t=40 + extra), height=height - before + extra if height else None)
    return fig


def loss_curves(curves: Sequence[tuple[str, Sequence[float]]], threshold: float | None = None) -> go.Figure:
    """Training loss against the step, one line per run; a dotted line at ``threshold``."""
    fig = go.Figure()
    for r, (label, losses) in enumerate(curves):
        fig.add_trace(go.Scatter(y=list(losses), mode="lines", name=label, line=dict(color=run_color(r), width=2)))
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dot")
    fig.update_layout(title="training loss", xaxis_title="step", yaxis_title="loss", template="plotly_white")
    return fig
