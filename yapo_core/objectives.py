"""The two objectives behind :class:`~.training.Trainer`: the straightforward one, kept as the
readable definition and the test oracle, and the fast one, the same objective computed without
waste (docs/method.md §6).

What never changes during training is computed once per dataset and cached
(:class:`~.activation_cache.PairCache`): the residual ``h_L`` at the steered point, its SAE codes
and the unsteered reference log-probabilities.

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

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .activation_cache import CachedPair, PairCache, available_memory, estimate_cache_bytes
from .architectures import architecture_of, decoder_layers, length_dependent_rope, text_config, unembed
from .encoding import EncodedPair, collate
from .errors import SettingsError
from .hooks import HookPoint, steering_hook, this_thread_only
from .logprobs import sequence_logprobs
from .models import model_device
from .saes import decoder_is_linear, decoder_matrix, encode_is_stateful
from .steering import added, steer_hidden


class _ProbeDone(Exception):
    pass


def layer_types(model: nn.Module) -> list[str]:
    """Each block's attention type (Gemma-2 alternates sliding and full), for the families whose
    blocks read ``config.layer_types``; one type elsewhere, whatever the config holds."""
    n = len(decoder_layers(model))
    types = getattr(text_config(model), "layer_types", None)
    uses_types = architecture_of(model).windows == "layer_types"
    return list(types[:n]) if types and uses_types else ["all"] * n


@torch.no_grad()
def capture_block_inputs(model: nn.Module, input_ids: torch.Tensor, attention_mask, position_ids=None):
    """The (positional, keyword) arguments the model passes its blocks, per attention type.

    Runs the model's own forward with pre-hooks that record each new attention type's
    arguments and stop as soon as all types are seen: no block runs for single-type models,
    one block for Gemma-2.
    """
    layers, types = decoder_layers(model), layer_types(model)
    wanted, captured, handles = set(types), {}, []

    def make_hook(kind):
        @this_thread_only
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
        extra = {"position_ids": position_ids} if position_ids is not None else {}
        base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra)
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


def sliding_windows(model: nn.Module) -> dict[str, int | None]:
    """Attention window per attention type (None = full), as the model's own masks apply it."""
    cfg, types, windows = text_config(model), set(layer_types(model)), architecture_of(model).windows
    window = getattr(cfg, "sliding_window", None) if windows != "none" else None
    if types == {"all"}:  # one type for every block (Mistral applies its window to all)
        return {"all": window}
    return {t: window if t == "sliding_attention" else None for t in types}


def packed_pair_masks(model: nn.Module, segments: torch.Tensor, positions: torch.Tensor, dtype: torch.dtype):
    """4-D attention masks for rows packed as ``[prompt | chosen | rejected | pad]``.

    ``segments``: 0 prompt, 1 chosen, 2 rejected, -1 pad; ``positions``: the position ids
    (both answers start right after the prompt). A token sees the tokens before it except that
    rejected tokens do not see chosen ones, so each answer sees exactly what it would see in
    its own sequence. Returns what the model's forward accepts as ``attention_mask``: one mask,
    or a dict per attention type; bool for SDPA, additive float for eager attention.
    """
    n, t = segments.shape
    q, k = torch.arange(t, device=segments.device).view(t, 1), torch.arange(t, device=segments.device).view(1, t)
    seg_q, seg_k = segments.view(n, t, 1), segments.view(n, 1, t)
    allowed = (k <= q) & (seg_k >= 0) & ~((seg_q == 2) & (seg_k == 1))
    distance = positions.view(n, t, 1) - positions.view(n, 1, t)
    masks = {}
    for kind, window in sliding_windows(model).items():
        ok = allowed if window is None else allowed & (distance < window)
        ok = ok.unsqueeze(1)
        if text_config(model)._attn_implementation == "eager":
            ok = torch.zeros(ok.shape, dtype=dtype, device=ok.device).masked_fill(~ok, torch.finfo(dtype).min)
        masks[kind] = ok
    return masks["all"] if "all" in masks else masks


