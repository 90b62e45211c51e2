"""Seconds per training step of the straightforward loop against the fast trainer.

A Gemma-2-architecture model with gemma-2-2b's depth (26 blocks, steering the output of block
15) and its proportions scaled down to run on a CPU (hidden 256, vocabulary 32k, SAE width 32x
hidden = 8192 with about 68 active latents per token, as Gemma Scope's L0), batches shaped like
the paper's MCQ data (prompts of 200 tokens, answers of 20, 4 pairs). Random weights; nothing
is downloaded. ``--size real`` builds the real gemma-2-2b configuration (for a GPU).

Each engine runs in its own process so that peak memory is its own. Prints the median seconds
per step and peak memory of both loops, their ratio, and the time of the fast engine's cache-building pass
(so the break-even step count is visible), and writes the same as Markdown (``--out``, by default
``assets/results/benchmark.md``) and JSON (beside it, ``.json``).

    python scripts/benchmark_trainer.py            # CPU size, a few minutes on 2 cores
    python scripts/benchmark_trainer.py --size real --device cuda --out runs/benchmark-cuda.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "assets" / "results" / "benchmark.md"

SIZES = {
    # gemma-2-2b's depth and layer; widths scaled to a CPU
    "cpu": dict(hidden_size=256, intermediate_size=1024, num_attention_heads=8, num_key_value_heads=4, head_dim=32,
                vocab_size=32000, d_sae=8192),
    # seconds-scale, for the tests of the scripts
    "tiny": dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                 vocab_size=512, d_sae=256),
    # the real gemma-2-2b configuration (random weights), Gemma Scope 65k
    "real": dict(hidden_size=2304, intermediate_size=9216, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                 vocab_size=256000, d_sae=65536),
}


def build(size: str, device: str, dtype: str, seed: int = 0):
    import torch
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
    from transformers import AutoModelForCausalLM, Gemma2Config

    from yapo_core.models import prepare_model, resolve_dtype

    spec = dict(SIZES[size])
    d_sae = spec.pop("d_sae")
    torch.manual_seed(seed)
    config = Gemma2Config(num_hidden_layers=26, max_position_embeddings=8192, sliding_window=4096,
                          query_pre_attn_scalar=spec["head_dim"], final_logit_softcapping=30.0,
                          attn_logit_softcapping=50.0, **spec)
    model = AutoModelForCausalLM.from_config(config, dtype=resolve_dtype(dtype), attn_implementation="eager")
    model.config._name_or_path = f"bench-gemma2-{size}"
    prepare_model(model.to(device))
    cfg = JumpReLUSAEConfig(d_in=spec["hidden_size"], d_sae=d_sae, device=device)
    cfg.metadata.hook_name = "blocks.15.hook_resid_post"
    sae = JumpReLUSAE(cfg)
    sae.requires_grad_(False)
    return model, sae


def calibrate_sae(model, sae, ids, target_l0: float = 68.0):
    """Random JumpReLU thresholds give half the latents active; set them so that each latent
    fires on about target_l0 / d_sae of the tokens, like a trained Gemma Scope SAE."""
    import torch

    seen = {}
    block = model.model.layers[15]
    handle = block.register_forward_hook(lambda m, a, o: seen.setdefault("h", o))
    with torch.no_grad():
        model(input_ids=ids[:2])
    handle.remove()
    h = seen["h"].reshape(-1, sae.cfg.d_in).to(sae.dtype)
    with torch.no_grad():
        pre = (h - sae.b_dec) @ sae.W_enc + sae.b_enc
        q = 1.0 - target_l0 / sae.cfg.d_sae
        sae.threshold.copy_(torch.quantile(pre.float(), q, dim=0).clamp(min=1e-3).to(sae.threshold.dtype))
        return float((sae.encode(h) > 0).sum(-1).float().mean())


def make_pairs(n: int, prompt_len: int, answer_len: int, vocab: int, seed: int = 0):
    import torch

    from yapo_core.encoding import EncodedPair

    g = torch.Generator().manual_seed(seed)
    rand = lambda k: torch.randint(10, vocab, (k,), generator=g).tolist()  # noqa: E731
    return [EncodedPair([2] + rand(prompt_len - 1), rand(answer_len), rand(answer_len)) for _ in range(n)]


def run_engine(args) -> dict:
    import torch

    from yapo_core.training import TrainConfig, Trainer

    torch.set_num_threads(args.threads)
    model, sae = build(args.size, args.device, args.dtype)
    pairs = make_pairs(args.pairs, args.prompt_len, args.answer_len, model.config.vocab_size)
    l0 = calibrate_sae(model, sae, torch.tensor([p.prompt_ids + p.chosen_ids for p in pairs[:2]], device=args.device))
    config = TrainConfig(kind=args.kind, engine=args.engine, batch_size=args.batch_size, max_steps=args.steps + 1,
                         warmup_steps=1, max_length=4096)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer = Trainer(model, None, pairs, config, sae=sae)
    setup = time.perf_counter() - start
    steps = iter(trainer)
    next(steps)  # warm-up step, not timed
    times, start = [], time.perf_counter()
    for _ in steps:  # each step reports its loss as a float, so the device has finished it
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
    per_step = statistics.median(times)  # robust to a step slowed by another process
    if args.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"engine": args.engine, "seconds_per_step": per_step, "step_seconds": times, "setup_seconds": setup,
            "peak_mib": peak, "sae_l0": l0, "final_loss": trainer.history[-1].loss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="cpu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--kind", default="sparse", choices=["sparse", "dense"])
    p.add_argument("--steps", type=int, default=10, help="timed steps per engine (after one warm-up step)")
    p.add_argument("--pairs", type=int, default=8, help="pairs in the dataset (cached by the fast engine)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--prompt-len", type=int, default=200)
    p.add_argument("--answer-len", type=int, default=20)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="Markdown report to write, with a .json beside it (default: assets/results/benchmark.md)")
    p.add_argument("--engine", help=argparse.SUPPRESS)  # child mode
    args = p.parse_args()
    from yapo_core.errors import SettingsError
    from yapo_core.models import resolve_device

    try:
        args.device = resolve_device(args.device)  # before a model is built: a device that is not there
    except SettingsError as exc:
        sys.exit(f"error: {exc}")
    if args.engine:
        print(json.dumps(run_engine(args)))
        return
    results = {}
    for engine in ("simple", "fast"):
        child = [sys.executable, __file__, *sys.argv[1:], "--engine", engine]
        out = subprocess.run(child, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"{engine} run failed:\n{out.stderr[-3000:]}")
        results[engine] = json.loads(out.stdout.strip().splitlines()[-1])
    simple, fast = results["simple"], results["fast"]
    gain = simple["seconds_per_step"] - fast["seconds_per_step"]
    ratio = simple["seconds_per_step"] / fast["seconds_per_step"]
    break_even = fast["setup_seconds"] / gain if gain > 0 else float("inf")
    setting = (f"Gemma-2 architecture, 26 blocks, steering block 15, size={args.size}, {args.kind} vector, "
               f"batch {args.batch_size} pairs of {args.prompt_len}+{args.answer_len} tokens, SAE L0 {fast['sae_l0']:.0f}, "
               f"device {args.device}, {args.dtype}, {args.threads} threads")
    lines = [
        f"model: {setting}",
        f"straightforward loop: {simple['seconds_per_step']:.3f} s/step (median), peak memory {simple['peak_mib']:.0f} MiB",
        f"fast trainer:         {fast['seconds_per_step']:.3f} s/step (median), peak memory {fast['peak_mib']:.0f} MiB",
        f"cache-building pass ({args.pairs} pairs): {fast['setup_seconds']:.2f} s (break-even after {break_even:.1f} steps)",
        f"speed-up ratio: {ratio:.2f}x",
    ]
    print("\n".join(lines))
    if args.out:
        write_report(Path(args.out), args, setting, simple, fast, ratio, break_even)


def write_report(out: Path, args, setting: str, simple: dict, fast: dict, ratio: float, break_even: float) -> None:
    """The printed figures as Markdown (``out``) and JSON (``out`` with ``.json``)."""
    import torch

    command = "python scripts/benchmark_trainer.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    memory = "peak GPU memory allocated" if args.device.startswith("cuda") else "peak resident memory of the process"
    md = [
        "## Training speed: straightforward loop against the fast trainer",
        "",
        f"Written by `{command.strip()}`.",
        "",
        f"- setting: {setting}; {args.steps} timed steps per engine after one warm-up step; random weights",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "",
        f"| engine | seconds per step (median) | {memory} (MiB) |",
        "|---|---|---|",
        f"| straightforward loop | {simple['seconds_per_step']:.3f} | {simple['peak_mib']:.0f} |",
        f"| fast trainer | {fast['seconds_per_step']:.3f} | {fast['peak_mib']:.0f} |",
        "",
        f"Speed-up ratio (straightforward / fast, median seconds per step): **{ratio:.2f}x**.",
        "",
        (f"The fast trainer's cache-building pass over {args.pairs} pairs took {fast['setup_seconds']:.2f} s: "
         f"it pays for itself after {break_even:.1f} steps."),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md) + "\n")
    settings = {k: v for k, v in vars(args).items() if k not in ("engine", "out")}
    out.with_suffix(".json").write_text(json.dumps(
        {"command": command.strip(), "settings": settings, "machine": {"machine": platform.machine(),
         "cpu_count": os.cpu_count(), "torch": torch.__version__}, "straightforward": simple, "fast": fast,
         "ratio": ratio,
         "break_even_steps": break_even if break_even != float("inf") else None}, indent=2) + "\n")
    print(f"written to {out} and {out.with_suffix('.json')}", file=sys.stderr)


if __name__ == "__main__":
    main()
