"""The method registry: each method builds the kind of vector it says, through one dispatcher."""

import pytest
import torch
from conftest import consistent_pairs, make_model, make_sae

from yapo_core.baselines import compute_caa
from yapo_core.errors import SettingsError
from yapo_core.methods import METHODS, get_method, make_vector
from yapo_core.steering import FORMULAS
from yapo_core.training import TrainConfig


def test_the_registry_says_what_each_method_builds():
    assert list(METHODS) == ["yapo", "bipo", "caa", "sas"]
    assert {k: (m.kind, m.trained) for k, m in METHODS.items()} == {
        "yapo": ("sparse", True), "bipo": ("dense", True), "caa": ("dense", False), "sas": ("sparse", False)}
    assert METHODS["yapo"].formula == FORMULAS["sparse"] and METHODS["caa"].formula == FORMULAS["dense"]
    assert get_method("YaPO") is METHODS["yapo"]
    with pytest.raises(SettingsError, match="method 'bpo' is unknown; use one of yapo, bipo, caa, sas"):
        get_method("bpo")


def test_make_vector_dispatches_and_checks(tokenizer):
    model, sae = make_model("llama"), make_sae()
    pairs = consistent_pairs(8)
    caa = make_vector("CAA", model, tokenizer, pairs, sae=sae)
    assert caa.layer == 1 and torch.equal(caa.values, compute_caa(model, tokenizer, pairs, 1).values)  # layer from the SAE
    assert make_vector("bipo", model, tokenizer, pairs, layer=1, max_steps=2).method == "bipo"
    assert make_vector("yapo", model, tokenizer, pairs, sae=sae, max_steps=2).kind == "sparse"
    assert make_vector("sas", model, tokenizer, pairs, sae=sae).method == "sas"
    with pytest.raises(SettingsError, match="pass an SAE"):
        make_vector("sas", model, tokenizer, pairs, layer=1)
    with pytest.raises(SettingsError, match="method 'pca' is unknown"):
        make_vector("pca", model, tokenizer, pairs, sae=sae)


def test_make_vector_keeps_every_setting_it_is_given(tokenizer):
    """A config and keywords together: the keywords replace the config's fields; the config's layer
    is the layer; a layer given twice must agree."""
    from yapo_core import TrainConfig

    model, pairs = make_model("llama"), consistent_pairs(8)
    config = TrainConfig(layer=2, max_steps=3, lr=5e-4)
    bipo = make_vector("bipo", model, tokenizer, pairs, config=config, lr=0.5, max_steps=2)
    assert bipo.layer == 2 and bipo.metadata["steps"] == "2" and '"lr": 0.5' in bipo.metadata["training"]
    assert make_vector("caa", model, tokenizer, pairs, config=config).layer == 2
    with pytest.raises(SettingsError, match="layer=1 and the config's layer=2 disagree"):
        make_vector("bipo", model, tokenizer, pairs, layer=1, config=config)
    with pytest.raises(SettingsError, match="lrr is not a setting of TrainConfig; its settings: kind, layer, lr"):
        make_vector("bipo", model, tokenizer, pairs, layer=1, lrr=0.1)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_acts_at_an_sae_on_the_input_of_the_first_block(tokenizer, method):
    """sae-lens ships SAEs at ``blocks.0.hook_resid_pre`` (GPT-2 small's): the output of no block."""
    model, sae = make_model("llama"), make_sae(layer=0, position="pre")
    vector = make_vector(method, model, tokenizer, consistent_pairs(8), sae=sae, max_steps=2)
    assert vector.hook_name == "blocks.0.hook_resid_pre"
    with vector.apply(model, 1.0, sae=sae):
        model(torch.tensor([[5, 6, 7]]))


def test_trained_methods_report_every_step_and_set_their_own_kind(tokenizer):
    model, sae = make_model("llama"), make_sae()
    seen = []
    vec = make_vector("bipo", model, tokenizer, consistent_pairs(8), sae=sae,
                      config=TrainConfig(kind="sparse", max_steps=3, batch_size=4), on_step=seen.append)
    assert vec.kind == "dense" and vec.layer == 1  # the method's kind wins; the layer comes from the SAE
    assert [m.step for m in seen] == [1, 2, 3]
    trainer = METHODS["yapo"].trainer(model, tokenizer, consistent_pairs(8), sae, TrainConfig(kind="dense", max_steps=1))
    assert trainer.config.kind == "sparse"
    with pytest.raises(SettingsError, match="computed, not trained"):
        METHODS["caa"].trainer(model, tokenizer, consistent_pairs(8), sae)
