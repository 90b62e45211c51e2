"""Reaching the Hugging Face Hub: every core loader fails within seconds, with advice, where it cannot."""

import time

import pytest

from yapo_core import hub, load_model, load_pairs, load_sae
from yapo_core.errors import DataError, ModelLoadError, SAELoadError


def test_the_core_loaders_fail_within_seconds_where_the_hub_cannot_be_reached(monkeypatch):
    """Not only the app: load_model, load_sae and load_pairs, as a script calls them."""
    monkeypatch.setattr(hub, "is_offline", lambda: False)
    monkeypatch.setattr(hub, "datasets_offline", lambda: False)
    monkeypatch.setattr(hub, "host_reachable", lambda url, timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="'google/gemma-2-2b-it' needs the Hugging Face Hub, and .* cannot be"):
        load_model("google/gemma-2-2b-it")
    with pytest.raises(SAELoadError, match="needs the Hugging Face Hub"):
        load_sae("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical")
    with pytest.raises(DataError, match="'MBZUAI-Paris/Deep-Culture-Lense' needs the Hugging Face Hub"):
        load_pairs("MBZUAI-Paris/Deep-Culture-Lense", country=["egypt"])
    assert time.perf_counter() - start < 15


def test_no_connection_check_behind_a_proxy_or_for_a_name_that_is_no_repo_id(monkeypatch):
    monkeypatch.setattr(hub, "is_offline", lambda: False)
    monkeypatch.setattr(hub, "host_reachable", lambda url, timeout=3.0: False)
    hub.require_hub("model", "my model", ModelLoadError)  # explained by explain_hub_error, not as unreachable
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    hub.require_hub("model", "google/gemma-2-2b-it", ModelLoadError)  # the proxy reaches it, not a direct socket
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("https_proxy", raising=False)
    with pytest.raises(ModelLoadError, match="cannot be reached"):
        hub.require_hub("model", "google/gemma-2-2b-it", ModelLoadError)


def test_offline_advice_names_the_switch_that_is_set(monkeypatch):
    monkeypatch.setattr(hub, "is_offline", lambda: False)
    monkeypatch.setattr(hub, "datasets_offline", lambda: True)
    message = hub.explain_hub_error("dataset", "owner/data", OSError("Couldn't reach it (offline mode)"))
    assert "(HF_DATASETS_OFFLINE is set)" in message
