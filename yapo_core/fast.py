"""The fast trainer: the same objective as the straightforward loop, computed without waste
(method.md §6).

What never changes during training is computed once per dataset and cached (:class:`PairCache`):
the layer-L residual ``h_L`` of every training sequence (blocks 0..L are frozen and come before
the vector), its SAE codes as sparse (index, value) lists, and the unsteered reference
log-probabilities (two numbers per pair). The prompt's ``h_L`` is stored once per pair, since
chosen and rejected share it (causal attention).

Each step then (:class:`FastObjective`):

- applies the vector to the cached ``h_L`` — for a sparse vector through the exact identity
  ``h' = h + relu(a)·W_dec + Σ_{i: z_i>0} (relu(z_i + a_i) − z_i − relu(a_i))·W_dec[i]``, a
  shared dense term plus an ``embedding_bag`` over the few active latents of each token, so no
  d_sae-wide tensor exists per token and the gradient at v = 0 is the straightforward one;
- runs only blocks L+1..N-1, forward and backward, called with the very arguments the model
  itself passes them (captured by a cheap probe of the model's own forward, so masks, rotary
  embeddings and sliding windows come from transformers, not from a re-implementation);
- applies the final norm and unembedding only at the positions that predict answer tokens.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .architectures import architecture_of, decoder_layers, unembed
from .data import EncodedPair, collate
from .models import model_device, model_id
from .saes import decoder_is_linear, sae_source


class _ProbeDone(Exception):
    pass


def layer_types(model: nn.Module) -> list[str]:
    """Each block's attention type (Gemma-2 alternates sliding and full); one type elsewhere."""
    n = len(decoder_layers(model))
    types = getattr(model.config, "layer_types", None)
    return list(types[:n]) if types else ["all"] * n


@torch.no_grad()
def capture_block_inputs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """The (positional, keyword) arguments the model passes its blocks, per attention type.

    Runs the model's own forward with pre-hooks that record each new attention type's
    arguments and stop as soon as all types are seen: no block runs for single-type models,
    one block for Gemma-2.
    """
    layers, types = decoder_layers(model), layer_types(model)
    wanted, captured, handles = set(types), {}, []

    def make_hook(kind):
        def hook(module, args, kwargs):
            if kind not in captured:
                captured[kind] = (args[1:], dict(kwargs))
            if set(captured) == wanted:
                raise _ProbeDone

        return hook

    for layer, kind in zip(layers, types):
        handles.append(layer.register_forward_pre_hook(make_hook(kind), with_kwargs=True))
    base = model.get_submodule(architecture_of(model).base)
    try:
        base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _ProbeDone:
        pass
    finally:
        for h in handles:
            h.remove()
    return [captured[kind] for kind in types]


def run_blocks(model: nn.Module, hidden: torch.Tensor, block_inputs, start: int) -> torch.Tensor:
    """Blocks ``start..N-1`` on ``hidden`` with the arguments the model would pass them."""
    for layer, (args, kwargs) in list(zip(decoder_layers(model), block_inputs))[start:]:
        out = layer(hidden, *args, **kwargs)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


# ---------------------------------------------------------------------------------------------
# The cache


@dataclass
class CachedPair:
    """Everything about one pair that does not depend on the vector."""

    prompt_h: torch.Tensor  # (P, d) layer-L residual at the prompt tokens
    chosen_h: torch.Tensor  # (Aw, d) at the chosen answer's tokens
    rejected_h: torch.Tensor  # (Al, d)
    codes: tuple  # per sequence part: (counts per token, flat latent indices, flat values)
    reference: tuple[float, float]  # unsteered log p(y_w|x), log p(y_l|x)


def _sparse_codes(sae: nn.Module, h: torch.Tensor):
    z = sae.encode(h.to(sae.dtype))
    active = z > 0
    return active.sum(-1).to(torch.int32), active.nonzero()[:, -1].to(torch.int32), z[active].float()


def fingerprint(model: nn.Module, sae: nn.Module | None, hook_name: str, encoded: Sequence[EncodedPair]) -> str:
    """Identifies a cache: model (id, config, a weight checksum), layer, SAE and token data."""
    digest = hashlib.sha256()
    digest.update(model_id(model).encode())
    digest.update(model.config.to_json_string().encode())
    layers = decoder_layers(model)
    for p in list(layers[0].parameters())[:2] + list(layers[-1].parameters())[:2]:
        digest.update(repr(float(p.detach().float().sum())).encode())
    digest.update(hook_name.encode())
    if sae is not None:
        digest.update(json.dumps(sae_source(sae).as_dict(), sort_keys=True).encode())
        digest.update(repr(float(sae.W_enc.detach().float().sum())).encode())
        digest.update(repr(tuple(sae.W_enc.shape)).encode())
    for pair in encoded:
        digest.update(repr((pair.prompt_ids, pair.chosen_ids, pair.rejected_ids)).encode())
    return digest.hexdigest()[:24]