def supports_packing(model: nn.Module) -> bool:
    """Prompt sharing passes custom 4-D masks, which eager and SDPA attention take as they are."""
    return getattr(text_config(model), "_attn_implementation", None) in ("eager", "sdpa")


def sparse_update(h: torch.Tensor, a: torch.Tensor, W_dec: torch.Tensor, counts, idx, vals) -> torch.Tensor:
    """``h + (relu(z + a) − z)·W_dec`` for cached sparse codes ``z`` of the tokens of ``h``.

    ``h``: (n_tokens, d); codes: per-token active counts and flat (index, value) lists.
    """
    a, vals = a.to(W_dec.dtype), vals.to(W_dec.dtype)  # in the SAE's dtype, as the steering hook computes it
    dense = F.relu(a) @ W_dec  # shared by every token
    a_active = a[idx.long()]
    weights = F.relu(vals + a_active) - vals - F.relu(a_active)
    offsets = torch.zeros_like(counts, dtype=torch.long)
    offsets[1:] = counts.long().cumsum(0)[:-1]
    per_token = F.embedding_bag(idx.long(), W_dec, offsets, mode="sum", per_sample_weights=weights)
    return added(h, dense + per_token)


# ---------------------------------------------------------------------------------------------
# The two objectives


def preference_loss(
    steered: torch.Tensor, reference: torch.Tensor, direction: float, beta: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """The bi-directional loss from per-row answer log-probs (chosen rows first), and metrics."""
    n = steered.shape[0] // 2
    rewards = beta * (steered - reference)
    chosen, rejected = rewards[:n], rewards[n:]
    margins = direction * (chosen - rejected)
    loss = -F.logsigmoid(margins).mean()
    margins, chosen, rejected = margins.detach(), chosen.detach(), rejected.detach()
    metrics = dict(
        reward_accuracy=float((margins > 0).float().mean()),
        margin=float(margins.mean()),
        chosen_reward=float(chosen.mean()),
        rejected_reward=float(rejected.mean()),
    )
    return loss, metrics


class SimpleObjective:
    """The straightforward loop: the whole model with the hook, and an unsteered pass for the
    reference, every step (dense SAE encode/decode). Kept as the readable definition."""

    def __init__(self, model, sae, point, kind):
        self.model, self.sae, self.point, self.kind = model, sae, point, kind

    @property
    def exclusive(self) -> bool:
        """Whether a step needs the model to itself: only when it encodes with an SAE that keeps
        its input's scale between encode and decode (hooks act only in their own thread)."""
        return self.kind == "sparse" and encode_is_stateful(self.sae)

    def prepare(self, encoded: Sequence[EncodedPair], pad_id: int) -> None:
        self.pad_id = pad_id

    def logprobs(self, pairs: list[EncodedPair], v: torch.Tensor, direction: float):
        batch = collate(pairs, self.pad_id).to(model_device(self.model))
        with torch.no_grad():
            reference = sequence_logprobs(self.model, batch)
        with steering_hook(self.model, self.point, lambda h: steer_hidden(h, self.kind, v, direction, self.sae)):
            steered = sequence_logprobs(self.model, batch)
        return steered, reference


class FastObjective:
    """The straightforward objective computed without waste: cached residuals, the sparse identity,
only the blocks after the steered point (see the module docstring)."""

    exclusive = False
    """A step (not :meth:`prepare`) may run while other threads use the model: it reads only
    weights and its own cache, and hooks act only in their own thread."""

    def __init__(self, model, sae, point, kind, cache_dir=None, in_memory=True, progress=False, cache_batch_size=8,
                 share_prompt: bool | None = None):
        self.model, self.sae, self.point, self.kind = model, sae, point, kind
        self.share_prompt = supports_packing(model) if share_prompt is None else share_prompt
        self.cache_dir, self.in_memory, self.progress = cache_dir, in_memory, progress
        self.cache_batch_size = cache_batch_size
        self.layer = point.resid_layer
        if kind == "sparse" and not decoder_is_linear(sae):
            raise ValueError("the fast engine needs an SAE with a linear decoder; use engine='simple'.")
        self.decoder = decoder_matrix(sae) if kind == "sparse" else None

    def prepare(self, encoded: Sequence[EncodedPair], pad_id: int) -> None:
        self.pad_id = pad_id
        self.index = {id(pair): i for i, pair in enumerate(encoded)}
        if self.in_memory is None:  # auto: memory unless the cache would take over half of it
            self.in_memory = self.cache_dir is None or estimate_cache_bytes(self.model, self.sae, encoded) < 0.5 * available_memory()
        self.cache = PairCache.build(
            self.model, self.sae if self.kind == "sparse" else None, self.point, encoded,
            pad_id, self.cache_batch_size, self.cache_dir, self.in_memory, self.progress,
        )

    def _steer(self, h: torch.Tensor, codes, a: torch.Tensor) -> torch.Tensor:
        if self.kind == "dense":
            return added(h, a)
        W_dec = self.decoder  # on the steered block's device, which on a sharded model is not h's
        out = sparse_update(h.to(W_dec.device), a.to(W_dec.device), W_dec, *(c.to(W_dec.device) for c in codes))
        return out.to(h.device)

    def logprobs(self, pairs: list[EncodedPair], v: torch.Tensor, direction: float):
        entries = [self.cache[self.index[id(p)]] for p in pairs]
        if self.share_prompt:
            return self._packed_logprobs(pairs, entries, v * direction)
        return self._separate_logprobs(pairs, entries, v * direction)

    def _codes(self, e: CachedPair, parts: Sequence[int], device):
        if self.kind == "dense":
            return None
        return tuple(torch.cat([e.codes[i][k] for i in parts]).to(device) for k in range(3))

    def _head_logprobs(self, hidden, rows, positions, targets, out_rows, n_out):
        """Sum of log p(target) per output row, the LM head applied at the given positions only."""
        logits = unembed(self.model, hidden[rows, positions])
        token_logp = torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return torch.zeros(n_out, dtype=token_logp.dtype, device=hidden.device).index_add(0, out_rows, token_logp)

    def _reference(self, entries, device):
        return torch.tensor([e.reference[0] for e in entries] + [e.reference[1] for e in entries], device=device)

    def _packed_logprobs(self, pairs, entries, a):
        """One row per pair, ``[prompt | chosen | rejected]``: the prompt runs through the blocks
        once for both answers."""
        device = model_device(self.model)
        n = len(pairs)
        width = max(len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        segments = torch.full((n, width), -1, dtype=torch.long)
        positions = torch.zeros((n, width), dtype=torch.long)
        rows, head_rows, head_pos, targets, out_rows = [], [], [], [], []
        for i, (pair, e) in enumerate(zip(pairs, entries)):
            p, aw, al = len(pair.prompt_ids), len(pair.chosen_ids), len(pair.rejected_ids)
            ids[i, : p + aw + al] = torch.tensor(pair.prompt_ids + pair.chosen_ids + pair.rejected_ids)
            segments[i, :p], segments[i, p : p + aw], segments[i, p + aw : p + aw + al] = 0, 1, 2
            positions[i, : p + aw] = torch.arange(p + aw)
            positions[i, p + aw : p + aw + al] = torch.arange(p, p + al)
            h = torch.cat([e.prompt_h, e.chosen_h, e.rejected_h]).to(device)
            steered = self._steer(h, self._codes(e, (0, 1, 2), device), a)
            rows.append(F.pad(steered, (0, 0, 0, width - steered.shape[0])))
            # answer token j is predicted by the position before it; both answers' first token by
            # the prompt's last position
            chosen_pos = [p - 1] + list(range(p, p + aw - 1))
            rejected_pos = [p - 1] + list(range(p + aw, p + aw + al - 1))
            for pos, answer, out in ((chosen_pos, pair.chosen_ids, i), (rejected_pos, pair.rejected_ids, n + i)):
                head_rows += [i] * len(pos)
                head_pos += pos
                targets += answer
                out_rows += [out] * len(pos)
        hidden = torch.stack(rows)
        segments, positions = segments.to(device), positions.to(device)
        masks = packed_pair_masks(self.model, segments, positions, hidden.dtype)
        block_inputs = capture_block_inputs(self.model, ids.to(device), masks, positions)
        hidden = run_blocks(self.model, hidden, block_inputs, self.layer + 1)
        as_tensor = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
        steered = self._head_logprobs(hidden, as_tensor(head_rows), as_tensor(head_pos), as_tensor(targets),
                                      as_tensor(out_rows), 2 * n)
        return steered, self._reference(entries, device)

    def _separate_logprobs(self, pairs, entries, a):
        """Chosen and rejected as separate right-padded rows (attention without custom masks)."""
        device = model_device(self.model)
        batch = collate(pairs, self.pad_id).to(device)
        n, width = len(pairs), batch.input_ids.shape[1]
        rows = []
        for side in (1, 2):  # chosen rows, then rejected rows, as in collate
            for e in entries:
                h = torch.cat([e.prompt_h, e.chosen_h if side == 1 else e.rejected_h]).to(device)
                steered = self._steer(h, self._codes(e, (0, side), device), a)
                rows.append(F.pad(steered, (0, 0, 0, width - steered.shape[0])))
        hidden = torch.stack(rows)
        block_inputs = capture_block_inputs(self.model, batch.input_ids, batch.attention_mask)
        hidden = run_blocks(self.model, hidden, block_inputs, self.layer + 1)
        # position t predicts token t+1: keep the positions whose next token is an answer token
        row_of, pos_of = batch.answer_mask[:, 1:].nonzero(as_tuple=True)
        steered = self._head_logprobs(hidden, row_of, pos_of, batch.input_ids[row_of, pos_of + 1], row_of, 2 * n)
        return steered, self._reference(entries, device)


ENGINES = ("auto", "fast", "simple")


def make_objective(engine: str, kind: str, model: nn.Module, sae: nn.Module | None, point: HookPoint,
                   cache_dir: str | None = None, in_memory: bool | None = None, progress: bool = False,
                   longest: int | None = None):
    """The fast engine where it applies (any supported architecture; sparse vectors need a
    linear SAE decoder; a rope that follows the batch's length needs sequences short of where it
    does), else the straightforward loop. Both compute the same loss and gradient. The objective's
    ``engine`` and ``reason`` say which was chosen and why."""
    name, reason = choose_engine(engine, kind, sae, model, longest)
    if name == "simple":
        objective = SimpleObjective(model, sae, point, kind)
    else:
        objective = FastObjective(model, sae, point, kind, cache_dir=cache_dir, in_memory=in_memory, progress=progress)
    objective.engine, objective.reason = name, reason
    return objective


def choose_engine(engine: str, kind: str, sae: nn.Module | None, model: nn.Module | None = None,
                  longest: int | None = None) -> tuple[str, str]:
    """``("fast" | "simple", why)`` for a run asked to use ``engine`` on pairs whose longest
    sequence (prompt and answer) has ``longest`` tokens."""
    if engine not in ENGINES:
        raise SettingsError(f"engine {engine!r} is unknown; use one of {ENGINES}.")
    rope = length_dependent_rope(model) if model is not None else None
    if rope is not None and (longest is None or longest > rope[1]) and engine != "simple":
        # the cache is built on other batches than a step's: their frequencies would differ
        why = (f"this model's {rope[0]} rope changes its frequencies with a batch's longest sequence past "
               f"{rope[1]} tokens, and the pairs run to {longest if longest is not None else 'an unknown length'}")
        if engine == "fast":
            raise SettingsError(f"engine='fast' is not exact here: {why}. Lower max_length to {rope[1]}, or use "
                                "engine='simple' or 'auto'.")
        return "simple", why
    fast_ok = kind == "dense" or decoder_is_linear(sae)
    if engine == "fast" and not fast_ok:
        raise SettingsError(f"engine='fast' needs an SAE with a linear decoder, and this one normalises its input "
                            f"({sae.cfg.normalize_activations}); use engine='simple' or 'auto'.")
    if engine == "simple":
        return "simple", "asked for"
    if not fast_ok:
        return "simple", (f"the SAE normalises its input ({sae.cfg.normalize_activations}), so its decoder is not "
                          "linear and the fast engine's sparse identity does not apply")
    return "fast", "asked for" if engine == "fast" else "the fast engine applies"
