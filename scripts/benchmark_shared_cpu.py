"""Speed on a shared CPU: the demo build's LM stage and a fast-trainer step, quiet and beside a
competing busy process.

On a machine whose cores are shared (a Hugging Face Space on cpu-basic, CI, a busy laptop),
OpenMP's default busy-waiting makes torch's threads spin for a core that another process holds.
The project sets ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported (a user's own setting
wins) and takes torch's thread count from the cores the process may use. This script measures,
each in a fresh process:

1. quiet: the project's settings, nothing else running;
2. shared: the same, beside a busy process that holds one core (a Python loop);
3. quiet, busy-waiting: nothing else running, with ``OMP_WAIT_POLICY=ACTIVE`` (threads that
   spin, as OpenMP's own default lets them for a while), to show what the project's setting costs
   on cores no one else uses;
4. shared, busy-waiting: the same beside the busy process, to show what the setting avoids.

and prints the slowdown ratios (shared / quiet; goal at most 2x). Random weights of the full demo
world's shape (4 blocks, hidden 128, vocabulary 2048, SAE 1024 latents); nothing is downloaded.

    python scripts/benchmark_shared_cpu.py      # about a minute on 2 cores

Writes the figures as Markdown and JSON (``--out``, default ``assets/results/shared-cpu.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from report import write_report  # scripts/report.py

import yapo_core  # noqa: F401 (sets OMP_WAIT_POLICY before torch is imported, unless the environment has it)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "assets" / "results" / "shared-cpu.md"
BUSY = "while True: pass"


def child(args) -> dict:
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig
    from transformers import LlamaConfig, LlamaForCausalLM

    from yapo_core.demo.config import BUILD_SIZES
    from yapo_core.encoding import EncodedPair
    from yapo_core.models import prepare_model, use_available_cores
    from yapo_core.training import TrainConfig, Trainer

    threads = use_available_cores()
    size = BUILD_SIZES["full"]
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=size.vocab_size, hidden_size=size.hidden_size,
                         intermediate_size=size.intermediate_size, num_hidden_layers=size.num_layers,
                         num_attention_heads=size.num_heads, num_key_value_heads=size.num_heads,
                         max_position_embeddings=512, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(3, size.vocab_size, (size.lm_batch, args.lm_tokens))
    lm_times = []
    for _ in range(args.lm_batches + 1):  # the first is a warm-up, not timed
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lm_times.append(time.perf_counter() - start)

    model.eval()
    model.requires_grad_(False)
    prepare_model(model)
    cfg = StandardSAEConfig(d_in=size.hidden_size, d_sae=size.hidden_size * size.sae_expansion)
    cfg.metadata.hook_name = f"blocks.{size.layer}.hook_resid_post"
    sae = StandardSAE(cfg)
    sae.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    rand = lambda k: torch.randint(3, size.vocab_size, (k,), generator=g).tolist()  # noqa: E731
    pairs = [EncodedPair([1] + rand(47), rand(8), rand(8)) for _ in range(64)]
    trainer = Trainer(model, None, pairs, TrainConfig(kind="sparse", engine="fast", batch_size=32,
                                                      max_steps=args.steps + 1, warmup_steps=1), sae=sae)
    step_times = [m.step_time for m in trainer]
    return {"threads": threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "lm_batch_seconds": statistics.median(lm_times[1:]), "train_step_seconds": statistics.median(step_times[1:])}


def run_child(env_extra: dict, busy: bool, argv: list[str]) -> dict:
    env = {**os.environ, **env_extra}
    competitor = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        if competitor is not None:
            time.sleep(0.5)  # let it take its core
        out = subprocess.run([sys.executable, __file__, *argv, "--child"], env=env, capture_output=True,
                             text=True, check=False)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if out.returncode != 0:
        sys.exit(f"measurement failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lm-batches", type=int, default=8, help="timed LM batches (after one warm-up)")
    p.add_argument("--lm-tokens", type=int, default=96, help="tokens per LM sequence")
    p.add_argument("--steps", type=int, default=8, help="timed fast-trainer steps (after one warm-up)")
    p.add_argument("--skip-active", action="store_true", help="skip the busy-waiting contrasts")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Markdown report, with a .json beside it ('' for none)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    argv = [a for a in sys.argv[1:] if a != "--skip-active"]
    own = {k: v for k, v in os.environ.items() if k == "OMP_WAIT_POLICY"}
    cases = {"quiet": run_child(own, False, argv), "shared": run_child(own, True, argv)}
    if not args.skip_active:
        cases["quiet, busy-waiting"] = run_child({"OMP_WAIT_POLICY": "ACTIVE"}, False, argv)
        cases["shared, busy-waiting"] = run_child({"OMP_WAIT_POLICY": "ACTIVE"}, True, argv)
    quiet = cases["quiet"]
    lines = [f"{'case':<22} {'LM batch (s)':>13} {'fast step (s)':>14} {'slowdown (LM, step)':>20}"]
    for name, r in cases.items():
        ratio = (r["lm_batch_seconds"] / quiet["lm_batch_seconds"], r["train_step_seconds"] / quiet["train_step_seconds"])
        r["slowdown"] = ratio
        lines.append(f"{name:<22} {r['lm_batch_seconds']:>13.3f} {r['train_step_seconds']:>14.3f} "
                     f"{ratio[0]:>10.2f}x, {ratio[1]:.2f}x")
    worst = max(cases["shared"]["slowdown"])
    lines.append(f"slowdown beside a busy process with the project's settings: {worst:.2f}x (goal: at most 2x); "
                 f"{quiet['threads']} torch threads, {os.cpu_count()} cores")
    print("\n".join(lines))
    if args.out:
        write_report(args.out, "Speed on a shared CPU", "python scripts/benchmark_shared_cpu.py " + " ".join(argv),
                     ["```", *lines, "```"], cases)


if __name__ == "__main__":
    main()
