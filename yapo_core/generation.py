"""Steered and unsteered generation from one batched ``generate`` call.

Every (prompt, multiplier) combination is one row of the batch; the steering hook scales the
vector per row, so all rows share decoding settings and seed. Rows at multiplier 0 are exactly
unsteered (the sparse update ``relu(z + 0) − z`` and the dense ``0·v`` are exactly zero).
Prompts are left-padded and outputs are sliced at the padded prompt length.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .data import has_chat_template, render_prompt
from .models import hook_device, model_device
from .errors import SettingsError
from .steering import SteeringVector, steer_hidden, steering_hook


STEER_POSITIONS = ("all", "prompt")


def encode_for_generation(tokenizer, prompts: Sequence[str], system: str | None = None):
    texts = [render_prompt(tokenizer, p, system) for p in prompts]
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        return tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=not has_chat_template(tokenizer)
        )
    finally:
        tokenizer.padding_side = old_side


def generate(
    model: nn.Module,
    tokenizer,
    prompts: str | Sequence[str],
    vector: SteeringVector | None = None,
    multipliers: Sequence[float] = (0.0, 1.0),
    sae: nn.Module | None = None,
    system: str | None = None,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    streamer=None,
    steer_positions: str = "all",
) -> list[dict[float, str]]:
    """For each prompt, ``{multiplier: answer}``. Without a vector only multiplier 0 is produced.

    ``steer_positions="all"`` (the method, and the default): steering applies to every prompt
    token and every generated token. ``"prompt"``: to the prompt tokens only (the prefill); the
    generated tokens run unsteered, reading the steered prompt through attention. The second keeps
    long answers fluent where a strong vector, added at every new token too, derails them.
    """
    if steer_positions not in STEER_POSITIONS:
        raise SettingsError(f"steer_positions={steer_positions!r} is unknown; use one of {list(STEER_POSITIONS)}.")
    if isinstance(prompts, str):
        prompts = [prompts]
    multipliers = [float(m) for m in multipliers] if vector is not None else [0.0]
    rows = [(p, m) for p in prompts for m in multipliers]
    enc = encode_for_generation(tokenizer, [p for p, _ in rows], system).to(model_device(model))
    per_row = torch.tensor([m for _, m in rows], dtype=torch.float32, device=model_device(model))
    settings = dict(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if do_sample:
        settings.update(temperature=temperature, top_p=top_p)
    torch.manual_seed(seed)
    with torch.no_grad():
        if vector is None or not per_row.any():
            out = model.generate(**enc, streamer=streamer, **settings)
        else:
            sae = sae if sae is not None else vector.sae
            point = vector.check_fits(model, sae)
            values = vector.values.to(hook_device(model, point))  # where the steered block computes
            scale = per_row.view(-1, 1, 1)
            calls = 0

            def steer(h):
                nonlocal calls
                calls += 1
                if steer_positions == "prompt" and calls > 1:  # with the KV cache, call 1 is the prefill
                    return h
                return steer_hidden(h, vector.kind, values, scale, sae)

            with steering_hook(model, point, steer):
                out = model.generate(**enc, streamer=streamer, use_cache=True, **settings)
    new_tokens = out[:, enc["input_ids"].shape[1]:]
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    results: list[dict[float, str]] = [dict() for _ in prompts]
    for row, ((_, m), text) in enumerate(zip(rows, texts)):
        results[row // len(multipliers)][m] = text.strip()
    return results
