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