class PairCache:
    """Per-pair cached activations, in CPU memory or in safetensors shards on disk.

    With ``cache_dir`` the cache is written under ``cache_dir/<fingerprint>/`` and reused by any
    later run with the same model, layer, SAE and data; a change of any of them changes the
    fingerprint and rebuilds. With ``in_memory=False`` pairs are read from disk at each step,
    so datasets larger than memory can be trained on.
    """

    SHARD = 256

    def __init__(self, entries: dict[int, CachedPair] | None, folder: Path | None, n: int, key: str):
        self._entries, self.folder, self.n, self.key = entries, folder, n, key
        self._open_shards: dict[int, object] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> CachedPair:
        if self._entries is not None:
            return self._entries[i]
        from safetensors import safe_open

        shard = i // self.SHARD
        if shard not in self._open_shards:
            self._open_shards[shard] = safe_open(str(self.folder / f"shard-{shard:05d}.safetensors"), "pt")
        return _entry_from_tensors(self._open_shards[shard], i)

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        model: nn.Module,
        sae: nn.Module | None,
        layer: int,
        hook_name: str,
        encoded: Sequence[EncodedPair],
        pad_id: int,
        batch_size: int = 8,
        cache_dir: str | Path | None = None,
        in_memory: bool = True,
        progress: bool = False,
    ) -> "PairCache":
        from safetensors.torch import save_file
        from tqdm.auto import tqdm

        key = fingerprint(model, sae, hook_name, encoded)
        folder = Path(cache_dir) / key if cache_dir else None
        if folder is not None and (folder / "complete.json").is_file():
            return cls._from_folder(folder, len(encoded), key, in_memory)
        if folder is None and not in_memory:
            raise ValueError("an on-disk cache (in_memory=False) needs cache_dir.")
        entries: dict[int, CachedPair] = {}
        shard_tensors: dict[str, torch.Tensor] = {}
        block = decoder_layers(model)[layer]
        device = model_device(model)
        bar = tqdm(total=len(encoded), desc="caching activations", disable=not progress)
        for start in range(0, len(encoded), batch_size):
            chunk = list(encoded[start : start + batch_size])
            batch = collate(chunk, pad_id).to(device)
            seen = {}
            handle = block.register_forward_hook(lambda m, a, o: seen.__setitem__("h", o[0] if isinstance(o, tuple) else o))
            try:
                logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
            finally:
                handle.remove()
            from .training import answer_logprobs

            reference = answer_logprobs(logits, batch).cpu()
            h = seen["h"].detach()
            n = len(chunk)
            for j, pair in enumerate(chunk):
                p, aw, al = len(pair.prompt_ids), len(pair.chosen_ids), len(pair.rejected_ids)
                parts = (h[j, :p], h[j, p : p + aw], h[n + j, p : p + al])
                codes = tuple(_sparse_codes(sae, part) for part in parts) if sae is not None else ()
                entry = CachedPair(*(t.cpu().clone() for t in parts), codes=tuple(tuple(c.cpu() for c in code) for code in codes),
                                   reference=(float(reference[j]), float(reference[n + j])))
                i = start + j
                if in_memory:
                    entries[i] = entry
                if folder is not None:
                    shard_tensors.update(_entry_to_tensors(entry, i))
                    if (i + 1) % cls.SHARD == 0 or i + 1 == len(encoded):
                        folder.mkdir(parents=True, exist_ok=True)
                        save_file(shard_tensors, str(folder / f"shard-{i // cls.SHARD:05d}.safetensors"))
                        shard_tensors = {}
            bar.update(n)
        bar.close()
        if folder is not None:
            (folder / "complete.json").write_text(json.dumps({"pairs": len(encoded), "key": key}))
        return cls(entries if in_memory else None, folder, len(encoded), key)

    @classmethod
    def _from_folder(cls, folder: Path, n: int, key: str, in_memory: bool) -> "PairCache":
        cache = cls(None, folder, n, key)
        if in_memory:
            cache._entries = {i: cache[i] for i in range(n)}
            cache._open_shards.clear()
        return cache


_PARTS = ("prompt", "chosen", "rejected")


def _entry_to_tensors(entry: CachedPair, i: int) -> dict[str, torch.Tensor]:
    out = {f"{i}.{name}_h": t.contiguous() for name, t in zip(_PARTS, (entry.prompt_h, entry.chosen_h, entry.rejected_h))}
    out[f"{i}.reference"] = torch.tensor(entry.reference, dtype=torch.float64)
    for name, (counts, idx, vals) in zip(_PARTS, entry.codes):
        out.update({f"{i}.{name}_counts": counts, f"{i}.{name}_idx": idx, f"{i}.{name}_vals": vals})
    return out


