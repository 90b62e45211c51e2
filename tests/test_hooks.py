"""Hook points: names map to residual points; steering and recording hooks sit where the SAE reads
and always come off."""

import pytest
import torch
from conftest import make_model

from yapo_core.architectures import decoder_layers
from yapo_core.errors import SAELoadError, SettingsError
from yapo_core.hooks import (
    HookPoint,
    block_output,
    hook_point_from_name,
    parse_hook_name,
    record_residual,
    steering_hook,
)


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


def test_block_output_is_the_post_point_and_checks_the_depth():
    model = make_model("llama")
    assert block_output(model, 2) == HookPoint(2, "post") and block_output(model, 2).hook_name == "blocks.2.hook_resid_post"
    with pytest.raises(SettingsError, match="layer 7 is out of range"):
        block_output(model, 7)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_record_residual_reads_what_the_model_computes_and_comes_off(family):
    model = make_model(family)
    ids = torch.randint(7, 100, (2, 5))
    blocks = decoder_layers(model)
    with torch.no_grad():
        states = model(ids, output_hidden_states=True).hidden_states  # [embeddings, block 0, ..., last (normed)]
        hooks_before = (len(blocks[1]._forward_hooks), len(blocks[0]._forward_pre_hooks))
        with record_residual(model, HookPoint(1, "post")) as post, record_residual(model, HookPoint(0, "pre")) as pre:
            model(ids)
            model(ids)
    assert len(post) == 2 and len(pre) == 2  # one entry per forward pass
    torch.testing.assert_close(post[0], states[2])  # output of block 1
    torch.testing.assert_close(pre[0], states[0])  # input of block 0: the embedding output
    assert (len(blocks[1]._forward_hooks), len(blocks[0]._forward_pre_hooks)) == hooks_before


def test_steering_hook_comes_off_when_the_body_raises():
    model = make_model("llama")
    block = decoder_layers(model)[1]
    before = len(block._forward_hooks)
    with pytest.raises(RuntimeError, match="boom"):
        with steering_hook(model, HookPoint(1, "post"), lambda h: h * 0):
            assert len(block._forward_hooks) == before + 1
            raise RuntimeError("boom")
    assert len(block._forward_hooks) == before


@pytest.mark.parametrize("position", ["post", "pre"])
def test_a_hook_acts_only_in_the_thread_that_put_it_on(position):
    """A shared model may generate with a steering hook in one thread while another thread runs it."""
    import threading

    model = make_model("llama")
    ids = torch.randint(7, 100, (1, 6))
    with torch.no_grad():
        plain = model(ids).logits
        with steering_hook(model, HookPoint(1, position), lambda h: h * 0 + 1.0):
            steered = model(ids).logits
            seen = {}
            other = threading.Thread(target=lambda: seen.setdefault("logits", model(ids).logits))
            other.start()
            other.join()
    assert not torch.allclose(steered, plain)
    torch.testing.assert_close(seen["logits"], plain)
