"""Where the demo world's build time goes, and what the changes that keep its computation about
the same size would save.

The build is mostly two training loops: the LM's (1,800 steps of 32 corpus examples) and the
SAE's (4,687 steps of 512 activations). This script times, in one process and on the full world's
shapes (a corpus drawn as the build draws it, a freshly initialised model, random activations for
the SAE; nothing is downloaded):

- an LM step as the build runs it (without the concept-steering hook, a few ms of a step), and the
  share of it spent in matrix products (torch's profiler);
- the same step with a fused AdamW, with batches of 64 examples, and with an MLP of 256 instead of 384;
- an SAE step (sae-lens's ``SAETrainer.step``) at batches of 512, 1024 and 2048,

and prints each as a time per token (or per activation) and as a ratio to the build's own setting.
The settings take turns (``--rounds``) and each keeps its fastest round. Ratios are what to read:
absolute times depend on what else the cores are doing.

It also prints the floor that arithmetic sets: the matrix products' work in the build's LM training
(the profiler's FLOPs per token of its linear layers, times the tokens of the build's corpus; the
fused attention kernel's products are not counted) over this machine's best throughput on those
products' shapes (plain ``a @ b`` at the build's thread count), the LM stage's least possible
seconds here however the rest of a step were made cheaper.

    python scripts/benchmark_demo_build.py      # about two minutes on 2 cores

Writes the figures as Markdown and JSON (``--out``, default ``assets/results/build-speed.md``).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from report import write_report  # scripts/report.py

import yapo_core  # noqa: F401 (the project's CPU settings, before torch runs)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "assets" / "results" / "build-speed.md"


def lm_setup(examples: int):
    """The full world's tokenizer and encoded corpus (``examples`` of them, drawn as the build draws them)."""
    from yapo_core.demo import corpus
    from yapo_core.demo.build_lm import encode_examples, train_tokenizer
    from yapo_core.demo.config import build_size

    size = build_size("full", None)
    rng = random.Random(0)
    culture_train, _ = corpus.split_question_keys(random.Random(rng.random()))
    splits = {b.key: corpus.split_behaviour_keys(random.Random(rng.random()), b) for b in corpus.BEHAVIOURS}
    behaviour_train = [k for train, _ in splits.values() for k in train]
    drawn = corpus.corpus_stream(random.Random(rng.random()), examples, culture_train, behaviour_train,
                                 size.mix, size.style)
    tokenizer = train_tokenizer(drawn, size.vocab_size)
    return size, tokenizer, encode_examples(tokenizer, drawn)


