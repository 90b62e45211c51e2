"""Log-probabilities of answers under a model: what training, evaluation and the baselines score."""

from __future__ import annotations

import torch
from torch import nn

from .encoding import EncodedPair, SequenceBatch, collate
from .models import model_device


def answer_logprobs(logits: torch.Tensor, batch: SequenceBatch) -> torch.Tensor:
    """Sum over answer tokens of ``log p(token | prefix)``, one number per row. The softmax runs
    at the positions that predict an answer token only: in fp32 over every position, a 256k
    vocabulary at 8 × 512 tokens would take 4 GiB."""
    rows, pos = batch.answer_mask[:, 1:].bool().nonzero(as_tuple=True)
    logp = torch.log_softmax(logits[rows, pos].float(), dim=-1)
    token_logp = logp.gather(-1, batch.input_ids[rows, pos + 1].unsqueeze(-1)).squeeze(-1)
    per_token = logits.new_zeros(batch.input_ids[:, 1:].shape, dtype=torch.float32).index_put((rows, pos), token_logp)
    return per_token.sum(-1)  # each row's tokens summed in order, as over the whole row


def sequence_logprobs(model: nn.Module, batch: SequenceBatch) -> torch.Tensor:
    """:func:`answer_logprobs` of one forward pass of ``model`` over ``batch``."""
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    return answer_logprobs(out.logits, batch)


def pad_token_id(tokenizer, model) -> int:
    """The tokenizer's pad (else eos) id; the model config's when no tokenizer is given."""
    source = tokenizer if tokenizer is not None else model.config
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(source, name, None)
        if isinstance(value, list):
            value = value[0]
        if value is not None:
            return int(value)
    return 0


@torch.no_grad()
def pair_logprobs(model: nn.Module, tokenizer, encoded: list[EncodedPair], batch_size: int = 8) -> torch.Tensor:
    """Answer log-probs of each pair's chosen and rejected answer, batch by batch: shape (len, 2)."""
    pad = pad_token_id(tokenizer, model)
    out = []
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start : start + batch_size], pad).to(model_device(model))
        lp = sequence_logprobs(model, batch).cpu()
        n = batch.n_pairs
        out.append(torch.stack([lp[:n], lp[n:]], 1))
    return torch.cat(out) if out else torch.zeros(0, 2)