def _entry_from_tensors(f, i: int) -> CachedPair:
    keys = set(f.keys())
    hs = [f.get_tensor(f"{i}.{name}_h") for name in _PARTS]
    codes = tuple(
        tuple(f.get_tensor(f"{i}.{name}_{k}") for k in ("counts", "idx", "vals"))
        for name in _PARTS if f"{i}.{name}_counts" in keys
    )
    ref = f.get_tensor(f"{i}.reference")
    return CachedPair(*hs, codes=codes, reference=(float(ref[0]), float(ref[1])))


# ---------------------------------------------------------------------------------------------
# Steps


def sparse_update(h: torch.Tensor, a: torch.Tensor, W_dec: torch.Tensor, counts, idx, vals) -> torch.Tensor:
    """``h + (relu(z + a) − z)·W_dec`` for cached sparse codes ``z`` of the tokens of ``h``.

    ``h``: (n_tokens, d); codes: per-token active counts and flat (index, value) lists.
    """
    dense = F.relu(a) @ W_dec  # shared by every token
    a_active = a[idx.long()]
    weights = F.relu(vals + a_active) - vals - F.relu(a_active)
    offsets = torch.zeros_like(counts, dtype=torch.long)
    offsets[1:] = counts.long().cumsum(0)[:-1]
    per_token = F.embedding_bag(idx.long(), W_dec, offsets, mode="sum", per_sample_weights=weights)
    return h + (dense + per_token).to(h.dtype)


class FastObjective:
    """Drop-in replacement of the straightforward objective for :class:`~.training.Trainer`."""

    def __init__(self, model, sae, point, kind, cache_dir=None, in_memory=True, progress=False, cache_batch_size=8):
        self.model, self.sae, self.point, self.kind = model, sae, point, kind
        self.cache_dir, self.in_memory, self.progress = cache_dir, in_memory, progress
        self.cache_batch_size = cache_batch_size
        self.layer = point.resid_layer
        if kind == "sparse" and not decoder_is_linear(sae):
            raise ValueError("the fast engine needs an SAE with a linear decoder; use engine='simple'.")

    def prepare(self, encoded: Sequence[EncodedPair], pad_id: int) -> None:
        self.pad_id = pad_id
        self.index = {id(pair): i for i, pair in enumerate(encoded)}
        self.cache = PairCache.build(
            self.model, self.sae if self.kind == "sparse" else None, self.layer, self.point.hook_name, encoded,
            pad_id, self.cache_batch_size, self.cache_dir, self.in_memory, self.progress,
        )

    def _steer(self, h: torch.Tensor, codes, a: torch.Tensor) -> torch.Tensor:
        if self.kind == "dense":
            return h + a.to(h.dtype)
        return sparse_update(h, a, self.sae.W_dec, *codes)

    def logprobs(self, pairs: list[EncodedPair], v: torch.Tensor, direction: float):
        device = model_device(self.model)
        batch = collate(pairs, self.pad_id).to(device)
        n, width = len(pairs), batch.input_ids.shape[1]
        entries = [self.cache[self.index[id(p)]] for p in pairs]
        a = v * direction
        rows = []
        for side in (0, 1):  # chosen rows, then rejected rows, as in collate
            for e in entries:
                answer_h = e.chosen_h if side == 0 else e.rejected_h
                h = torch.cat([e.prompt_h, answer_h]).to(device)
                if self.kind == "sparse":
                    parts = (e.codes[0], e.codes[1 + side])
                    codes = tuple(torch.cat([parts[0][k], parts[1][k]]).to(device) for k in range(3))
                else:
                    codes = None
                steered = self._steer(h, codes, a)
                rows.append(F.pad(steered, (0, 0, 0, width - steered.shape[0])))
        hidden = torch.stack(rows)
        block_inputs = capture_block_inputs(self.model, batch.input_ids, batch.attention_mask)
        hidden = run_blocks(self.model, hidden, block_inputs, self.layer + 1)
        # position t predicts token t+1: keep the positions whose next token is an answer token
        predicts = batch.answer_mask[:, 1:]
        row_of, pos_of = predicts.nonzero(as_tuple=True)
        logits = unembed(self.model, hidden[row_of, pos_of])
        token_logp = torch.log_softmax(logits.float(), -1).gather(-1, batch.input_ids[row_of, pos_of + 1].unsqueeze(-1)).squeeze(-1)
        steered = torch.zeros(2 * n, dtype=token_logp.dtype, device=device).index_add(0, row_of, token_logp)
        reference = torch.tensor([e.reference[0] for e in entries] + [e.reference[1] for e in entries], device=device)
        return steered, reference
