"""Applying vectors: hooks come off, multiplier 0 is exact, the sparse formula is the paper's."""

import pytest
import torch
import torch.nn.functional as F
from conftest import make_model, make_sae

from yapo_core import SteeringVector
from yapo_core.architectures import decoder_layers
from yapo_core.errors import SAELoadError, SettingsError, VectorFileError
from yapo_core.steering import dense_equivalent


def _ids(n=12, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(7, 100, (batch, n), generator=g)


def _sparse_vector(seed=0, d_sae=128, layer=1):
    g = torch.Generator().manual_seed(seed)
    return SteeringVector("sparse", torch.randn(d_sae, generator=g), f"blocks.{layer}.hook_resid_post")


def _dense_vector(seed=0, d=32, layer=1):
    g = torch.Generator().manual_seed(seed)
    return SteeringVector("dense", torch.randn(d, generator=g), f"blocks.{layer}.hook_resid_post")


def test_hooks_come_off_and_multiplier_zero_is_bit_identical(family):
    model, sae = make_model(family), make_sae()
    ids = _ids()
    before = model(ids).logits
    vec = _sparse_vector()
    hooks = lambda: sum(len(b._forward_hooks) + len(b._forward_pre_hooks) for b in decoder_layers(model))  # noqa: E731
    n_hooks = hooks()
    with vec.apply(model, 0.0, sae=sae):
        assert hooks() == n_hooks  # multiplier 0 registers nothing: exact by construction
        at_zero = model(ids).logits
    with vec.apply(model, 1.5, sae=sae):
        assert hooks() == n_hooks + 1
    with vec.apply(model, 1.5, sae=sae):
        steered = model(ids).logits
    after = model(ids).logits
    assert torch.equal(before, at_zero)
    assert torch.equal(before, after)
    assert not torch.allclose(before, steered)
    assert all(not layer._forward_hooks and not layer._forward_pre_hooks for layer in decoder_layers(model))


def test_hooks_come_off_on_exceptions():
    model, vec = make_model("llama"), _dense_vector()
    with pytest.raises(RuntimeError, match="boom"):
        with vec.apply(model, 1.0):
            raise RuntimeError("boom")
    assert all(not layer._forward_hooks for layer in decoder_layers(model))


def _straightforward_sparse(model, sae, vec, m, layer):
    """encode → add → ReLU → decode → add the reconstruction error, written out by hand."""

    def hook(module, args, output):
        h = output
        z = sae.encode(h)
        return sae.decode(F.relu(z + m * vec.values)) + (h - sae.decode(z))

    return decoder_layers(model)[layer].register_forward_hook(hook)


def test_sparse_application_equals_straightforward_formula(family):
    model, sae = make_model(family), make_sae()
    vec, ids = _sparse_vector(), _ids()
    handle = _straightforward_sparse(model, sae, vec, 0.7, 1)
    try:
        expected = model(ids).logits
    finally:
        handle.remove()
    with vec.apply(model, 0.7, sae=sae):
        got = model(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_sparse_application_in_generate_matches_straightforward():
    model, sae = make_model("llama"), make_sae()
    vec, ids = _sparse_vector(seed=3) , _ids(n=6, batch=1)
    gen = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    handle = _straightforward_sparse(model, sae, vec, 2.0, 1)
    try:
        expected = model.generate(ids, **gen)
    finally:
        handle.remove()
    with vec.apply(model, 2.0, sae=sae):
        got = model.generate(ids, **gen)
    unsteered = model.generate(ids, **gen)
    assert torch.equal(got, expected)
    assert not torch.equal(got, unsteered)


def test_dense_application_adds_multiplier_times_vector():
    model, vec = make_model("llama"), _dense_vector()
    layer = decoder_layers(model)[1]
    with vec.apply(model, -0.5):
        got = model(_ids()).logits
    hook = layer.register_forward_hook(lambda mod, a, out: out - 0.5 * vec.values)
    try:
        expected = model(_ids()).logits
    finally:
        hook.remove()
    torch.testing.assert_close(got, expected)


def test_resid_pre_hooks_the_input_of_the_block():
    model = make_model("gpt2")
    pre = SteeringVector("dense", _dense_vector().values, "blocks.2.hook_resid_pre")
    post = SteeringVector("dense", _dense_vector().values, "blocks.1.hook_resid_post")
    ids = _ids()
    with pre.apply(model, 1.0):
        a = model(ids).logits
    with post.apply(model, 1.0):
        b = model(ids).logits
    torch.testing.assert_close(a, b)
    assert pre.layer == 1


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batches_steer_each_row_like_alone(side):
    model, sae, vec = make_model("llama"), make_sae(), _sparse_vector()
    short, long = _ids(n=5, batch=1, seed=1), _ids(n=9, batch=1, seed=2)
    pad = torch.zeros(1, 4, dtype=torch.long)
    padded = torch.cat([pad, short], 1) if side == "left" else torch.cat([short, pad], 1)
    mask = (torch.arange(9) >= 4) if side == "left" else (torch.arange(9) < 5)
    batch = torch.cat([padded, long])
    attn = torch.stack([mask.long(), torch.ones(9, dtype=torch.long)])
    kwargs = {}
    if side == "left":
        kwargs["position_ids"] = (attn.cumsum(-1) - 1).clamp(min=0)
    with vec.apply(model, 1.0, sae=sae):
        together = model(batch, attention_mask=attn, **kwargs).logits
        alone_short = model(short).logits
        alone_long = model(long).logits
    rows = together[0, 4:] if side == "left" else together[0, :5]
    torch.testing.assert_close(rows, alone_short[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(together[1], alone_long[0], rtol=1e-4, atol=1e-4)


def test_sparse_vector_without_sae_or_wrong_width_is_refused():
    model = make_model("llama")
    with pytest.raises(SAELoadError, match="needs its SAE"):
        with _sparse_vector().apply(model, 1.0):
            pass
    with pytest.raises(VectorFileError, match="has 128 entries but the SAE has 64 latents"):
        with _sparse_vector().apply(model, 1.0, sae=make_sae(d_sae=64)):
            pass
    with pytest.raises(VectorFileError, match="steers the output of block 1 but the SAE reads 'blocks.3.hook_resid_post'"):
        with _sparse_vector().apply(model, 1.0, sae=make_sae(layer=3)):
            pass
    with pytest.raises(SettingsError, match="hidden size is 32"):
        with _dense_vector(d=16).apply(model, 1.0):
            pass
    with pytest.raises(SettingsError, match="layer 7 is out of range"):
        with _dense_vector(layer=7).apply(model, 1.0):
            pass


def test_dense_equivalent_is_exact_for_nonnegative_vectors_and_reports_the_rest():
    sae = make_sae()
    vec = SteeringVector("sparse", torch.tensor([1.0, -3.0] + [0.0] * 126), "blocks.1.hook_resid_post")
    delta, dropped = dense_equivalent(vec, sae, 1.0)
    torch.testing.assert_close(delta, sae.W_dec[0])
    assert dropped == pytest.approx(0.75)
    delta, dropped = dense_equivalent(vec, sae, -1.0)
    torch.testing.assert_close(delta, 3.0 * sae.W_dec[1])
    assert dropped == pytest.approx(0.25)


def test_vector_statistics():
    vec = SteeringVector("dense", torch.tensor([3.0, -4.0, 0.0, 0.0]), "blocks.0.hook_resid_post")
    assert vec.l0() == 2 and vec.norm() == pytest.approx(5.0)
    assert vec.top_mass(1) == pytest.approx(4 / 7)
    assert vec.method == "bipo"
