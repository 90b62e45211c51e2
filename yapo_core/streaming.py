"""Streaming the rows of one batched steered/unsteered ``generate`` call as they grow.

:func:`~yapo_core.generation.generate` makes every (prompt, multiplier) one row of a single
batch, so all rows share decoding settings and seed. ``transformers``' text streamers accept one
row only; :class:`BatchStreamer` keeps every row. :func:`stream_generate` runs the call in a
worker thread and yields partial answers; its last item is ``generate``'s own return value, so
the streamed result is exactly the non-streamed one.
"""

from __future__ import annotations

import queue
import threading
from contextlib import nullcontext
from typing import Iterator, Sequence

from transformers.generation.streamers import BaseStreamer

from .generation import generate


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
    lock: threading.Lock | threading.RLock | None = None,
    **settings,
) -> Iterator[list[dict[float, str]]]:
    """Yield ``generate``'s result shape (per prompt, ``{multiplier: text}``) as tokens arrive.

    ``lock`` is held by the worker for the whole call (the model carries a steering hook meanwhile),
    so stopping the iteration early never leaves the model in use without it. ``settings`` are
    :func:`~yapo_core.generation.generate`'s keyword arguments.
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
        while item is not None and not streamer.updates.empty():
            item = streamer.updates.get_nowait()  # yield once for steps that arrived meanwhile
        if item is None:
            break
        yield _partial(tokenizer, streamer.rows, prompts, multipliers)
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
