"""The library at the sizes of real models and SAEs, where tiny test models cannot reach: tensors
of more than 2**24 values (a Gemma Scope SAE's 2304 x 16384 matrices, a 2B model's 2304 x 9216
MLP), whose indices float32 can no longer tell apart. Two blocks of Gemma-2-2B's width, a 16k
SAE: train, save, load, check and steer."""

import pytest
import torch
from conftest import VOCAB, consistent_pairs

from yapo_core import load_vector, save_vector
from yapo_core.generation import generate
from yapo_core.methods import make_vector


@pytest.fixture(scope="module")
def real_width():
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
    from transformers import AutoModelForCausalLM, Gemma2Config

    from yapo_core.models import prepare_model

    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=VOCAB, hidden_size=2304, intermediate_size=9216, num_hidden_layers=2,
                          num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=512,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = prepare_model(AutoModelForCausalLM.from_config(config, attn_implementation="eager"))
    sae_config = JumpReLUSAEConfig(d_in=2304, d_sae=16384)
    sae_config.metadata.hook_name = "blocks.0.hook_resid_post"
    sae = JumpReLUSAE(sae_config)
    with torch.no_grad():
        sae.W_enc.normal_(0, 0.02), sae.W_dec.normal_(0, 0.02), sae.threshold.fill_(0.01)
    sae.eval().requires_grad_(False)
    assert sae.W_enc.numel() > 2**24 and model.model.layers[0].mlp.down_proj.weight.numel() > 2**24
    return model, sae


def test_a_sparse_vector_trains_saves_loads_and_steers_at_real_width(real_width, tokenizer, tmp_path):
    model, sae = real_width
    pairs = consistent_pairs(4)
    vector = make_vector("yapo", model, tokenizer, pairs, sae=sae, max_steps=2, batch_size=2, lr=0.05)
    path = save_vector(vector, tmp_path / "v.safetensors", sae=sae)
    loaded = load_vector(path, model=model, sae=sae)  # every fingerprint checked against the live weights
    assert torch.equal(loaded.values, vector.values)
    (answers,) = generate(model, tokenizer, ["Do you like tea?"], loaded, [0.0, 1.0], sae=sae, max_new_tokens=2)
    assert set(answers) == {0.0, 1.0}
    dense = make_vector("bipo", model, tokenizer, pairs, layer=0, max_steps=1, batch_size=2)
    assert load_vector(save_vector(dense, tmp_path / "d.safetensors"), model=model).kind == "dense"
