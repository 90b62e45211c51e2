"""The ZeroGPU decorator is a no-op without the `spaces` package and delegates with it."""

import sys
import types

from yapo_studio.zero_gpu import gpu


def test_noop_without_spaces(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # import fails

    def work(x):
        return x + 1

    assert gpu(work) is work
    assert gpu(duration=30)(work) is work


def test_delegates_to_spaces_gpu(monkeypatch):
    calls = []
    fake = types.ModuleType("spaces")

    def GPU(fn=None, duration=None):  # noqa: N802 - the real API's name
        if fn is None:
            calls.append(duration)
            return lambda f: (lambda *a: ("gpu", f(*a)))
        calls.append("plain")
        return lambda *a: ("gpu", fn(*a))

    fake.GPU = GPU
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert gpu(lambda x: x * 2)(3) == ("gpu", 6)
    assert gpu(duration=60)(lambda x: x)(1) == ("gpu", 1)
    assert calls == ["plain", 60]


def test_training_chunks_reserve_their_own_length_on_zero_gpu():
    from yapo_studio import runs as S_runs

    assert S_runs._chunk_duration(None, [], None, None, 45.0) == 45 + S_runs.CHUNK_MARGIN_SECONDS
    assert S_runs._chunk_duration(None, [], None, None, 120.0) == 120 + S_runs.CHUNK_MARGIN_SECONDS
