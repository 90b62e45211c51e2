"""Loading models and tokenizers from local folders, and clear errors for hub ids offline."""

import os

import pytest
import torch
from conftest import make_model

from yapo_core.errors import ModelLoadError, SettingsError
from yapo_core.hooks import module_device
from yapo_core.models import load_model, resolve_device, resolve_dtype
from yapo_core.saes import sae_hook_name


def test_load_local_folder_frozen_in_eval_mode(tmp_path, tokenizer):
    make_model("llama").save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, tok = load_model(tmp_path, device="cpu", dtype="bf16")
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert next(model.parameters()).dtype == torch.bfloat16
    assert tok.chat_template and tok.pad_token_id is not None


def test_unknown_hub_id_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache|was not found"):
        load_model("nobody-xyz/no-such-model-123", device="cpu")


def test_missing_local_folder():
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("./no/such/folder")


def test_a_source_that_is_no_hub_id_is_named_as_such_not_as_missing_from_the_cache(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="'not a valid id!!' is neither an existing local folder nor a Hugging Face id"):
        load_model("not a valid id!!")


def test_device_and_dtype_checks():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(SettingsError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(SettingsError, match="dtype 'fp8' is unknown"):
        resolve_dtype("fp8")


def test_device_map_auto_loads_through_accelerate_and_steers(tmp_path, tokenizer):
    """Sharding itself needs several GPUs; this checks the accelerate path end to end on CPU."""
    from conftest import consistent_pairs, make_sae

    from yapo_core import SteeringVector, TrainConfig, Trainer

    make_model("llama").save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, tok = load_model(tmp_path, dtype="fp32", device_map="auto")
    vec = SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post")
    ids = torch.tensor([[5, 6, 7]])
    with vec.apply(model, 1.0):
        steered = model(ids).logits
    assert not torch.equal(steered, model(ids).logits)
    trainer = Trainer(model, tok, consistent_pairs(4), TrainConfig(kind="sparse", max_steps=1), sae=make_sae())
    assert len(list(trainer)) == 1


@pytest.mark.parametrize("engine", ["simple", "fast"])
def test_a_dispatched_model_with_an_offloaded_block_steers_and_trains_as_a_plain_one(tmp_path, tokenizer, engine):
    """accelerate's hooks on the steered block (its weights offloaded to disk, on the meta device
    until it runs) as with a model sharded over GPUs: the SAE is placed on the block's execution
    device, and steering and both training engines give the plain model's numbers."""
    from conftest import consistent_pairs, make_sae

    from yapo_core import SteeringVector, TrainConfig, Trainer
    from yapo_core.architectures import decoder_layers
    from yapo_core.saes import place_sae

    plain = make_model("llama")
    plain.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    layout = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "cpu", "lm_head": "cpu",
              **{f"model.layers.{i}": "disk" if i in (1, 2) else "cpu" for i in range(plain.config.num_hidden_layers)}}
    model, tok = load_model(tmp_path / "m", device_map=layout, offload_folder=tmp_path / "offload")
    block = decoder_layers(model)[1]
    assert next(block.parameters()).device.type == "meta" and module_device(block).type == "cpu"
    sae = make_sae()
    assert place_sae(model, sae).resid_layer == 1 and sae.W_dec.device.type == "cpu"

    vector = SteeringVector("sparse", torch.rand(128), sae_hook_name(sae), sae=sae)
    ids = torch.tensor([[5, 6, 7, 8]])
    with vector.apply(model, 1.0):
        steered = model(ids).logits
    with vector.apply(plain, 1.0):
        expected = plain(ids).logits
    torch.testing.assert_close(steered, expected, rtol=1e-4, atol=1e-5)

    config = TrainConfig(kind="sparse", max_steps=3, batch_size=2, lr=0.05, warmup_steps=1, engine=engine)
    dispatched = [m.loss for m in Trainer(model, tok, consistent_pairs(6), config, sae=sae)]
    reference = [m.loss for m in Trainer(plain, tokenizer, consistent_pairs(6), config, sae=make_sae())]
    assert dispatched == pytest.approx(reference, rel=1e-4)


def test_openmp_waits_passively_and_torch_uses_the_available_cores():
    import subprocess
    import sys

    code = ("import os; import yapo_core, torch; from yapo_core.models import use_available_cores, cpu_quota; "
            "print(os.environ['OMP_WAIT_POLICY'], use_available_cores(), min(len(os.sched_getaffinity(0)), "
            "cpu_quota() or 10**6))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    policy, threads, cores = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                            check=True).stdout.split()
    assert policy == "PASSIVE" and threads == cores
    mine = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, check=True).stdout.split()
    assert mine[:2] == ["ACTIVE", "1"]  # the user's own settings win


