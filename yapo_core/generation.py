"""Steered and unsteered generation from one batched ``generate`` call.

Every (prompt, multiplier) combination is one row of the batch; the steering hook scales the
vector per row, so all rows share decoding settings and seed. Rows at multiplier 0 are exactly
unsteered (the sparse update ``relu(z + 0) − z`` and the dense ``0·v`` are exactly zero).
Prompts are left-padded and outputs are sliced at the padded prompt length.

:func:`stream_generate` yields the rows of that one call as they grow (``transformers``' text
streamers accept one row only; :class:`BatchStreamer` keeps every row). It runs the call in a
worker thread and its last item is ``generate``'s own return value, so the streamed result is
exactly the non-streamed one.
"""

from __future__ import annotations

import queue
import threading
from contextlib import nullcontext
from typing import Iterator, Sequence

import torch
from torch import nn
from transformers.generation.streamers import BaseStreamer

from . import checks
from .architectures import context_length
from .encoding import has_chat_template, render_prompt
from .errors import SettingsError
from .hooks import hook_device, steering_hook
from .models import model_device
from .steering import SteeringVector, steer_hidden

STEER_POSITIONS = ("all", "prompt")

_SAMPLING = threading.Lock()
"""Held while a sampled generation seeds torch's global generator and draws from it: ``generate``
samples from that one generator, so two sessions sampling at once would otherwise draw from each
other's seed."""


class Reply(str):
    """A generated answer: its text (a ``str`` wherever one is used), the ids of the tokens it
    generated before its turn ended, and whether it ended its turn within ``max_new_tokens``.
    :func:`~.replies.fluency_problem` reads these rather than tokenising the text again, which can
    merge a derailing vector's fragments into fewer tokens than were generated."""

    tokens: tuple[int, ...]
    ended: bool

    def __new__(cls, text: str, tokens=(), ended: bool = True):
        self = super().__new__(cls, text)
        self.tokens, self.ended = tuple(int(t) for t in tokens), bool(ended)
        return self

    def __reduce__(self):
        return Reply, (str(self), self.tokens, self.ended)


def _replies(tokenizer, rows: torch.Tensor, eos) -> list[Reply]:
    """Each generated row's :class:`Reply`: the text of its tokens before the first end-of-turn id."""
    stops = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    replies = []
    for ids in rows.tolist():
        end = next((i for i, t in enumerate(ids) if t in stops), None)
        kept = ids if end is None else ids[:end]
        replies.append(Reply(tokenizer.decode(kept, skip_special_tokens=True).strip(), kept, end is not None))
    return replies


def encode_for_generation(tokenizer, prompts: Sequence[str], system: str | None = None):
    texts = [render_prompt(tokenizer, p, system) for p in prompts]
    # left-padded for this call only: the shared tokenizer's own setting is never changed under
    # another thread that uses it
    return tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                     add_special_tokens=not has_chat_template(tokenizer))


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
    """For each prompt, ``{multiplier: answer}``, each answer a :class:`Reply` (its text, tokens and
    whether it ended its turn). Without a vector only multiplier 0 is produced.

    ``steer_positions="all"`` (the method, and the default): steering applies to every prompt
    token and every generated token. ``"prompt"``: to the prompt tokens only (the prefill); the
    generated tokens run unsteered, reading the steered prompt through attention. The second keeps
    long answers fluent where a strong vector, added at every new token too, derails them.
    """
    if steer_positions not in STEER_POSITIONS:
        raise SettingsError(f"steer_positions={steer_positions!r} is unknown; use one of {list(STEER_POSITIONS)}.")
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise SettingsError(f"prompts must be one or more non-empty strings; got {prompts!r:.80}.")
    checks.whole("max_new_tokens", max_new_tokens, 1)
    checks.seed(seed)
    if do_sample:
        checks.number("temperature", temperature, above=0, most=100)
        checks.number("top_p", top_p, above=0, most=1)
    multipliers = checks.multipliers(multipliers) if vector is not None else [0.0]
    rows = [(p, m) for p in prompts for m in multipliers]
    enc = encode_for_generation(tokenizer, [p for p, _ in rows], system).to(model_device(model))
    context = context_length(model)
    if context is not None and enc["input_ids"].shape[1] + max_new_tokens > context:
        raise SettingsError(
            f"the prompt ({enc['input_ids'].shape[1]} tokens) and max_new_tokens={max_new_tokens} exceed the model's "
            f"context of {context} tokens; shorten the prompt or ask for fewer tokens."
        )
    per_row = torch.tensor([m for _, m in rows], dtype=torch.float32, device=model_device(model))
    settings = dict(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if do_sample:
        settings.update(temperature=temperature, top_p=top_p)
    with _SAMPLING if do_sample else nullcontext(), torch.no_grad():
        if do_sample:  # greedy decoding draws nothing: it leaves the global generator alone
            torch.manual_seed(seed)
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
    texts = _replies(tokenizer, out[:, enc["input_ids"].shape[1]:], settings["eos_token_id"])
    results: list[dict[float, str]] = [dict() for _ in prompts]
    for row, ((_, m), text) in enumerate(zip(rows, texts)):
        results[row // len(multipliers)][m] = text
    return results


# --- streaming ------------------------------------------------------------------------------------


class BatchStreamer(BaseStreamer):
    """Collects each row's new token ids; ``updates`` gets an item per step and None at the end."""

    def __init__(self, n_rows: int):
        self.rows: list[list[int]] = [[] for _ in range(n_rows)]
        self.updates: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate first hands over the (padded) prompts
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            self.rows[row].append(int(token))
        self.updates.put(True)

    def end(self) -> None:
        self.updates.put(None)


def stream_generate(
    model,
    tokenizer,
    prompts: str | Sequence[str],
    vector=None,
    multipliers: Sequence[float] = (0.0, 1.0),
    lock=None,
    **settings,
) -> Iterator[list[dict[float, str]]]:
    """Yield ``generate``'s result shape (per prompt, ``{multiplier: text}``) as tokens arrive.

    ``lock`` (any context manager, e.g. a :class:`threading.Lock`) is held by the worker for the
    whole call (the model carries a steering hook meanwhile), so stopping the iteration early never
    leaves the model in use without it. ``settings`` are :func:`~yapo_core.generation.generate`'s
    keyword arguments.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    multipliers = [float(m) for m in multipliers] if vector is not None else [0.0]
    streamer = BatchStreamer(len(prompts) * len(multipliers))
    outcome: dict[str, object] = {}

    def work():
        try:
            with lock if lock is not None else nullcontext():
                outcome["result"] = generate(model, tokenizer, prompts, vector, multipliers, streamer=streamer, **settings)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            outcome["error"] = exc
        finally:
            streamer.end()

    worker = threading.Thread(target=work, name="yapo-generate", daemon=True)
    worker.start()
    while True:
        item = streamer.updates.get()
        ended = item is None
        while not ended and not streamer.updates.empty():
            ended = streamer.updates.get_nowait() is None  # yield once for steps that arrived meanwhile
        if item is not None:  # new tokens: shown, also when the end came with them on a busy machine
            yield _partial(tokenizer, streamer.rows, prompts, multipliers)
        if ended:
            break
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    yield outcome["result"]


def _partial(tokenizer, rows, prompts, multipliers) -> list[dict[float, str]]:
    texts = tokenizer.batch_decode([list(r) for r in rows], skip_special_tokens=True)
    results: list[dict[float, str]] = [dict() for _ in prompts]
    for row, text in enumerate(texts):
        results[row // len(multipliers)][multipliers[row % len(multipliers)]] = text.strip()
    return results
