"""MCQ letter log-probs: each option letter scored once (two letters share a pair row's chosen and
rejected sides, ``yapo_core.mcq.letter_logprobs``) against one letter per row (each answer on both
sides, the straightforward layout, kept here as the oracle). Prints both times, their ratio and the
largest difference of the log-probs, on the demo world's egypt MCQ test split.

    python scripts/benchmark_mcq.py             # the full demo world (built on first use)
    python scripts/benchmark_mcq.py --size mini
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: a shared CPU (docs/performance.md)

import torch  # noqa: E402

from yapo_core import mcq  # noqa: E402
from yapo_core.demo import load_demo_world  # noqa: E402
from yapo_core.encoding import EncodedPair  # noqa: E402
from yapo_core.models import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full", choices=["full", "mini"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    world = load_demo_world(size=args.size)
    model, tokenizer = load_model(str(world.model_dir), device="cpu")
    items = mcq.mcq_items_from_pairs(world.culture("egypt").pairs("test"))
    shared = mcq.pair_logprobs

    def one_letter_per_row(m, t, encoded, batch_size=8):
        rows = [EncodedPair(p.prompt_ids, a, a) for p in encoded for a in (p.chosen_ids, p.rejected_ids)]
        return shared(m, t, rows, batch_size)[:, 0].reshape(-1, 2)

    times, scores = {}, {}
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, fn in (("two letters per row", shared), ("one letter per row", one_letter_per_row)):
                mcq.pair_logprobs = fn
                try:
                    start = time.perf_counter()
                    scores[name] = mcq.letter_logprobs(model, tokenizer, items)
                    times.setdefault(name, []).append(time.perf_counter() - start)
                finally:
                    mcq.pair_logprobs = shared
    best = {name: min(t) for name, t in times.items()}
    gap = max(float((a - b).abs().max()) for a, b in zip(scores["two letters per row"], scores["one letter per row"]))
    print(f"{len(items)} questions, {len(items[0].letters)} options; largest log-prob difference {gap:.1e}")
    print(f"one letter per row {best['one letter per row']:.2f} s, two per row {best['two letters per row']:.2f} s "
          f"(best of {args.repeats}): {best['one letter per row'] / best['two letters per row']:.2f}x")


if __name__ == "__main__":
    main()
