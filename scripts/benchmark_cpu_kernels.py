"""What pinning torch's CPU kernels and MKL's code path to AVX2 (``yapo_core._cpu``) costs: training steps of a model the
size of the demo LM, timed with the pinned kernels and with the CPU's own, in alternating child
processes (the kernels are chosen when torch starts), and the ratio of their median step times.

    python scripts/benchmark_cpu_kernels.py                 # prints the table
    python scripts/benchmark_cpu_kernels.py --out assets/results/cpu-kernels.md

On a CPU whose best kernels are AVX2 both settings are the same kernels, and the ratio is about 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from report import write_report

from yapo_core._cpu import PIN_VARIABLES

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import yapo_core  # pins the kernels unless YAPO_CPU_KERNELS=native
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from yapo_core.demo.config import BUILD_SIZES, BUILD_THREADS
size = BUILD_SIZES["full"]
torch.set_num_threads(BUILD_THREADS)
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=size.vocab_size, hidden_size=size.hidden_size,
                                     intermediate_size=size.intermediate_size, num_hidden_layers=size.num_layers,
                                     num_attention_heads=size.num_heads, num_key_value_heads=size.num_heads))
optimizer = torch.optim.AdamW(model.parameters(), lr=size.lm_lr)
ids = torch.randint(0, size.vocab_size, (size.lm_batch, int(sys.argv[2])))
times = []
for step in range(int(sys.argv[1]) + 3):
    started = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    if step >= 3:  # the first steps warm up
        times.append(time.perf_counter() - started)
print(json.dumps({"kernels": torch.backends.cpu.get_cpu_capability(), "times": times}))
"""


def run(setting: str, steps: int, length: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (*PIN_VARIABLES, "YAPO_CPU_KERNELS")}
    env.update({"OMP_WAIT_POLICY": "PASSIVE", **({"YAPO_CPU_KERNELS": "native"} if setting == "native" else {})})
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps), str(length)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each setting")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per run")
    parser.add_argument("--length", type=int, default=96, help="tokens per training sequence")
    parser.add_argument("--out", metavar="PATH", help="also write a Markdown report here (and its .json twin)")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {"pinned": [], "native": []}
    kernels = {}
    for _ in range(args.rounds):
        for setting in times:
            result = run(setting, args.steps, args.length)
            kernels[setting] = result["kernels"]
            times[setting] += result["times"]
    median = {s: statistics.median(t) for s, t in times.items()}
    ratio = median["pinned"] / median["native"]
    lines = ["| setting | torch's kernels | median step (ms) |", "|---|---|---|"]
    lines += [f"| {s} | {kernels[s]} | {1000 * median[s]:.1f} |" for s in times]
    lines += ["", f"Pinned over native, median step time: **{ratio:.2f}** ({args.rounds} alternating runs of "
              f"{args.steps} steps each, batch of the demo LM's size, {args.length} tokens)."]
    print("\n".join(lines))
    if args.out:
        command = "python scripts/benchmark_cpu_kernels.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_report(args.out, "Torch's AVX2 kernels against the CPU's own", command, lines,
                     {"kernels": kernels, "median_seconds": median, "ratio": round(ratio, 3), "times": times,
                      "settings": vars(args)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
