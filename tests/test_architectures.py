"""The architecture table: every supported family is found and hooked from one place."""

import pytest
import torch
from conftest import make_model

from yapo_core.architectures import (
    architecture_of,
    decoder_layers,
    hook_point_from_name,
    parse_hook_name,
    unembed,
)
from yapo_core.errors import ModelLoadError, SAELoadError, SettingsError


@pytest.mark.parametrize("family", ["llama", "gemma2", "mistral", "gpt2", "gpt_neox", "qwen2"])
def test_table_finds_blocks_and_unembedding(family):
    model = make_model(family)
    assert len(decoder_layers(model)) == 4
    ids = torch.randint(7, 100, (1, 6))
    out = model(ids, output_hidden_states=True)
    # hidden_states[-1] is after the final norm; apply the head by hand to the last block's output
    seen = {}
    h = decoder_layers(model)[-1].register_forward_hook(lambda m, a, o: seen.setdefault("h", o))
    try:
        model(ids)
    finally:
        h.remove()
    torch.testing.assert_close(unembed(model, seen["h"]), out.logits, rtol=1e-5, atol=1e-5)


def test_unsupported_model_type_names_the_fix():
    model = make_model("llama")
    model.config.model_type = "mamba"
    with pytest.raises(ModelLoadError, match="'mamba' is not supported.*ARCHITECTURES"):
        architecture_of(model)


def test_hook_names_map_to_residual_points():
    model = make_model("llama")
    assert parse_hook_name(model, "blocks.2.hook_resid_post").resid_layer == 2
    assert parse_hook_name(model, "blocks.2.hook_resid_pre").resid_layer == 1
    assert parse_hook_name(model, "model.layers.3").resid_layer == 3
    assert parse_hook_name(model, "model.layers.3.output").position == "post"
    assert hook_point_from_name("model.layers.3.input").position == "pre"
    with pytest.raises(SAELoadError, match="not a residual-stream point"):
        parse_hook_name(model, "blocks.2.ln2.hook_normalized")
    with pytest.raises(SAELoadError, match="another architecture"):
        parse_hook_name(model, "transformer.h.2")
    with pytest.raises(SettingsError, match="layer 4 is out of range.*0 to 3"):
        parse_hook_name(model, "blocks.4.hook_resid_post")
    assert parse_hook_name(make_model("gpt2"), "transformer.h.1").layer == 1
