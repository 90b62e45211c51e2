"""Measuring what a vector does: answer log-probabilities and held-out preference accuracy."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .data import PreferencePair, collate, encode_pairs
from .models import model_device
from .steering import SteeringVector
from .training import pad_token_id, sequence_logprobs


@dataclass
class PairScores:
    """Per-pair answer log-probs (summed over answer tokens) with and without the vector."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_ref: torch.Tensor
    rejected_ref: torch.Tensor

    @property
    def reward_margin(self) -> torch.Tensor:
        """``r(y_w) − r(y_l)`` per pair, with ``r = log π_steered − log π_0``."""
        return (self.chosen - self.chosen_ref) - (self.rejected - self.rejected_ref)


@torch.no_grad()
def score_pairs(
    model: nn.Module,
    tokenizer,
    pairs: Sequence[PreferencePair],
    vector: SteeringVector | None = None,
    multiplier: float = 1.0,
    sae: nn.Module | None = None,
    batch_size: int = 8,
    max_length: int = 512,
) -> PairScores:
    encoded, _ = encode_pairs(tokenizer, pairs, max_length)
    pad = pad_token_id(tokenizer, model)
    steered, reference = [], []
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start : start + batch_size], pad).to(model_device(model))
        reference.append(sequence_logprobs(model, batch))
        ctx = vector.apply(model, multiplier, sae=sae) if vector is not None else contextlib.nullcontext()
        with ctx:
            steered.append(sequence_logprobs(model, batch))
    halves = lambda rows: (torch.cat([r[: len(r) // 2] for r in rows]), torch.cat([r[len(r) // 2 :] for r in rows]))  # noqa: E731
    chosen, rejected = halves(steered)
    chosen_ref, rejected_ref = halves(reference)
    return PairScores(chosen, rejected, chosen_ref, rejected_ref)


def preference_accuracy(model, tokenizer, pairs, vector, multiplier: float = 1.0, sae=None, **kwargs) -> float:
    """Share of pairs whose chosen answer gains more log-probability than the rejected one when
    the vector is applied at ``multiplier`` (the held-out form of the training reward accuracy)."""
    scores = score_pairs(model, tokenizer, pairs, vector, multiplier, sae, **kwargs)
    return float((scores.reward_margin > 0).float().mean())
