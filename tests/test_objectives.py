"""The fast trainer computes the straightforward objective: same loss, same vector gradient."""

import math
from pathlib import Path

import pytest
import torch
from conftest import NEW_FAMILIES, consistent_pairs, make_model, make_sae
from parity import check_steps_against_the_oracle

from yapo_core import TrainConfig, Trainer
from yapo_core.activation_cache import PairCache
from yapo_core.errors import SettingsError
from yapo_core.hooks import HookPoint
from yapo_core.objectives import capture_block_inputs, packed_pair_masks, run_blocks, sparse_update


def _pairs(n=10):
    pairs = consistent_pairs(n, seed=5)
    pairs[0].prompt = "A much longer question that makes this prompt the longest one: " + pairs[0].prompt
    return pairs


@pytest.mark.parametrize("family", ["llama", "gemma2", "mistral", "gpt2", "gpt_neox", "qwen2", *NEW_FAMILIES])
@pytest.mark.parametrize("kind", ["sparse", "dense"])
@pytest.mark.parametrize("layout", ["shared-prompt eager", "shared-prompt sdpa", "separate"])
def test_fast_matches_the_oracle_step_by_step(tokenizer, family, kind, layout):
    if family == "gemma2" and "sdpa" in layout:
        pytest.skip("transformers has no SDPA attention for Gemma-2")
    if family in NEW_FAMILIES and layout == "shared-prompt sdpa":
        pytest.skip("one attention implementation is enough for the families that differ only in their rows")
    model = make_model(family, attn="sdpa" if "sdpa" in layout else "eager")  # Gemma-2: window 12 < pairs
    if family == "gemma2":
        model.config.final_logit_softcapping = 5.0  # exercise the soft-capped head
    sae = make_sae(layer=1)
    # no clipping: the gradient is compared as the objective gives it
    cfg = dict(kind=kind, layer=1, max_steps=4, batch_size=4, lr=0.05, warmup_steps=1, seed=3, grad_clip=1e9)
    fast = Trainer(model, tokenizer, _pairs(), TrainConfig(engine="fast", **cfg), sae=sae)
    assert fast.objective.share_prompt  # eager and SDPA attention take the packed masks
    fast.objective.share_prompt = layout != "separate"  # the layout for other attention kinds
    check_steps_against_the_oracle(fast, tokenizer, model, sae, kind, 1, "post", cfg["max_steps"])


@pytest.mark.parametrize("family, stray", [
    ("llama", dict(sliding_window=6)),  # Llama never windows, whatever its config holds
    ("olmo2", dict(sliding_window=6)),
    ("mistral", dict(layer_types=["sliding_attention", "full_attention"] * 2)),  # Mistral windows every block
])
def test_the_shared_prompt_masks_window_as_the_model_does_not_as_stray_config_keys_say(tokenizer, family, stray):
    """A converted or fine-tuned config.json may carry keys its family's blocks never read; the fast
    engine's own masks must follow what the model does (the oracle runs the model's forward)."""
    model = make_model(family)
    for key, value in stray.items():
        setattr(model.config, key, value)
    cfg = dict(kind="dense", layer=1, max_steps=2, batch_size=4, lr=0.05, warmup_steps=1, seed=3, grad_clip=1e9)
    fast = Trainer(model, tokenizer, _pairs(), TrainConfig(engine="fast", **cfg))
    assert fast.objective.share_prompt
    check_steps_against_the_oracle(fast, tokenizer, model, None, "dense", 1, "post", cfg["max_steps"])


