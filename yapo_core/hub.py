"""Reaching the Hugging Face Hub (and other hosts): fail within seconds, with a message that says
what to do, instead of letting ``transformers``, ``sae-lens`` or ``datasets`` retry for minutes.

Online, an unreachable Hub makes those libraries retry, also for files already in the cache;
:func:`require_hub` checks reachability first (a TCP connection) and, where the files are
cached, advises offline mode. :func:`explain_hub_error` turns a failed download into advice
(gated, offline, misspelt).
"""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants

from .errors import YapoError

_TRUE = ("1", "true", "yes")


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` is set: the Hub libraries read only their cache."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in _TRUE


def datasets_offline() -> bool:
    """``HF_DATASETS_OFFLINE`` is set: ``datasets`` reads only its cache."""
    return os.environ.get("HF_DATASETS_OFFLINE", "0").lower() in _TRUE


def is_repo_id(source: str) -> bool:
    """Whether ``source`` is written as a Hugging Face repository id (``gpt2``, ``owner/name``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(str(source))
    except HFValidationError:
        return False
    return True


def explain_hub_error(what: str, source: str, exc: BaseException, repo_id: str | None = None) -> str:
    """A message that says why a hub download failed and what the user can do about it.
    ``repo_id`` is the repository ``source`` lives in when ``source`` names more than a repository
    (an SAE release and its id, ``layer_15/width_65k/canonical``)."""
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    repo = repo_id or source
    if not is_repo_id(repo):  # no download could find it, online or not
        return (f"{what} {source!r} is neither an existing local folder nor a Hugging Face id (owner/name, of "
                "letters, digits, '-', '_' and '.'): check the spelling or the path.")
    if "gated" in low or "401" in low or "403" in low or "restricted" in low:
        return (
            f"{what} {source!r} is gated or needs a login: accept its licence on "
            f"https://huggingface.co/{repo} and set HF_TOKEN (or run `hf auth login`)."
        )
    switch = "HF_HUB_OFFLINE" if is_offline() else "HF_DATASETS_OFFLINE" if what == "dataset" and datasets_offline() else ""
    if switch or "offline" in low or "connection" in low or "resolve" in low:
        return (
            f"{what} {source!r} is not in the local Hugging Face cache and the Hub cannot be "
            f"reached ({f'{switch} is set' if switch else 'no network?'}). Download it once while "
            "online, or pass a local folder."
        )
    if "not found" in low or "404" in low or "repository" in low or "is not a valid" in low:
        return (
            f"{what} {source!r} was not found: check the spelling of the Hugging Face id, or pass "
            "an existing local folder."
        )
    return f"{what} {source!r} could not be loaded: {text}"


def host_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of ``url`` accepts a TCP connection within ``timeout`` seconds."""
    parsed = urlparse(url if "://" in url else f"https://{url}")
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        return True
    except (OSError, TypeError):
        return False


def hub_endpoint() -> str:
    return constants.ENDPOINT


def hub_cached(repo_id: str, repo_type: str = "model") -> bool:
    """Whether the Hugging Face cache holds anything of ``repo_id`` (a download was started)."""
    folder = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    return folder.is_dir()


def require_hub(what: str, repo_id: str, error: type[YapoError], repo_type: str = "model") -> None:
    """Fail within seconds when the Hub is needed but cannot be reached.

    In offline mode the libraries fail fast themselves. Online, an unreachable Hub makes them
    retry for minutes, also for files already in the cache, hence the advice to go offline.
    """
    if is_offline() or (repo_type == "dataset" and datasets_offline()) or not is_repo_id(repo_id):
        return  # offline the libraries fail fast; a name that is no repo id is explained by explain_hub_error
    if any(urllib.request.getproxies().get(scheme) for scheme in ("https", "all")):
        return  # the Hub is reached through a proxy, which a direct connection does not test
    endpoint = hub_endpoint()
    if host_reachable(endpoint):
        return
    cached = hub_cached(repo_id, repo_type)
    raise error(
        f"{what} {repo_id!r} needs the Hugging Face Hub, and {endpoint} cannot be reached (no network?). "
        + ("It is in the local cache: set HF_HUB_OFFLINE=1 (and HF_DATASETS_OFFLINE=1) to use the cached copy."
           if cached else "Download it once while online, or give a local folder.")
    )
