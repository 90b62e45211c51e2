"""The method comparison on a tiny model: every method measured the same way."""

from conftest import consistent_pairs, make_model, make_sae

from yapo_core.comparison import compare_methods
from yapo_core.evaluation import MCQItem


def test_compare_methods_reports_every_method(tokenizer, tmp_path):
    model, sae = make_model("llama"), make_sae()
    items = [MCQItem(f"Do you like {x}? A) yes B) no", "A", "AB") for x in ("tea", "rain", "owls")]
    result = compare_methods(model, tokenizer, sae, consistent_pairs(12), items, capability=lambda: 0.5,
                             multipliers=[0.0, 1.0, 2.0], train_config=dict(max_steps=5, lr=0.05, warmup_steps=1))
    assert [r.method for r in result.results] == ["yapo", "bipo", "caa", "sas"]
    for r in result.results:
        assert set(r.accuracy) == {0.0, 1.0, 2.0}
        assert r.accuracy[0.0] == result.baseline_accuracy  # multiplier 0 is the unsteered model
        assert r.capability_change == 0.0  # the capability measure here ignores the model
    yapo = result.results[0]
    assert len(yapo.loss_curve) == 5 and yapo.final_loss == yapo.loss_curve[-1]
    assert result.results[2].final_loss is None  # CAA is computed, not trained
    folder = result.save(tmp_path)
    text = (folder / "comparison.md").read_text()
    assert "| YaPO |" in text and "| CAA |" in text
    assert (folder / "accuracy_by_multiplier.html").exists()
