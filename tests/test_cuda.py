"""The core on a CUDA GPU: training, steering, baselines, scoring, the CLI and vector files work
there and agree with the CPU.

Skipped where torch sees no CUDA device. On a GPU machine: ``python -m pytest tests/test_cuda.py``.
Float32 with TF32 off, so that the GPU computes what the CPU computes up to summation order.
"""

import csv
import math

import pytest
import torch
from conftest import consistent_pairs, make_model, make_sae

from yapo_core import TrainConfig, Trainer, load_model, load_sae, load_vector, save_vector
from yapo_core.baselines import compute_caa, compute_sas
from yapo_core.evaluation import preference_accuracy, score_pairs
from yapo_core.generation import generate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FAST = dict(lr=0.05, warmup_steps=5, epochs=100, max_steps=40, batch_size=4, seed=0)
GPU = "cuda"


@pytest.fixture(autouse=True)
def exact_float32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def on(device: str, family: str = "llama", dtype=torch.float32):
    return make_model(family).to(device, dtype), make_sae().to(device)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double().cpu().flatten(), b.double().cpu().flatten(), dim=0))


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_training_on_the_gpu_follows_the_cpu(tokenizer, family, kind):
    train, test = consistent_pairs(48, seed=1), consistent_pairs(24, seed=2)
    runs = {}
    for device in ("cpu", GPU):
        model, sae = on(device, family)
        trainer = Trainer(model, tokenizer, train, TrainConfig(kind=kind, layer=1, **FAST), sae=sae)
        runs[device] = ([m.loss for m in trainer], trainer)
    (cpu_losses, cpu), (gpu_losses, gpu) = runs["cpu"], runs[GPU]
    assert gpu.v.device.type == torch.device(GPU).type and gpu.v.dtype == torch.float32
    assert gpu_losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert gpu_losses[:5] == pytest.approx(cpu_losses[:5], rel=1e-4, abs=1e-5)
    assert cosine(gpu.vector.values, cpu.vector.values) > 0.99
    model, sae = on(GPU, family)
    assert preference_accuracy(model, tokenizer, test, gpu.vector, 1.0, sae=sae) >= 0.95


def test_a_bf16_model_on_the_gpu_trains_an_fp32_vector(tokenizer):
    model, sae = on(GPU, dtype=torch.bfloat16)
    trainer = Trainer(model, tokenizer, consistent_pairs(48, seed=1), TrainConfig(kind="sparse", layer=1, **FAST), sae=sae)
    losses = [m.loss for m in trainer]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-10:]) / 10 < losses[0] - 0.2
    assert trainer.v.dtype == torch.float32 and trainer.v.device.type == torch.device(GPU).type


def test_a_cpu_vector_steers_the_gpu_model_as_it_steers_the_cpu_model_and_the_hooks_come_off(tokenizer):
    cpu_model, cpu_sae = on("cpu")
    vector = Trainer(cpu_model, tokenizer, consistent_pairs(48, seed=1),
                     TrainConfig(kind="sparse", layer=1, **FAST), sae=cpu_sae).run()
    gpu_model, gpu_sae = on(GPU)
    prompts = ["Do you like tea?", "Do you want maps?", "Do you see owls?"]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    before = gpu_model(**batch.to(GPU)).logits
    cpu_out = generate(cpu_model, tokenizer, prompts, vector, (0.0, 1.0, -1.0), sae=cpu_sae, max_new_tokens=12)
    gpu_out = generate(gpu_model, tokenizer, prompts, vector, (0.0, 1.0, -1.0), sae=gpu_sae, max_new_tokens=12)
    assert gpu_out == cpu_out
    assert any(row[1.0] != row[0.0] for row in gpu_out)  # the vector changes answers
    assert torch.equal(gpu_model(**batch.to(GPU)).logits, before)  # every hook came off
    test = consistent_pairs(24, seed=2)
    cpu_scores = score_pairs(cpu_model, tokenizer, test, vector, 1.0, sae=cpu_sae)
    gpu_scores = score_pairs(gpu_model, tokenizer, test, vector, 1.0, sae=gpu_sae)
    for name in ("chosen", "rejected", "chosen_ref", "rejected_ref"):
        torch.testing.assert_close(getattr(gpu_scores, name).cpu(), getattr(cpu_scores, name), rtol=1e-4, atol=1e-4)


def test_caa_and_sas_on_the_gpu_match_the_cpu(tokenizer):
    pairs = consistent_pairs(32, seed=3)
    for compute in (lambda m, s: compute_caa(m, tokenizer, pairs, 1), lambda m, s: compute_sas(m, tokenizer, pairs, s)):
        cpu, gpu = compute(*on("cpu")), compute(*on(GPU))
        torch.testing.assert_close(gpu.values.cpu(), cpu.values, rtol=1e-4, atol=1e-5)


def test_vector_files_written_from_the_gpu_read_back_on_the_cpu(tokenizer, tmp_path):
    model, sae = on(GPU)
    trainer = Trainer(model, tokenizer, consistent_pairs(8), TrainConfig(kind="sparse", layer=1, max_steps=3), sae=sae)
    vector = trainer.run()
    path = save_vector(vector, tmp_path / "v.safetensors", sae=sae)
    back = load_vector(path, make_model("llama"), make_sae())
    torch.testing.assert_close(back.values.cpu(), vector.values.cpu(), rtol=0, atol=0)


def test_models_and_saes_load_onto_the_gpu_and_the_cli_trains_generates_evaluates_and_exports_there(
        model_dir, sae_dir, tmp_path, capsys):
    from yapo_core.cli import main

    model, _ = load_model(model_dir, device=GPU)
    sae = load_sae(path=sae_dir, device=GPU)
    assert next(model.parameters()).device.type == torch.device(GPU).type and sae.W_enc.device.type == torch.device(GPU).type
    data = tmp_path / "pairs.csv"
    with data.open("w", newline="") as f:
        csv.writer(f).writerows([("prompt", "chosen", "rejected"),
                                 *((p.prompt, p.chosen, p.rejected) for p in consistent_pairs(16))])
    out = tmp_path / "v.safetensors"
    gpu = ["--device", GPU]
    assert main(["train", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data),
                 "--max-steps", "5", "--out", str(out), *gpu]) == 0
    assert main(["generate", "--model", str(model_dir), "--vector", str(out), "--prompt", "Do you like tea?",
                 "--sae-path", str(sae_dir), "--max-new-tokens", "8", *gpu]) == 0
    assert main(["eval", "--model", str(model_dir), "--vector", str(out), "--data", str(data), "--metric",
                 "preference", "--sae-path", str(sae_dir), "--multipliers=0,1", *gpu]) == 0
    assert main(["export", "--vector", str(out), "--out", str(tmp_path / "v.gguf"), "--model", str(model_dir),
                 "--sae-path", str(sae_dir), *gpu]) == 0
    assert (tmp_path / "v.gguf").stat().st_size > 0


def test_the_four_methods_compare_on_the_gpu_on_the_miniature_demo_world(tmp_path, monkeypatch, capsys):
    from yapo_core.cli import main

    monkeypatch.setenv("YAPO_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["compare", "--size", "mini", "--country", "nepal", "--methods", "yapo,bipo,caa,sas", "--steps", "5",
                 "--multipliers=0,1", "--out", str(tmp_path / "cmp"), "--device", GPU]) == 0
    table = capsys.readouterr().out
    assert all(f"| {m} |" in table for m in ("YaPO", "BiPO", "CAA", "SAS"))
