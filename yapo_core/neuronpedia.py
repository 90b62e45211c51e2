"""Neuronpedia, the public catalogue of SAE latents: a latent's page, and its explanation text when
the network allows (short timeouts, never a hang; offline, every function answers None or {})."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Iterable

from .hub import host_reachable
from .saes import SAESource

NEURONPEDIA = "https://www.neuronpedia.org"


def _neuronpedia_id(source: SAESource | str | None) -> str | None:
    return source.neuronpedia_id if isinstance(source, SAESource) else source


def neuronpedia_url(source: SAESource | str | None, index: int) -> str | None:
    """``https://www.neuronpedia.org/<model>/<sae-id>/<index>``, or None when the SAE has no
    Neuronpedia id (local or unlisted SAEs)."""
    np_id = _neuronpedia_id(source)
    return f"{NEURONPEDIA}/{np_id}/{int(index)}" if np_id else None


def neuronpedia_reachable(timeout: float = 2.0) -> bool:
    """Whether Neuronpedia answers a TCP connection within ``timeout`` seconds."""
    return host_reachable(NEURONPEDIA, timeout)


def neuronpedia_explanation(source: SAESource | str | None, index: int, timeout: float = 4.0) -> str | None:
    """The first explanation Neuronpedia's public API gives for a latent, or None (no id, no
    network, no explanation, any error). Never waits longer than ``timeout`` seconds."""
    np_id = _neuronpedia_id(source)
    if not np_id:
        return None
    url = f"{NEURONPEDIA}/api/feature/{np_id}/{int(index)}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"}), timeout=timeout) as r:
            data = json.loads(r.read(2_000_000))
    except (OSError, ValueError):
        return None
    explanations = data.get("explanations") if isinstance(data, dict) else None
    for item in explanations if isinstance(explanations, list) else []:
        text = item.get("description") if isinstance(item, dict) else None
        if isinstance(text, str) and text.strip():
            return text.strip()
    return None


def neuronpedia_explanations(source: SAESource | str | None, indices: Iterable[int], deadline: float = 8.0) -> dict[int, str]:
    """Explanations of several latents, fetched in parallel, all within ``deadline`` seconds; the
    latents without one (or not answered in time) are left out."""
    np_id = _neuronpedia_id(source)
    indices = list(indices)
    if not np_id or not indices:
        return {}
    pool = ThreadPoolExecutor(max_workers=8)
    futures = {i: pool.submit(neuronpedia_explanation, np_id, i) for i in indices}
    wait(futures.values(), timeout=deadline)
    pool.shutdown(wait=False, cancel_futures=True)
    return {i: f.result() for i, f in futures.items() if f.done() and not f.cancelled() and f.exception() is None and f.result()}
