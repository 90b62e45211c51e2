"""Steered and unsteered generation in one batched call."""

import pytest
import torch
from conftest import make_model, make_sae

from yapo_core import SteeringVector, generate
from yapo_core.generation import encode_for_generation


@pytest.mark.parametrize("prompts", [["Do you like tea?", "Hi"], ["Hi", "Do you like tea?"]])
def test_one_batch_matches_separate_runs(tokenizer, prompts):
    """Each reply starts after its own prompt, the longest first or not (the batch is padded left)."""
    model, sae = make_model("llama"), make_sae()
    vec = SteeringVector("sparse", torch.randn(128, generator=torch.Generator().manual_seed(0)) * 3,
                         "blocks.1.hook_resid_post", sae=sae)
    out = generate(model, tokenizer, prompts, vec, multipliers=[0.0, 2.0], max_new_tokens=6)
    assert [sorted(o) for o in out] == [[0.0, 2.0], [0.0, 2.0]]
    for prompt, answers in zip(prompts, out):
        enc = encode_for_generation(tokenizer, [prompt])
        plain = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=0)
        assert answers[0.0] == tokenizer.decode(plain[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        with vec.apply(model, 2.0):
            steered = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=0)
        assert answers[2.0] == tokenizer.decode(steered[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert any(o[0.0] != o[2.0] for o in out)


def test_left_padding_and_single_bos(tokenizer):
    enc = encode_for_generation(tokenizer, ["a", "a much longer prompt"])
    assert enc["input_ids"][0, 0] == tokenizer.pad_token_id
    assert (enc["input_ids"] == tokenizer.bos_token_id).sum(1).tolist() == [1, 1]


def test_sampling_is_reproducible_with_a_seed(tokenizer):
    model = make_model("gpt2")
    a = generate(model, tokenizer, "Hi", do_sample=True, seed=3, max_new_tokens=8)
    b = generate(model, tokenizer, "Hi", do_sample=True, seed=3, max_new_tokens=8)
    assert a == b


def test_sampling_is_reproducible_beside_another_session_sampling(tokenizer):
    """Two sessions of the app sample at once: each seeds torch's one global generator, so
    unguarded, one's draws would come from the other's seed."""
    import threading

    model = make_model("gpt2")
    quiet = [generate(model, tokenizer, ["Hi", "Hello there"], do_sample=True, seed=3, max_new_tokens=24)]
    stop = threading.Event()

    def other_session():
        while not stop.is_set():
            generate(model, tokenizer, "Yo", do_sample=True, seed=7, max_new_tokens=4)

    other = threading.Thread(target=other_session, daemon=True)
    other.start()
    try:
        busy = [generate(model, tokenizer, ["Hi", "Hello there"], do_sample=True, seed=3, max_new_tokens=24)
                for _ in range(5)]
    finally:
        stop.set()
        other.join()
    assert busy == quiet * 5


def test_prompt_only_steering_equals_steering_the_prompt_positions_without_a_cache(tokenizer):
    """Oracle: a greedy loop without a KV cache that steers positions < prompt length only."""
    import pytest

    from yapo_core.errors import SettingsError
    from yapo_core.hooks import steering_hook
    from yapo_core.steering import steer_hidden

    model, sae = make_model("llama"), make_sae()
    vec = SteeringVector("sparse", torch.randn(128, generator=torch.Generator().manual_seed(1)) * 4,
                         "blocks.1.hook_resid_post", sae=sae)
    prompt, n = "Do you like tea?", 6
    ((answers),) = generate(model, tokenizer, [prompt], vec, [2.0], max_new_tokens=n, steer_positions="prompt")
    ((every),) = generate(model, tokenizer, [prompt], vec, [2.0], max_new_tokens=n)

    enc = encode_for_generation(tokenizer, [prompt])
    ids, p = enc["input_ids"], enc["input_ids"].shape[1]

    def prompt_part(h):
        return torch.cat([steer_hidden(h[:, :p], "sparse", vec.values, 2.0, sae), h[:, p:]], dim=1)

    with torch.no_grad(), steering_hook(model, vec.check_fits(model, sae), prompt_part):
        for _ in range(n):
            nxt = model(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
            if nxt.item() == tokenizer.eos_token_id:
                break
    expected = tokenizer.decode(ids[0, p:], skip_special_tokens=True).strip()
    assert answers[2.0] == expected
    assert answers[2.0][:1] == every[2.0][:1] and answers[2.0] != every[2.0]  # same prefill, then they part
    with pytest.raises(SettingsError, match="steer_positions='answer' is unknown"):
        generate(model, tokenizer, [prompt], vec, [1.0], steer_positions="answer")


def test_a_stream_shows_its_tokens_even_when_all_arrive_before_it_is_read(monkeypatch, tokenizer):
    """On a busy machine the worker can finish before the page reads the first update: the tokens
    are still shown once before the final result, not skipped."""
    import threading

    import yapo_core.generation as G

    class LateReader(G.BatchStreamer):
        def __init__(self, n_rows):
            super().__init__(n_rows)
            finished, read = threading.Event(), self.updates.get
            self.finished = finished
            self.updates.get = lambda *a, **k: finished.wait(5) and read(*a, **k)

        def end(self):
            super().end()
            self.finished.set()

    def fake_generate(model, tok, prompts, vector, multipliers, streamer=None, **settings):
        streamer.put(torch.tensor([[0]]))  # generate hands over the prompt first
        for char in "hi":
            streamer.put(torch.tensor([tok.convert_tokens_to_ids(char)]))
        return [{0.0: "hi"}]

    monkeypatch.setattr(G, "BatchStreamer", LateReader)
    monkeypatch.setattr(G, "generate", fake_generate)
    parts = list(G.stream_generate(None, tokenizer, "Hello?"))
    assert parts == [[{0.0: "hi"}], [{0.0: "hi"}]]
