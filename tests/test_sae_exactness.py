"""Every kind of residual SAE sae-lens ships is steered exactly as sae-lens itself encodes and
decodes: ``h' = dec(relu(enc(h) + m·v)) + (h − dec(enc(h)))``, in both training engines, ``apply``
and ``generate``; what cannot be steered exactly is refused, saying why."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import consistent_pairs, make_model
from parity import check_steps_against_the_oracle
from sae_lens import (
    AbsTopKSAE,
    AbsTopKSAEConfig,
    BatchTopKTrainingSAE,
    BatchTopKTrainingSAEConfig,
    GatedSAE,
    GatedSAEConfig,
    JumpReLUSAE,
    JumpReLUSAEConfig,
    StandardSAE,
    StandardSAEConfig,
    TopKSAE,
    TopKSAEConfig,
)

from yapo_core import SteeringVector, TrainConfig, Trainer, generate
from yapo_core.errors import SAELoadError, SettingsError
from yapo_core.saes import check_sae_fits, decoder_is_linear
from yapo_core.steering import dense_equivalent, steer_hidden

KINDS = {
    "standard": (StandardSAE, StandardSAEConfig, {}),
    "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig, {}),
    "gated": (GatedSAE, GatedSAEConfig, {}),
    "topk": (TopKSAE, TopKSAEConfig, {"k": 12}),
    # as sae-lens's save_model writes a TopK SAE after training: decoder rows of any norm, rescaled
    "topk-rescaled": (TopKSAE, TopKSAEConfig, {"k": 12, "rescale_acts_by_decoder_norm": True}),
}
NORMALISATIONS = ("none", "expected_average_only_in", "covariance_whitening", "layer_norm", "constant_norm_rescale")
LINEAR = ("none", "expected_average_only_in", "covariance_whitening")  # decode undoes no per-token scale


def build_sae(kind, normalize="none", b_dec_to_input=True, layer=1, position="post", seed=0):
    cls, config_cls, extra = KINDS[kind]
    torch.manual_seed(seed)
    cfg = config_cls(d_in=32, d_sae=128, apply_b_dec_to_input=b_dec_to_input, normalize_activations=normalize, **extra)
    cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_{position}"
    sae = cls(cfg)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name.startswith("b_") or name in ("r_mag",):
                p.normal_(0, 0.1)
        sae.W_dec.mul_(torch.empty(128, 1).uniform_(0.3, 3.0))  # rows of many norms
        if hasattr(sae, "threshold"):
            sae.threshold.fill_(0.05)
    sae.eval()
    sae.requires_grad_(False)
    return sae


def sae_lens_steering(h, sae, a):
    """The method's formula through sae-lens's own calls, each decode right after its encode."""
    return h + sae.decode(F.relu(sae.encode(h) + a)) - sae.decode(sae.encode(h))


CASES = [(k, n, b) for k in KINDS for n in NORMALISATIONS for b in (True, False)]


@pytest.mark.parametrize("kind, normalize, b_dec_to_input", CASES)
def test_steering_a_residual_is_what_sae_lens_computes(kind, normalize, b_dec_to_input):
    sae = build_sae(kind, normalize, b_dec_to_input)
    h = torch.randn(2, 5, 32) * 3
    v = torch.randn(128)
    for m in (1.0, -0.5, torch.tensor([1.0, 2.0]).view(2, 1, 1)):
        expected = sae_lens_steering(h, sae, v * m)
        torch.testing.assert_close(steer_hidden(h, "sparse", v, m, sae), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(steer_hidden(h, "sparse", torch.zeros(128), 1.0, sae), h, rtol=0, atol=1e-5)
    assert decoder_is_linear(sae) == (normalize in LINEAR)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("normalize", NORMALISATIONS)
@pytest.mark.parametrize("position", ["post", "pre"])
def test_training_matches_the_oracle_with_the_engine_auto_chooses(tokenizer, kind, normalize, position):
    model, sae = make_model("llama"), build_sae(kind, normalize, position=position)
    trainer = Trainer(model, tokenizer, consistent_pairs(8, seed=2),
                      TrainConfig(kind="sparse", max_steps=2, batch_size=4, lr=0.05, warmup_steps=1, grad_clip=1e9),
                      sae=sae)
    expected = "fast" if normalize in LINEAR else "simple"
    assert trainer.objective.engine == expected, trainer.objective.reason
    if expected == "simple":
        assert normalize in trainer.objective.reason  # it says why
    check_steps_against_the_oracle(trainer, tokenizer, model, sae, "sparse", 1, position, 2)
    assert trainer.history[0].loss == pytest.approx(math.log(2), abs=1e-5)


def test_the_fast_engine_refuses_an_sae_that_normalises_its_input(tokenizer):
    with pytest.raises(SettingsError, match="layer_norm.*engine='simple' or 'auto'"):
        Trainer(make_model("llama"), tokenizer, consistent_pairs(4), TrainConfig(kind="sparse", engine="fast"),
                sae=build_sae("standard", "layer_norm"))


@pytest.mark.parametrize("kind, normalize", [("topk-rescaled", "none"), ("jumprelu", "layer_norm"),
                                             ("gated", "constant_norm_rescale")])
def test_apply_and_generate_steer_as_sae_lens_computes(tokenizer, kind, normalize):
    model, sae = make_model("llama"), build_sae(kind, normalize)
    vector = SteeringVector("sparse", torch.randn(128, generator=torch.Generator().manual_seed(1)) * 2,
                            "blocks.1.hook_resid_post", sae=sae)
    block = model.model.layers[1]

    def by_hand(m):
        return block.register_forward_hook(lambda mod, args, out: (sae_lens_steering(out[0], sae, m * vector.values),)
                                           + tuple(out[1:]) if isinstance(out, tuple)
                                           else sae_lens_steering(out, sae, m * vector.values))

    ids = torch.randint(7, 90, (2, 9))
    handle = by_hand(1.5)
    try:
        expected_logits = model(ids).logits
    finally:
        handle.remove()
    with vector.apply(model, 1.5):
        torch.testing.assert_close(model(ids).logits, expected_logits, rtol=1e-4, atol=1e-4)
    prompt = "Do you like tea?"
    steered = generate(model, tokenizer, prompt, vector, [1.5], max_new_tokens=8)[0][1.5]
    enc = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    handle = by_hand(1.5)
    try:
        out = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
    finally:
        handle.remove()
    assert steered == tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_a_dense_export_of_a_rescaled_topk_vector_decodes_as_sae_lens_does():
    sae = build_sae("topk-rescaled")
    a = torch.rand(128)  # non-negative: the export is exact
    delta, dropped = dense_equivalent(SteeringVector("sparse", a, "blocks.1.hook_resid_post", sae=sae), sae)
    torch.testing.assert_close(delta, sae.decode(a) - sae.decode(torch.zeros(128)), rtol=1e-5, atol=1e-5)
    assert dropped == 0.0


def test_an_sae_whose_codes_can_be_negative_is_refused(tokenizer):
    cfg = AbsTopKSAEConfig(d_in=32, d_sae=128, k=8)
    cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    sae = AbsTopKSAE(cfg)
    with pytest.raises(SAELoadError, match="'abstopk'.*cannot be steered exactly"):
        Trainer(make_model("llama"), tokenizer, consistent_pairs(4), TrainConfig(kind="sparse"), sae=sae)
    with pytest.raises(SAELoadError, match="cannot be steered exactly"):
        with SteeringVector("sparse", torch.zeros(128), "blocks.1.hook_resid_post", sae=sae).apply(make_model("llama"), 1.0):
            pass


def centred_sae(kind="standard"):
    """An SAE whose metadata says it was trained on TransformerLens's residual with centred writing
    weights, as sae-lens's registry says of ``gpt2-small-res-jb``."""
    sae = build_sae(kind)
    sae.cfg.metadata.model_from_pretrained_kwargs = {"center_writing_weights": True}
    return sae


