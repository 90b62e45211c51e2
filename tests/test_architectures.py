"""The architecture table: every supported family is found and hooked from one place."""

import pytest
import torch
from conftest import NEW_FAMILIES, make_model

from yapo_core.architectures import architecture_of, decoder_layers, unembed
from yapo_core.errors import ModelLoadError


@pytest.mark.parametrize("family", ["llama", "gemma2", "mistral", "gpt2", "gpt_neox", "qwen2", *NEW_FAMILIES])
def test_table_finds_blocks_and_unembedding(family):
    """Every row's blocks, final norm and head (with its logit scaling or soft-capping) reproduce
    the model's own logits from the last block's output."""
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


def test_every_row_says_how_its_family_windows_attention():
    """What the fast engine's masks follow (``objectives.sliding_windows``): a value outside the three
    would be read as "no window" and train a windowed model on masks it never uses."""
    from yapo_core.architectures import ARCHITECTURES

    assert {a.windows for a in ARCHITECTURES} <= {"none", "every_block", "layer_types"}
    assert len({t for a in ARCHITECTURES for t in a.model_types}) == sum(len(a.model_types) for a in ARCHITECTURES)
