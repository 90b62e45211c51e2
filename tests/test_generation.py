"""Steered and unsteered generation in one batched call."""

import torch
from conftest import make_model, make_sae

from yapo_core import SteeringVector, generate
from yapo_core.generation import encode_for_generation


def test_one_batch_matches_separate_runs(tokenizer):
    model, sae = make_model("llama"), make_sae()
    vec = SteeringVector("sparse", torch.randn(128, generator=torch.Generator().manual_seed(0)) * 3,
                         "blocks.1.hook_resid_post", sae=sae)
    prompts = ["Do you like tea?", "Hi"]
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
