"""yapo_core.plots: the figures the app and the CLI draw."""

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
