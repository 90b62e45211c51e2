"""The library at the paper's real dimensions, on random weights (nothing is downloaded).

Builds gemma-2-2b's real configuration (26 blocks, hidden 2304, vocabulary 256k) and a 65k-wide
JumpReLU SAE at the output of block 15 (thresholds set so that about 68 latents fire per token, as
in Gemma Scope), then runs, timing each part and recording the process's peak resident memory:

1. three fast-engine training steps of a sparse vector on 4 pairs of 200+20 tokens (the
   activation cache included);
2. steered and unsteered generation of 32 tokens from one batched ``generate`` call;
3. the feature cards' computations for the top 10 latents (logit lens over the 256k vocabulary,
   where each latent fires on a few texts).

    python scripts/real_size_run.py                 # the real size, fp32 (about 15 GB of memory)
    python scripts/real_size_run.py --dtype bf16
    python scripts/real_size_run.py --size tiny     # seconds: checks the script

Writes Markdown (``--out``, by default ``assets/results/real-size.md``) and JSON beside it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import string
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "assets" / "results" / "real-size.md"
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<end>{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def _benchmark():
    """scripts/benchmark_trainer.py, for its model and SAE builders."""
    spec = importlib.util.spec_from_file_location("benchmark_trainer", Path(__file__).with_name("benchmark_trainer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def char_tokenizer(vocab_size: int):
    """A character-level tokenizer with a chat template, within the model's vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<end>", "<unk>", "<user>", "<assistant>"]
    vocab = {tok: i for i, tok in enumerate(specials + list(string.printable))}
    assert len(vocab) <= vocab_size
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<end>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=["<user>", "<assistant>"],
                                   chat_template=CHAT_TEMPLATE)


def peak_mib() -> float:
    """The process's peak resident memory since the last :func:`reset_peak` (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def timed(parts: dict, name: str, fn):
    reset_peak()
    start = time.perf_counter()
    result = fn()
    parts[name] = {"seconds": round(time.perf_counter() - start, 2), "peak_mib": round(peak_mib())}
    print(f"{name}: {parts[name]['seconds']} s, peak {parts[name]['peak_mib']} MiB", file=sys.stderr)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["real", "tiny"], default="real")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args()

    import torch

    from yapo_core import SteeringVector, TrainConfig, Trainer, generate
    from yapo_core.data import PreferencePair
    from yapo_core.features import dialogue_texts, feature_report

    torch.set_num_threads(args.threads)
    bench, parts = _benchmark(), {}
    model, sae = timed(parts, "build model and SAE", lambda: bench.build(args.size, "cpu", args.dtype))
    vocab = model.config.vocab_size
    pairs = bench.make_pairs(4, 200, 20, vocab)
    l0 = bench.calibrate_sae(model, sae, torch.tensor([p.prompt_ids + p.chosen_ids for p in pairs[:2]]))

    def train():
        trainer = Trainer(model, None, pairs, TrainConfig(kind="sparse", engine="fast", batch_size=4, max_steps=3,
                                                          warmup_steps=1, max_length=4096), sae=sae)
        losses = [m.loss for m in trainer]
        return trainer.vector, losses

    vector, losses = timed(parts, "3 fast training steps (4 pairs of 200+20 tokens, cache included)", train)
    # the trained vector is tiny after 3 steps: steer with a visible one of the same sparsity
    values = torch.zeros(sae.cfg.d_sae)
    values[torch.randperm(sae.cfg.d_sae, generator=torch.Generator().manual_seed(0))[:32]] = 4.0
    visible = SteeringVector("sparse", values, vector.hook_name, sae=sae)
    tokenizer = char_tokenizer(vocab)
    answers = timed(parts, "steered and unsteered generation, 32 tokens", lambda: generate(
        model, tokenizer, "Which dish is served at a family dinner?", visible, [0.0, 1.0], max_new_tokens=32)[0])
    texts = dialogue_texts(tokenizer, [PreferencePair(f"Tell me about {x}.", f"{x} is lovely.", "No.")
                                      for x in ("tea", "rain", "maps", "owls")])
    report = timed(parts, "feature cards, top 10 latents", lambda: feature_report(visible, model, tokenizer, sae,
                                                                                   texts, k=10))
    setting = (f"gemma-2-2b's configuration ({args.size}: hidden {model.config.hidden_size}, vocabulary {vocab}, "
               f"{model.config.num_hidden_layers} blocks), JumpReLU SAE of {sae.cfg.d_sae} latents at the output of "
               f"block 15 (L0 {l0:.0f}), random weights, {args.dtype}, {args.threads} threads")
    command = "python scripts/real_size_run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    md = ["## The library at the paper's real dimensions", "", f"Written by `{command.strip()}`.", "",
          f"- setting: {setting}",
          f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}", "",
          "| part | seconds | peak resident memory of the process (MiB) |", "|---|---|---|"]
    md += [f"| {name} | {v['seconds']} | {v['peak_mib']} |" for name, v in parts.items()]
    md += ["", f"Training losses: {', '.join(f'{x:.4f}' for x in losses)}; {len(report.latents)} latent cards; "
           f"steered and unsteered answers differ: {answers[0.0] != answers[1.0]}."]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"command": command.strip(), "setting": setting, "parts": parts,
                                                    "losses": losses, "latent_cards": len(report.latents)}, indent=2) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