def test_a_rope_that_follows_the_batch_length_trains_with_the_simple_engine_past_that_length(tokenizer):
    """Phi-3's longrope picks its frequencies from a batch's longest sequence past
    ``original_max_position_embeddings``: the cache's batches are not a step's, so the fast engine
    is exact only on sequences short of it."""
    import transformers
    from conftest import tiny_config

    from yapo_core.architectures import length_dependent_rope
    from yapo_core.models import prepare_model

    config = tiny_config("phi3")
    config.original_max_position_embeddings = 48  # the pairs run from 36 to 103 tokens
    config.rope_parameters = {"rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": 48,
                              "long_factor": [4.0] * 4, "short_factor": [1.0] * 4}
    torch.manual_seed(0)
    model = prepare_model(transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager"))
    assert length_dependent_rope(model) == ("longrope", 48) and length_dependent_rope(make_model("phi3")) is None
    cfg = dict(kind="dense", layer=1, max_steps=3, batch_size=4, lr=0.05, warmup_steps=1, seed=3, grad_clip=1e9)
    with pytest.raises(SettingsError, match="longrope rope changes its frequencies .* past 48 tokens, and the pairs run to 103.*max_length to 48"):
        Trainer(model, tokenizer, _pairs(), TrainConfig(engine="fast", **cfg))
    auto = Trainer(model, tokenizer, _pairs(), TrainConfig(engine="auto", **cfg))
    assert auto.objective.engine == "simple" and "longrope" in auto.objective.reason
    check_steps_against_the_oracle(auto, tokenizer, model, None, "dense", 1, "post", cfg["max_steps"])
    short = Trainer(model, tokenizer, _pairs(), TrainConfig(engine="auto", max_length=48, **cfg))
    assert short.objective.engine == "fast"  # the longest prompt is cut to fit


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("layer", [0, 2])
@pytest.mark.parametrize("engine", ["fast", "simple"])
def test_hook_resid_pre_sae_matches_the_oracle(tokenizer, family, layer, engine):
    """``blocks.L.hook_resid_pre`` is the input of block L (for L = 0 the embedding output), in
    every engine; at v = 0 the loss is ln 2."""
    model, sae = make_model(family), make_sae(layer=layer, position="pre")
    trainer = Trainer(model, tokenizer, _pairs(), TrainConfig(kind="sparse", engine=engine, max_steps=3, batch_size=4,
                                                                lr=0.05, warmup_steps=1, seed=3, grad_clip=1e9), sae=sae)
    assert trainer.point.hook_name == f"blocks.{layer}.hook_resid_pre"
    check_steps_against_the_oracle(trainer, tokenizer, model, sae, "sparse", layer, "pre", 3)
    assert trainer.history[0].loss == pytest.approx(math.log(2), abs=1e-6)


def test_fast_and_simple_trainers_agree_over_several_steps(tokenizer):
    runs = {}
    for engine in ("fast", "simple"):
        trainer = Trainer(make_model("llama"), tokenizer, _pairs(12),
                          TrainConfig(kind="sparse", engine=engine, max_steps=6, batch_size=4, lr=0.05, warmup_steps=1),
                          sae=make_sae())
        runs[engine] = ([m.loss for m in trainer], [m.multiplier for m in trainer.history], trainer.vector.values)
    assert runs["fast"][1] == runs["simple"][1]
    assert runs["fast"][0] == pytest.approx(runs["simple"][0], rel=1e-4)
    torch.testing.assert_close(runs["fast"][2], runs["simple"][2], rtol=1e-3, atol=1e-5)


def test_sparse_identity_has_the_straightforward_gradient_at_zero():
    sae = make_sae()
    h = torch.randn(7, 32)
    z = sae.encode(h)
    counts = (z > 0).sum(-1).int()
    idx = (z > 0).nonzero()[:, 1].int()
    vals = z[z > 0]
    for a0 in (torch.zeros(128), torch.randn(128)):
        a1 = a0.clone().requires_grad_(True)
        a2 = a0.clone().requires_grad_(True)
        fast = sparse_update(h, a1, sae.W_dec, counts, idx, vals)
        plain = sae.decode(torch.relu(z + a2)) + (h - sae.decode(z))
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
        fast.pow(2).sum().backward()
        plain.pow(2).sum().backward()
        torch.testing.assert_close(a1.grad, a2.grad, rtol=1e-4, atol=1e-5)
        assert a1.grad.abs().sum() > 0


def test_block_inputs_reproduce_the_full_forward(tokenizer):
    for family in ("llama", "gemma2", "gpt2"):
        model = make_model(family)
        ids = torch.randint(7, 100, (2, 9))
        attn = torch.ones_like(ids)
        attn[1, 6:] = 0
        seen = {}
        handle = model.get_submodule({"gpt2": "transformer.h"}.get(family, "model.layers"))[1].register_forward_hook(
            lambda m, a, o: seen.setdefault("h", o))
        try:
            with torch.no_grad():
                full = model(input_ids=ids, attention_mask=attn, output_hidden_states=True)
        finally:
            handle.remove()
        with torch.no_grad():
            tail = run_blocks(model, seen["h"], capture_block_inputs(model, ids, attn), 2)
        from yapo_core.architectures import unembed
        torch.testing.assert_close(unembed(model, tail)[attn.bool()], full.logits[attn.bool()], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_packed_masks_are_built_where_the_segments_are(family):
    """On a GPU the masks must be made there, or attention meets a CPU mask (tests/test_cuda.py runs
    it on CUDA; the meta device catches a tensor made on the CPU here)."""
    model = make_model(family)
    segments = torch.tensor([[0, 0, 1, 1, 2, -1]], device="meta")
    positions = torch.tensor([[0, 1, 2, 3, 2, 0]], device="meta")
    masks = packed_pair_masks(model, segments, positions, torch.float32)
    for mask in masks.values() if isinstance(masks, dict) else [masks]:
        assert mask.device.type == "meta" and mask.shape == (1, 1, 6, 6)


def test_cache_on_disk_is_reused_and_rebuilt_when_inputs_change(tokenizer, tmp_path):
    from yapo_core.encoding import encode_pairs

    model, sae = make_model("llama"), make_sae()
    encoded, _ = encode_pairs(tokenizer, _pairs(6))
    build = lambda m, s, enc, **kw: PairCache.build(m, s, HookPoint(1, "post"), enc, 0, cache_dir=tmp_path, **kw)  # noqa: E731
    first = build(model, sae, encoded)
    assert len(list(tmp_path.iterdir())) == 1
    again = build(model, sae, encoded, in_memory=False)
    assert again.key == first.key and again._entries is None
    torch.testing.assert_close(again[3].chosen_h, first[3].chosen_h)
    assert again[3].reference == first[3].reference
    build(model, make_sae(seed=1), encoded)  # another SAE
    build(make_model("llama", seed=1), sae, encoded)  # other weights
    build(model, sae, encoded[:5])  # other data
    assert len(list(tmp_path.iterdir())) == 4
    shifted = make_sae()  # the same matrices, another encoder bias: other latents fire
    with torch.no_grad():
        shifted.b_enc.add_(5.0)
    assert build(model, shifted, encoded).key != first.key
    tuned = make_model("llama")  # the same first and last blocks, a middle one fine-tuned
    with torch.no_grad():
        tuned.model.layers[2].mlp.down_proj.weight.mul_(1.1)
    assert build(tuned, sae, encoded).key != first.key
    assert len(list(tmp_path.iterdir())) == 6


def test_a_cache_appears_whole_or_not_at_all(tokenizer, tmp_path, monkeypatch):
    """A build writes beside its folder and renames it when complete: a run reading the cache
    meanwhile never meets half-written shards, and a failed build leaves nothing behind."""
    import yapo_core.activation_cache as AC
    from yapo_core.encoding import encode_pairs

    model, sae = make_model("llama"), make_sae()
    encoded, _ = encode_pairs(tokenizer, _pairs(6))
    key = AC.fingerprint(model, sae, "blocks.1.hook_resid_post", encoded)
    (tmp_path / key).mkdir()
    (tmp_path / key / "shard-00000.safetensors").write_bytes(b"half")  # a build that never finished
    real_save, seen = AC.save_file, []

    def save(tensors, path):
        seen.append(Path(path).parent.name)
        assert not (tmp_path / key / "complete.json").exists()
        real_save(tensors, path)

    monkeypatch.setattr(AC, "save_file", save)
    cache = PairCache.build(model, sae, HookPoint(1, "post"), encoded, 0, cache_dir=tmp_path, in_memory=False)
    assert seen and all(name.startswith(f".{key}.building-") for name in seen)
    assert [p.name for p in tmp_path.iterdir()] == [key] and (tmp_path / key / "complete.json").is_file()
    assert cache.folder == tmp_path / key and cache[5].reference
    # a build that fails midway leaves nothing; one whose process died is swept by the next build
    other = encoded[:5]
    other_key = AC.fingerprint(model, sae, "blocks.1.hook_resid_post", other)

    def full_disk(tensors, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(AC, "save_file", full_disk)
    with pytest.raises(OSError, match="No space left"):
        PairCache.build(model, sae, HookPoint(1, "post"), other, 0, cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [key]
    monkeypatch.setattr(AC, "save_file", real_save)
    dead = tmp_path / f".{other_key}.building-99999999-1"  # no such process
    dead.mkdir()
    PairCache.build(model, sae, HookPoint(1, "post"), other, 0, cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([key, other_key])


def test_disk_backed_training_matches_memory(tokenizer, tmp_path):
    losses = []
    for in_memory in (True, False):
        cfg = TrainConfig(kind="sparse", engine="fast", max_steps=3, batch_size=4, cache_dir=str(tmp_path / str(in_memory)),
                          cache_in_memory=in_memory)
        losses.append([m.loss for m in Trainer(make_model("llama"), tokenizer, _pairs(8), cfg, sae=make_sae())])
    assert losses[0] == losses[1]
    with pytest.raises(SettingsError, match="needs cache_dir"):
        Trainer(make_model("llama"), tokenizer, _pairs(4), TrainConfig(kind="dense", layer=1, cache_in_memory=False))


def test_cache_goes_to_disk_when_it_would_not_fit_in_memory(tokenizer, tmp_path, monkeypatch):
    import yapo_core.objectives as fast

    monkeypatch.setattr(fast, "available_memory", lambda: 1000)  # bytes
    cfg = TrainConfig(kind="sparse", engine="fast", max_steps=1, cache_dir=str(tmp_path))
    trainer = Trainer(make_model("llama"), tokenizer, _pairs(4), cfg, sae=make_sae())
    assert trainer.objective.in_memory is False and trainer.objective.cache._entries is None
    monkeypatch.setattr(fast, "available_memory", lambda: 2**40)
    trainer = Trainer(make_model("llama"), tokenizer, _pairs(4), cfg, sae=make_sae())
    assert trainer.objective.in_memory is True


@pytest.mark.parametrize("normalize, exclusive", [("none", False), ("expected_average_only_in", False),
                                                   ("layer_norm", True), ("constant_norm_rescale", True)])
def test_a_step_needs_the_model_to_itself_only_with_an_sae_that_keeps_state_between_encode_and_decode(normalize, exclusive):
    from yapo_core.objectives import FastObjective, SimpleObjective

    model, sae = make_model("llama"), make_sae()
    sae.cfg.normalize_activations = normalize
    point = HookPoint(1, "post")
    assert SimpleObjective(model, sae, point, "sparse").exclusive is exclusive
    assert SimpleObjective(model, sae, point, "dense").exclusive is False
    assert FastObjective(model, make_sae(), point, "sparse").exclusive is False


def test_phi3_windows_every_block_as_its_attention_does(tokenizer):
    model = make_model("phi3")
    model.config.sliding_window = 6  # Phi-3-mini's config sets one (2047); the tiny config none
    cfg = dict(kind="dense", layer=1, max_steps=2, batch_size=4, lr=0.05, warmup_steps=1, seed=3, grad_clip=1e9)
    fast = Trainer(model, tokenizer, _pairs(), TrainConfig(engine="fast", **cfg))
    assert fast.objective.share_prompt
    check_steps_against_the_oracle(fast, tokenizer, model, None, "dense", 1, "post", cfg["max_steps"])


def test_a_cache_on_disk_is_keyed_by_its_hook_point(tokenizer, tmp_path):
    from yapo_core.encoding import encode_pairs

    model = make_model("llama")
    encoded, _ = encode_pairs(tokenizer, _pairs(6))
    one = PairCache.build(model, None, HookPoint(1, "post"), encoded, 0, cache_dir=tmp_path)
    two = PairCache.build(model, None, HookPoint(2, "post"), encoded, 0, cache_dir=tmp_path)
    assert one.key != two.key and not torch.equal(one[0].prompt_h, two[0].prompt_h)
