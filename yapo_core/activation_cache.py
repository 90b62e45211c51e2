"""The fast engine's activation cache: what never changes during training, computed once.

For every training pair: the residual at the steered point (blocks before it are frozen and come
before the vector), its SAE codes as sparse (index, value) lists, and the unsteered reference
log-probabilities (two numbers per pair). The prompt's residual is stored once per pair, since
chosen and rejected share it (causal attention). The cache lives in memory or in safetensors
shards on disk, keyed by a fingerprint of the model, hook, SAE and data (docs/method.md §6).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from .architectures import hidden_size
from .encoding import EncodedPair, collate
from .hooks import HookPoint, record_residual
from .logprobs import answer_logprobs
from .models import model_blocks_fingerprint, model_device, model_fingerprint, model_id
from .saes import (
    centres_input,
    sae_encoding_fingerprint,
    sae_fingerprint,
    sae_input,
    sae_latents_fingerprint,
    sae_source,
)


@dataclass
class CachedPair:
    """Everything about one pair that does not depend on the vector."""

    prompt_h: torch.Tensor  # (P, d) layer-L residual at the prompt tokens
    chosen_h: torch.Tensor  # (Aw, d) at the chosen answer's tokens
    rejected_h: torch.Tensor  # (Al, d)
    codes: tuple  # per sequence part: (counts per token, flat latent indices, flat values)
    reference: tuple[float, float]  # unsteered log p(y_w|x), log p(y_l|x)


def _sparse_codes(sae: nn.Module, h: torch.Tensor):
    z = sae.encode(sae_input(sae, h.to(sae.W_dec.device)))
    active = z > 0
    return active.sum(-1).to(torch.int32), active.nonzero()[:, -1].to(torch.int32), z[active].float()


CODES_VERSION = 2
"""How the cached SAE codes are computed (2: from the residual as the SAE reads it, centred for an SAE
trained on a centred residual); a change to it makes earlier caches miss instead of being reused."""


def fingerprint(model: nn.Module, sae: nn.Module | None, hook_name: str, encoded: Sequence[EncodedPair]) -> str:
    """Identifies a cache: how its codes are computed, model (id, config, its weights' fingerprint),
    layer, SAE (its matrices, latent order, encoder bias, threshold and encoding settings, and whether
    it reads the residual centred) and token data."""
    digest = hashlib.sha256()
    digest.update(f"codes v{CODES_VERSION}".encode())
    digest.update(model_id(model).encode())
    digest.update(model.config.to_json_string().encode())
    digest.update(model_fingerprint(model).encode())
    digest.update(model_blocks_fingerprint(model).encode())  # a fine-tune of the blocks between first and last
    digest.update(hook_name.encode())
    if sae is not None:
        digest.update(json.dumps(sae_source(sae).as_dict(), sort_keys=True).encode())
        digest.update(sae_fingerprint(sae).encode())
        digest.update(sae_latents_fingerprint(sae).encode())
        digest.update(sae_encoding_fingerprint(sae).encode())
        digest.update(f"centred {centres_input(sae)}".encode())
    for pair in encoded:
        digest.update(repr((pair.prompt_ids, pair.chosen_ids, pair.rejected_ids)).encode())
    return digest.hexdigest()[:24]


def _sweep_stale_builds(final: Path | None, key: str) -> None:
    """Remove the folders that builds of ``key`` left behind when their process ended mid-build."""
    if final is None or not final.parent.is_dir():
        return
    for stale in final.parent.glob(f".{key}.building-*"):
        try:
            pid = int(stale.name.split(".building-")[1].split("-")[0])
            os.kill(pid, 0)  # the process is alive: its build is going on
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            pass


@contextlib.contextmanager
def _removed_on_failure(folder: Path | None):
    """A build's folder, removed when the build fails or is interrupted."""
    try:
        yield
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise


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
        point: HookPoint,
        encoded: Sequence[EncodedPair],
        pad_id: int,
        batch_size: int = 8,
        cache_dir: str | Path | None = None,
        in_memory: bool = True,
        progress: bool = False,
    ) -> "PairCache":
        """Run the model once over ``encoded`` (unsteered) and keep the residual at ``point``, its
        SAE codes (when ``sae`` is given) and the reference answer log-probabilities."""
        key = fingerprint(model, sae, point.hook_name, encoded)
        folder = Path(cache_dir) / key if cache_dir else None
        if folder is not None and (folder / "complete.json").is_file():
            return cls._from_folder(folder, len(encoded), key, in_memory)
        if folder is None and not in_memory:
            raise ValueError("an on-disk cache (in_memory=False) needs cache_dir.")
        final, folder = folder, (folder.with_name(f".{key}.building-{os.getpid()}-{threading.get_ident()}")
                                 if folder is not None else None)  # renamed to ``final`` when whole
        entries: dict[int, CachedPair] = {}
        shard_tensors: dict[str, torch.Tensor] = {}
        device = model_device(model)
        _sweep_stale_builds(final, key)
        with _removed_on_failure(folder):
            bar = tqdm(total=len(encoded), desc="caching activations", disable=not progress)
            for start in range(0, len(encoded), batch_size):
                chunk = list(encoded[start : start + batch_size])
                batch = collate(chunk, pad_id).to(device)
                with record_residual(model, point) as seen:
                    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
                reference = answer_logprobs(logits, batch).cpu()
                h = seen[-1]
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
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "complete.json").write_text(json.dumps({"pairs": len(encoded), "key": key}))
            if final.is_dir() and not (final / "complete.json").is_file():
                shutil.rmtree(final, ignore_errors=True)  # what a build that never finished left there
            try:
                os.replace(folder, final)
            except OSError:  # another run finished the same cache first: its folder is the same data
                shutil.rmtree(folder, ignore_errors=True)
                if not (final / "complete.json").is_file():
                    raise
            folder = final
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


def estimate_cache_bytes(model: nn.Module, sae: nn.Module | None, encoded: Sequence[EncodedPair]) -> int:
    """Bytes the cache will take: residuals at every token, plus sparse codes (assuming the
    SAE's active latents per token stay under 1% of its width)."""
    d = hidden_size(model)
    element = next(model.parameters()).element_size()
    tokens = sum(len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in encoded)
    codes = tokens * max(1, sae.cfg.d_sae // 100) * 8 if sae is not None else 0
    return tokens * d * element + codes


def available_memory() -> int:
    """Physical memory available now (Linux/macOS), or a generous guess elsewhere."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30
