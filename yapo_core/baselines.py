"""The paper's baselines (docs/method.md §5), computed from the pairs in one pass (not trained), as
:class:`~.steering.SteeringVector` values that apply and export like learned ones.

- CAA (contrastive activation addition): ``v = mean_i [h_L(x ⊕ y_w) − h_L(x ⊕ y_l)]`` at the
  last answer token (the letter for A/B data), applied densely.
- SAS (sparse activation steering): SAE-encode the chosen and the rejected completions; keep
  latents active in at least a fraction τ of a side's examples, drop latents kept on both sides,
  ``v = mean⁺ − mean⁻`` in SAE space over the kept latents; applied like YaPO.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .architectures import capped_length
from .data import PreferencePair
from .encoding import EncodedPair, collate, encode_pairs, render_answer
from .errors import SettingsError
from .hooks import HookPoint, block_output, record_residual
from .logprobs import pad_token_id
from .models import model_device, model_id
from .saes import check_sae_fits, provenance, sae_input, sae_source
from .steering import SteeringVector

DEFAULT_MULTIPLIER = {"caa": 0.5, "sas": 0.5}  # the paper compares CAA at 0.5


def _own_span(tokenizer, pair: PreferencePair, answer: str, n_tokens: int) -> tuple[int, int]:
    """Where ``answer``'s own text lies among the ``n_tokens`` tokens of its rendered turn, as
    ``(start, end)``: not the text a template puts before it (a reasoning model's empty think
    block, a leading space) or after it (the end of turn)."""
    turn = render_answer(tokenizer, pair.prompt, answer, pair.system)
    text = answer.strip()
    if text and getattr(tokenizer, "is_fast", False):
        enc = tokenizer(turn, add_special_tokens=False, return_offsets_mapping=True)
        offsets, specials = enc["offset_mapping"], set(tokenizer.all_special_ids)
        taken = [(a, b) for (a, b), i in zip(offsets, enc["input_ids"]) if i in specials]  # e.g. "<|end|>" holds "e"
        at = turn.rfind(text)
        while at >= 0 and any(a < at + len(text) and b > at for a, b in taken):
            at = turn.rfind(text, 0, at + len(text) - 1)
        inside = [i for i, (a, b) in enumerate(offsets) if b > at and a < at + len(text)] if at >= 0 else []
        if inside and len(offsets) == n_tokens:
            return inside[0], inside[-1] + 1
    # no character offsets: the answer's own tokens, counted from the start of the turn
    return 0, min(n_tokens, max(1, len(tokenizer(answer, add_special_tokens=False)["input_ids"])))


@torch.no_grad()
def answer_activations(
    model: nn.Module,
    tokenizer,
    pairs: Sequence[PreferencePair],
    point: HookPoint,
    reduce: str = "last",
    batch_size: int = 8,
    max_length: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals at ``point`` of the chosen and the rejected completions, one row per pair.

    ``reduce="last"``: at the answer's last own token (before the end of turn);
    ``reduce="all"``: every answer token, returned as a list per pair instead of a stacked row.
    """
    pairs = list(pairs)
    encoded, report = encode_pairs(tokenizer, pairs, capped_length(model, max_length))
    if report.dropped:
        raise SettingsError(f"{report.dropped} pair(s) do not fit max_length={max_length}; raise it.")
    device = model_device(model)
    pad = pad_token_id(tokenizer, model)
    chosen, rejected = [], []
    for start in range(0, len(encoded), batch_size):
        chunk: list[EncodedPair] = encoded[start : start + batch_size]
        batch = collate(chunk, pad).to(device)
        with record_residual(model, point) as seen:
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
        h = seen[-1].float()
        n = len(chunk)
        for j, enc in enumerate(chunk):
            p, pair = len(enc.prompt_ids), pairs[start + j]
            for out, row, answer, ids in ((chosen, j, pair.chosen, enc.chosen_ids), (rejected, n + j, pair.rejected, enc.rejected_ids)):
                first, end = _own_span(tokenizer, pair, answer, len(ids))
                out.append(h[row, p + end - 1].cpu() if reduce == "last" else h[row, p + first : p + end].cpu())
    if reduce == "last":
        return torch.stack(chosen), torch.stack(rejected)
    return chosen, rejected


def compute_caa(model: nn.Module, tokenizer, pairs: Sequence[PreferencePair], layer: int | HookPoint,
                **kwargs) -> SteeringVector:
    """CAA: the mean difference of chosen and rejected residuals at the last answer token, at the
    output of block ``layer`` (or at a hook point, such as an SAE's)."""
    point = layer if isinstance(layer, HookPoint) else block_output(model, layer)
    chosen, rejected = answer_activations(model, tokenizer, pairs, point, "last", **kwargs)
    values = (chosen - rejected).mean(0)
    return SteeringVector("dense", values, point.hook_name, method="caa", model_id=model_id(model),
                          default_multiplier=DEFAULT_MULTIPLIER["caa"],
                          metadata={"n_pairs": str(len(chosen)), "position": "last answer token", **provenance(model)})


def sas_direction(pos: torch.Tensor, neg: torch.Tensor, tau: float = 0.7):
    """SAS's rule on per-example SAE codes (rows = examples): keep latents active in at least
    ``tau`` of a side's examples, drop those kept on both sides, and take ``mean⁺ − mean⁻`` there.
    Returns the vector and the kept masks of each side."""
    kept_pos = (pos > 0).float().mean(0) >= tau
    kept_neg = (neg > 0).float().mean(0) >= tau
    keep = kept_pos ^ kept_neg
    return torch.where(keep, pos.mean(0) - neg.mean(0), torch.zeros(())), kept_pos, kept_neg


@torch.no_grad()
def compute_sas(
    model: nn.Module, tokenizer, pairs: Sequence[PreferencePair], sae: nn.Module, tau: float = 0.7, **kwargs
) -> SteeringVector:
    """SAS: mean SAE codes of chosen minus rejected completions over side-specific latents.

    A completion's code is the mean of its answer tokens' SAE codes; a latent is "active in an
    example" when that mean is positive.
    """
    if not 0 < tau <= 1:
        raise SettingsError(f"tau={tau} must be in (0, 1].")
    point = check_sae_fits(model, sae)
    chosen, rejected = answer_activations(model, tokenizer, pairs, point, "all", **kwargs)
    encode = lambda rows: torch.stack([sae.encode(sae_input(sae, r.to(sae.W_enc.device))).mean(0).float().cpu()  # noqa: E731
                                       for r in rows])
    values, kept_pos, kept_neg = sas_direction(encode(chosen), encode(rejected), tau)
    return SteeringVector("sparse", values, point.hook_name, method="sas", model_id=model_id(model),
                          sae_source=sae_source(sae), default_multiplier=DEFAULT_MULTIPLIER["sas"], sae=sae,
                          metadata={"tau": str(tau), "n_pairs": str(len(chosen)), **provenance(model, sae),
                                    "kept_chosen_only": str(int((kept_pos & ~kept_neg).sum())),
                                    "kept_rejected_only": str(int((kept_neg & ~kept_pos).sum()))})


__all__ = ["answer_activations", "compute_caa", "compute_sas", "sas_direction"]