def test_an_sae_trained_on_a_centred_residual_reads_the_residual_centred():
    sae, v = centred_sae(), torch.randn(128)
    h = torch.randn(2, 5, 32) * 3 + torch.randn(2, 5, 1) * 4  # a mean over the hidden dimension per token
    centred = h - h.mean(-1, keepdim=True)
    expected = h + sae.decode(F.relu(sae.encode(centred) + v)) - sae.decode(sae.encode(centred))
    check_sae_fits(make_model("gpt2"), sae)  # a LayerNorm model: TransformerLens centres its writing weights
    torch.testing.assert_close(steer_hidden(h, "sparse", v, 1.0, sae), expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(sae_lens_steering(h, sae, v), expected, atol=1e-2)  # the raw residual would differ
    # an RMSNorm model, whose writing weights TransformerLens leaves as they are: the raw residual
    check_sae_fits(make_model("llama"), sae)
    torch.testing.assert_close(steer_hidden(h, "sparse", v, 1.0, sae), sae_lens_steering(h, sae, v), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("engine", ["fast", "simple"])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_training_with_a_centring_sae_matches_the_oracle(tokenizer, engine, family):
    model, sae = make_model(family), centred_sae("topk")
    trainer = Trainer(model, tokenizer, consistent_pairs(8, seed=2),
                      TrainConfig(kind="sparse", max_steps=2, batch_size=4, lr=0.05, warmup_steps=1, grad_clip=1e9,
                                  engine=engine), sae=sae)
    check_steps_against_the_oracle(trainer, tokenizer, model, sae, "sparse", 1, "post", 2)


def test_a_bf16_sae_trains_with_the_fast_engine_as_with_the_simple_one(tokenizer):
    losses = {}
    for engine in ("fast", "simple"):
        model, sae = make_model("llama"), build_sae("topk").to(torch.bfloat16)
        trainer = Trainer(model, tokenizer, consistent_pairs(8, seed=2),
                          TrainConfig(kind="sparse", max_steps=3, batch_size=4, lr=0.05, engine=engine), sae=sae)
        losses[engine] = [m.loss for m in trainer]
    assert losses["fast"] == pytest.approx(losses["simple"], rel=2e-2, abs=1e-3)


def test_a_half_precision_residual_is_rounded_once():
    h = (torch.randn(3, 7, 32) * 5).to(torch.bfloat16)
    v = torch.randn(32) * 0.3
    assert torch.equal(steer_hidden(h, "dense", v, 1.0), (h.float() + v).to(torch.bfloat16))
    sae = build_sae("standard")
    delta = steer_hidden(h.float(), "sparse", v.new_ones(128) * 0.2, 1.0, sae) - h.float()
    assert torch.equal(steer_hidden(h, "sparse", v.new_ones(128) * 0.2, 1.0, sae), (h.float() + delta).to(torch.bfloat16))


def test_an_sae_whose_top_k_runs_over_the_batch_is_refused(tokenizer):
    cfg = BatchTopKTrainingSAEConfig(d_in=32, d_sae=128, k=8)
    cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    with pytest.raises(SAELoadError, match="'batchtopk'.*whole batch.*JumpReLU"):
        Trainer(make_model("llama"), tokenizer, consistent_pairs(4), TrainConfig(kind="sparse"),
                sae=BatchTopKTrainingSAE(cfg))


def test_sas_and_feature_activity_read_a_centring_sae_centred(tokenizer):
    from yapo_core import features as F
    from yapo_core.baselines import answer_activations, compute_sas, sas_direction

    model, sae = make_model("gpt2"), centred_sae()
    pairs = consistent_pairs(8, seed=3)
    chosen, rejected = answer_activations(model, tokenizer, pairs, check_sae_fits(model, sae), "all")
    codes = lambda rows: torch.stack([sae.encode(r - r.mean(-1, keepdim=True)).mean(0) for r in rows])  # noqa: E731
    expected, kept, dropped = sas_direction(codes(chosen), codes(rejected), 0.5)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(compute_sas(model, tokenizer, pairs, sae, tau=0.5).values, expected)
    texts = F.dialogue_texts(tokenizer, pairs[:3])
    activity = F.latent_activity(model, tokenizer, sae, texts, list(range(128)), top_n=1)
    peaks = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
            h = model(input_ids=ids, output_hidden_states=True).hidden_states[2][0]  # output of block 1
            h = h[ids[0] != tokenizer.bos_token_id]
            peaks.append(sae.encode(h - h.mean(-1, keepdim=True)).max(0).values)
    best = torch.stack(peaks).max(0).values.clamp(min=0)
    torch.testing.assert_close(torch.tensor([activity[i].max_value for i in range(128)]), best, rtol=1e-4, atol=1e-5)