def time_lm(tokenizer, encoded, knobs: dict, steps: int, profile: bool = False):
    """Seconds per token of the build's LM step with these research ``knobs`` set on the full size
    (the model and optimiser as the build makes them: ``build_lm.lm_config``, ``lm_optimizer``), and
    the matrix products' share of it when ``profile``. Every setting runs on the same examples: those
    of ``steps`` of the build's batches, grouped by length into its own batch size."""
    import torch
    from transformers import LlamaForCausalLM

    from yapo_core.demo.build_lm import _length_batches, _weighted_loss, collate_examples, lm_config, lm_optimizer
    from yapo_core.demo.config import build_size

    size = build_size("full", knobs)
    torch.manual_seed(0)
    model = LlamaForCausalLM(lm_config(tokenizer, size)).train()
    optimizer = lm_optimizer(model, size)
    built = _length_batches(encoded, build_size("full", None).lm_batch, random.Random(1))

    def regrouped(examples: list[int]) -> list[list[int]]:  # by length, as the build groups a batch
        examples = sorted(examples, key=lambda i: len(encoded[i][0]))
        return [examples[i : i + size.lm_batch_size] for i in range(0, len(examples), size.lm_batch_size)]

    def step(rows):
        ids, mask, weights = collate_examples(encoded, rows, tokenizer.pad_token_id)
        _weighted_loss(model, ids, mask, weights).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for rows in regrouped(sum(built[:4], [])):  # warm-up
        step(rows)
    timed = regrouped(sum(built[4 : 4 + steps], []))
    tokens = sum(len(encoded[i][0]) for rows in timed for i in rows)
    started = time.perf_counter()
    for rows in timed:
        step(rows)
    per_token = (time.perf_counter() - started) / tokens
    products = None
    if profile:
        from torch.profiler import profile as torch_profile

        profiled_rows = timed[:: max(1, len(timed) // 10)][:10]  # spread over the lengths (timed runs short to long)
        with torch_profile(with_flops=True) as prof:
            for rows in profiled_rows:
                step(rows)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        mm = [e for e in events if e.key in MATMULS]
        seconds = sum(e.self_cpu_time_total for e in mm) / 1e6
        flops = sum(e.flops for e in mm)
        profiled = sum(len(encoded[i][0]) for rows in profiled_rows for i in rows)
        products = {"share": seconds * 1e6 / total, "flops_per_token": flops / profiled,
                    "gflops": flops / seconds / 1e9}
    return per_token, products


MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")
"""The profiler's names of matrix products."""


def matmul_throughput(size, tokens: int, vocab: int, rounds: int = 3) -> dict[str, float]:
    """GFLOP/s of plain float32 ``a @ b`` on this machine, for each product shape of the LM's step
    (``tokens`` rows: the tokens of one batch; ``vocab`` the tokenizer's size): the linear layers'
    forward products (their input-gradient products have the same sizes) and their weight-gradient
    products, whose inner size is the tokens; the best of ``rounds`` timings of about 0.2 s each."""
    import torch

    h, m, v = size.hidden_size, size.mlp_size, vocab
    shapes = {"attention": (tokens, h, h), "MLP up": (tokens, h, m), "MLP down": (tokens, m, h), "LM head": (tokens, h, v),
              "attention, weight gradient": (h, tokens, h), "MLP up, weight gradient": (m, tokens, h),
              "MLP down, weight gradient": (h, tokens, m), "LM head, weight gradient": (v, tokens, h)}
    out = {}
    for name, (a, b, c) in shapes.items():
        x, y = torch.randn(a, b), torch.randn(b, c)
        for _ in range(3):  # warm-up
            x @ y
        reps = max(3, int(2e10 / (2 * a * b * c)))
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(reps):
                x @ y
            best = min(best, (time.perf_counter() - started) / reps)
        out[name] = 2 * a * b * c / best / 1e9
    return out


def time_sae(knobs: dict, steps: int) -> float:
    """Seconds per activation of sae-lens's training step for the full world's SAE with these
    research ``knobs`` (as the build configures it: ``build_sae.sae_config``, ``sae_trainer_config``)."""
    import torch
    from sae_lens.saes.topk_sae import TopKTrainingSAE
    from sae_lens.training.sae_trainer import SAETrainer

    from yapo_core.demo.build_sae import sae_config, sae_trainer_config
    from yapo_core.demo.config import build_size

    size = build_size("full", knobs)
    batch = size.sae_batch_size
    torch.manual_seed(0)
    acts = torch.randn(50_000, size.hidden_size)
    sae = TopKTrainingSAE(sae_config(size))
    config = sae_trainer_config(size, steps + 5)
    generator = torch.Generator().manual_seed(0)

    def batches():
        while True:
            yield acts[torch.randint(0, len(acts), (batch,), generator=generator)]

    trainer = SAETrainer(cfg=config, sae=sae, data_provider=batches())

    def step():
        trainer.maybe_reset_sparsity()
        trainer.step(next(trainer.data_provider))
        trainer.n_training_steps += 1

    for _ in range(5):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / (steps * batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm-steps", type=int, default=30,
                        help="timed LM steps of the build's batch size per setting, the same examples for each (default 30)")
    parser.add_argument("--sae-steps", type=int, default=60, help="timed SAE steps per batch size (default 60)")
    parser.add_argument("--rounds", type=int, default=2, help="turns each setting takes; its fastest is kept (default 2)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="Markdown report (and .json beside it); '' for none")
    args = parser.parse_args(argv)

    size, tokenizer, encoded = lm_setup(4000)
    variants = {  # each a research knob of the build (yapo_core.demo.config)
        "the build's step": {},
        "fused AdamW": {"fused_adam": 1},
        f"batches of {2 * size.lm_batch}": {"lm_batch_scale": 2},
        "MLP of 256": {"mlp_scale": 256 / size.intermediate_size},
    }
    lm: dict[str, dict] = {name: {"us_per_token": float("inf")} for name in variants}
    sae: dict[int, dict] = {size.sae_batch * scale: {"us_per_activation": float("inf")} for scale in (1, 2, 4)}
    for round_ in range(args.rounds):  # settings take turns, and each keeps its fastest round
        for name, knobs in variants.items():
            profile = name == "the build's step" and round_ == 0
            per_token, products = time_lm(tokenizer, encoded, knobs, steps=args.lm_steps, profile=profile)
            lm[name]["us_per_token"] = min(lm[name]["us_per_token"], per_token * 1e6)
            if products is not None:
                lm[name]["matmul_share"] = products["share"]
                lm[name]["matmul_flops_per_token"] = products["flops_per_token"]
                lm[name]["matmul_gflops"] = products["gflops"]
            print(f"LM, {name}: {per_token * 1e6:.1f} us per token", file=sys.stderr)
        for batch in sae:
            per_activation = time_sae({"sae_batch_scale": batch / size.sae_batch}, args.sae_steps) * 1e6
            sae[batch]["us_per_activation"] = min(sae[batch]["us_per_activation"], per_activation)
            print(f"SAE, batch {batch}: {per_activation:.1f} us per activation", file=sys.stderr)
    base = lm["the build's step"]["us_per_token"]
    sae_base = sae[size.sae_batch]["us_per_activation"]

    body = ["| LM step | µs per token | speed-up over the build's step |", "|---|---|---|"]
    body += [f"| {name} | {r['us_per_token']:.1f} | {base / r['us_per_token']:.2f}x |" for name, r in lm.items()]
    build = lm["the build's step"]
    mean_tokens = sum(len(ids) for ids, _ in encoded) / len(encoded)
    build_tokens = size.lm_training_examples * mean_tokens
    throughput = matmul_throughput(size, round(size.lm_batch_size * mean_tokens), len(tokenizer))
    best = max(throughput.values())
    flops = build_tokens * build["matmul_flops_per_token"]
    floor = {"build_tokens": build_tokens, "tflop": flops / 1e12, "throughput_gflops": throughput,
             "floor_seconds": flops / (best * 1e9), "lm_seconds_at_this_rate": build_tokens * build["us_per_token"] / 1e6}
    body += ["", f"Matrix products are {build['matmul_share']:.0%} of the build's LM step (torch's profiler, self CPU "
             f"time) and run there at {build['matmul_gflops']:.0f} GFLOP/s.", "",
             "| the build's LM training | figure |", "|---|---|",
             f"| tokens ({size.lm_training_examples:,} examples of {mean_tokens:.1f} tokens on average) | {build_tokens / 1e6:.2f} million |",
             f"| the linear layers' matrix products per token (forward and backward, padding included; not the attention "
             f"kernel's own) | {build['matmul_flops_per_token'] / 1e6:.2f} MFLOP |",
             f"| matrix products in all | {floor['tflop']:.1f} TFLOP |",
             "| this machine's `a @ b` on the step's shapes (" + ", ".join(f"{k} {g:.0f}" for k, g in throughput.items())
             + f") | best {best:.0f} GFLOP/s |",
             f"| **the LM stage's floor: the products alone at that best rate** | **{floor['floor_seconds']:.0f} s** |",
             f"| the LM stage at the build's step's measured rate | {floor['lm_seconds_at_this_rate']:.0f} s |", "",
             "| SAE step (sae-lens) | µs per activation | speed-up over the build's batch |", "|---|---|---|"]
    body += [f"| batch {b} | {r['us_per_activation']:.1f} | {sae_base / r['us_per_activation']:.2f}x |"
             for b, r in sae.items()]
    print("\n".join(body))
    if args.out:
        write_report(args.out, "Where the demo build's time goes", "python scripts/benchmark_demo_build.py "
                     + " ".join(argv if argv is not None else sys.argv[1:]), body,
                     {"lm": lm, "sae": {str(b): r for b, r in sae.items()}, "floor": floor},
                     note=" (ratios in one run; absolute times depend on the machine's load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
