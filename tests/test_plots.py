"""yapo_core.plots: the figures the app and the CLI draw."""

import pytest

from yapo_core.plots import multiplier_sweep


def test_multiplier_sweep_draws_lines_rings_and_reference_levels():
    fig = multiplier_sweep([("yapo", [(1.0, 0.9), (0.0, 0.0)]), ("bipo", [(0.0, 0.0), (1.0, 0.5)])],
                           y_title="MCQ accuracy", marks=[("bipo", 1.0, 0.5)],
                           references=[("one letter everywhere (H) · egypt", 0.41)])
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["yapo", "bipo"] and list(lines[0].x) == [0.0, 1.0]  # sorted by multiplier
    (ring,) = [t for t in fig.data if t.mode == "markers"]
    assert ring.name == "bipo: chosen m = 1" and list(ring.y) == [0.5]
    levels = [s for s in fig.layout.shapes if s.y0 == s.y1 == 0.41]
    assert len(levels) == 1 and levels[0].line.dash == "dash"
    assert [a.text for a in fig.layout.annotations] == ["one letter everywhere (H) · egypt"]
    assert not multiplier_sweep([("yapo", [(0.0, 0.0)])]).layout.annotations  # none unless asked


def test_a_sweep_names_its_one_curve_and_draws_a_share_on_zero_to_one():
    """One vector's curve still has its name shown, a long metric label does not crowd the axis,
    and a share that is 0 (or 1) everywhere is not drawn on an axis running from -1 (or to 2)."""
    label = "fluent answers (greedy: no token loop, ends its turn where unsteered does)"
    fig = multiplier_sweep([("1. YaPO · demo culture · egypt", [(0.0, 0.0), (1.0, 0.0)])], y_title=label)
    assert fig.layout.showlegend is True and fig.layout.yaxis.title.text == "fluent answers"
    assert fig.layout.title.text == label and tuple(fig.layout.yaxis.range) == (-0.03, 1.03)
    assert multiplier_sweep([("v", [(0.0, 2.5)])], y_title="loss").layout.yaxis.range is None  # not a share: its own range


def test_a_long_title_is_wrapped_with_the_room_it_needs():
    """Plotly draws a title on one line and cuts what does not fit (a method comparison's title
    names the metric, the task and how the multipliers were chosen)."""
    from yapo_core.plots import set_title

    text = ("behaviour rate (A/B) by multiplier — demo behaviour · power-seeking. Multipliers chosen by the behaviour "
            "shown in open answers on the validation split.")
    fig = set_title(multiplier_sweep([("v", [(0.0, 0.1), (1.0, 0.9)])]), text)
    lines = fig.layout.title.text.split("<br>")
    assert len(lines) == 2 and " ".join(lines) == text and max(map(len, lines)) <= 80
    assert (fig.layout.margin.t, fig.layout.height) == (56, 376)
    assert (set_title(fig, text).layout.height, set_title(fig, "short").layout.height) == (376, 360)  # not added twice


def test_long_runs_draw_per_batch_metrics_faint_under_their_moving_average():
    from yapo_core.plots import smoothed, training_curves
    from yapo_core.training import StepMetrics

    assert smoothed([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # debiased: no ramp up from 0
    assert smoothed([0.0, 1.0], weight=0.5) == pytest.approx([0.0, 2 / 3])
    noisy = [StepMetrics(i, 200, 0, 0.6 + 0.1 * (-1) ** i, 1.0, 0.1, 0.1, 0.0, 1.0, 3, 1e-4, 1.0, 0.01)
             for i in range(1, 201)]
    fig = training_curves([("a", noisy)])
    loss = [t for t in fig.data if t.xaxis == "x"]
    assert [t.opacity for t in loss] == [0.3, 1.0]  # the raw batches faint, the average over them
    assert max(loss[1].y[50:]) - min(loss[1].y[50:]) < 0.02 < max(loss[0].y) - min(loss[0].y)
    assert len([t for t in fig.data if t.showlegend]) == 1  # one legend entry per run
    short = training_curves([("a", noisy[:20])])
    assert all(t.opacity in (None, 1.0) for t in short.data) and len(short.data) == 5  # short runs: as they are
    # the ln 2 line and axes on every panel with a run; with none, no panel draws axes (not the loss panel alone)
    assert len(short.layout.shapes) == 1 and short.layout.xaxis.visible is not False
    empty = training_curves([])
    assert not empty.layout.shapes and "No runs yet" in empty.layout.annotations[-1].text
    axes = [empty.layout[name] for name in empty.layout if name.startswith(("xaxis", "yaxis"))]
    assert len(axes) == 12 and all(axis.visible is False for axis in axes)