def test_a_containers_cpu_quota_bounds_the_threads(tmp_path, monkeypatch):
    """``docker run --cpus=1.5`` leaves the affinity at every host core; the quota file says 2."""
    from yapo_core import models

    v2, v1, period = tmp_path / "cpu.max", tmp_path / "cfs_quota_us", tmp_path / "cfs_period_us"
    monkeypatch.setattr(models, "CGROUP_QUOTAS", ((str(v2), None), (str(v1), str(period))))
    assert models.cpu_quota() is None  # no cgroup files: no quota
    v2.write_text("150000 100000\n")
    assert models.cpu_quota() == 2
    v2.write_text("max 100000\n")  # v2 without a limit; v1 with one
    v1.write_text("50000\n")
    period.write_text("100000\n")
    assert models.cpu_quota() == 1
    v1.write_text("-1\n")
    assert models.cpu_quota() is None
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(models, "cpu_quota", lambda: 1)
    threads = torch.get_num_threads()
    try:
        assert models.use_available_cores() == 1
    finally:
        torch.set_num_threads(threads)


def test_broken_local_folders_say_what_is_wrong_with_them(tmp_path, tokenizer):
    """Not "the Hub cannot be reached": a local folder's own defect, named, with the fix."""
    whole = tmp_path / "whole"
    make_model("llama").save_pretrained(whole)
    tokenizer.save_pretrained(whole)
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text((whole / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="has a config.json but no weights"):
        load_model(str(config_only), device="cpu")
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model(str(tmp_path), device="cpu")
    no_tokenizer = tmp_path / "no-tokenizer"
    make_model("llama").save_pretrained(no_tokenizer)
    with pytest.raises(ModelLoadError, match="has no usable tokenizer"):
        load_model(str(no_tokenizer), device="cpu")
    weights = next(whole.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # cut short
    with pytest.raises(ModelLoadError, match="could not be read.*incomplete"):
        load_model(str(whole), device="cpu")


def test_a_models_fingerprint_is_kept_until_its_weights_change():
    from yapo_core.models import model_fingerprint, same_weights

    model = make_model("llama")
    first = model_fingerprint(model)
    assert model_fingerprint(model) == first and same_weights(first, model_fingerprint(make_model("llama")))
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.mul_(2.0)  # changed in place: computed again
    assert not same_weights(first, model_fingerprint(model))
    doubled = model_fingerprint(model)
    model.model.layers[0].self_attn.q_proj.weight.data.mul_(0.5)  # through .data: no version bump, still seen
    assert same_weights(first, model_fingerprint(model)) and not same_weights(doubled, model_fingerprint(model))
    assert not same_weights(first, model_fingerprint(make_model("llama", seed=1)))
    again = make_model("llama")
    assert same_weights(first, model_fingerprint(again.to(torch.bfloat16)))  # another dtype: the same weights
    tuned = make_model("llama")
    torch.manual_seed(0)
    with torch.no_grad():  # a light fine-tune of the same base: other weights
        for p in tuned.parameters():
            p.add_(0.05 * p.std() * torch.randn_like(p))
    assert not same_weights(first, model_fingerprint(tuned))


def test_the_fingerprint_memo_reads_large_tensors_to_their_last_value():
    """Indices spread in float32 round past the end of a tensor of more than 2**24 values (a Gemma
    Scope SAE's 2304 x 16384 matrices, a 7B model's MLP); the memo must read them, last value included."""
    from torch import nn

    from yapo_core.models import _probes, module_fingerprint

    owner = nn.Module()
    big = torch.zeros(2304, 16384, dtype=torch.bfloat16)
    first = module_fingerprint(owner, [big])
    big.data[-1, -1] = 5.0  # through .data: the version counter stays, the last value is read
    assert _probes([big])[-1] == 5.0 and module_fingerprint(owner, [big]) != first


def test_weights_offloaded_from_the_devices_count_by_their_shape():
    from yapo_core.models import model_blocks_fingerprint, model_fingerprint, same_weights

    resident = make_model("llama")
    offloaded = make_model("llama")
    offloaded.model.layers[3].to("meta")  # as accelerate leaves a block it keeps on the CPU or disk
    assert same_weights(model_fingerprint(resident), model_fingerprint(offloaded))
    assert same_weights(model_blocks_fingerprint(resident), model_blocks_fingerprint(offloaded))
    pruned = make_model("llama")
    del pruned.model.layers[2]  # a block fewer: another model, whatever its first and last blocks
    assert not same_weights(model_blocks_fingerprint(resident), model_blocks_fingerprint(pruned))
    assert not same_weights("5", model_fingerprint(resident)) and not same_weights("{}", model_fingerprint(resident))
