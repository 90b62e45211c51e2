"""CAA and SAS on cases whose answers are known in advance."""

import pytest
import torch
from conftest import consistent_pairs, make_model, make_sae, make_tokenizer

from yapo_core import load_vector, save_vector
from yapo_core.architectures import decoder_layers
from yapo_core.baselines import answer_activations, compute_caa, compute_sas, sas_direction
from yapo_core.data import PreferencePair
from yapo_core.encoding import encode_pairs
from yapo_core.hooks import block_output, record_residual


def test_caa_is_the_mean_difference_at_the_last_answer_token(tokenizer):
    model = make_model("llama")
    pairs = [PreferencePair("Q?", "yes", "no"), PreferencePair("R?", "sure", "nope")]
    vec = compute_caa(model, tokenizer, pairs, layer=2)
    expected = []
    for pair in pairs:
        rows = []
        for answer in (pair.chosen, pair.rejected):
            text = tokenizer.apply_chat_template([{"role": "user", "content": pair.prompt},
                                                  {"role": "assistant", "content": answer}], tokenize=False)
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            seen = {}
            h = decoder_layers(model)[2].register_forward_hook(lambda m, a, o: seen.setdefault("h", o))
            try:
                model(ids)
            finally:
                h.remove()
            rows.append(seen["h"][0, -2])  # the answer's last letter, before <|end|>
        expected.append(rows[0] - rows[1])
    torch.testing.assert_close(vec.values, torch.stack(expected).mean(0), rtol=1e-5, atol=1e-6)
    assert (vec.method, vec.kind, vec.layer, vec.default_multiplier) == ("caa", "dense", 2, 0.5)


THINKING_TEMPLATE = (  # an empty think block before the answer, as Qwen3's template writes for the last turn
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{% if m['role'] == 'assistant' %}<think></think>"
    "{% endif %}{{ m['content'] }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.mark.parametrize("template", [THINKING_TEMPLATE, None], ids=["think-block", "no-template"])
def test_caa_reads_the_answers_last_own_token_whatever_the_template_puts_around_it(template):
    """Neither a think block before the answer nor the plain template's leading space moves the
    position off the answer's last letter."""
    tok, model = make_tokenizer(template), make_model("llama")
    pairs = [PreferencePair("Q?", "yes", "e")]  # "e" is also in the end-of-turn token "<|end|>"
    chosen, rejected = answer_activations(model, tok, pairs, block_output(model, 2))
    for row, answer in ((chosen[0], "yes"), (rejected[0], "e")):
        (enc,), _ = encode_pairs(tok, [PreferencePair("Q?", answer, answer)])
        ids = torch.tensor([enc.prompt_ids + enc.chosen_ids])
        assert tok.decode(ids[0, len(enc.prompt_ids):]).strip().startswith(("<think></think>" if template else "") + answer)
        last = len(enc.prompt_ids) + len(enc.chosen_ids) - 2  # before <|end|>: the answer's last letter
        assert tok.convert_ids_to_tokens(int(ids[0, last])) == answer[-1]
        with record_residual(model, block_output(model, 2)) as seen:
            model(ids)
        torch.testing.assert_close(row, seen[-1][0, last].float(), rtol=1e-5, atol=1e-6)


def test_caa_of_identical_answers_is_zero(tokenizer):
    pairs = [PreferencePair("Q?", "same", "same")] * 3
    assert compute_caa(make_model("gpt2"), tokenizer, pairs, layer=1).values.abs().max() == 0


def test_sas_rule_keeps_side_specific_latents():
    # latent 0: on in every chosen example; 1: on everywhere (dropped); 2: on in 1/3 of rejected
    # (below tau); 3: on in every rejected example
    pos = torch.tensor([[1.0, 1.0, 0.0, 0.0], [3.0, 2.0, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0]])
    neg = torch.tensor([[0.0, 1.0, 5.0, 1.0], [0.0, 1.0, 0.0, 2.0], [0.0, 1.0, 0.0, 3.0]])
    values, kept_pos, kept_neg = sas_direction(pos, neg, tau=0.7)
    torch.testing.assert_close(values, torch.tensor([2.0, 0.0, 0.0, -2.0]))
    assert kept_pos.tolist() == [True, True, False, False] and kept_neg.tolist() == [False, True, False, True]


def test_sas_vector_applies_and_round_trips(tokenizer, tmp_path):
    model, sae = make_model("llama"), make_sae()
    vec = compute_sas(model, tokenizer, consistent_pairs(12), sae, tau=0.7)
    assert vec.kind == "sparse" and vec.method == "sas" and vec.width == 128
    torch.testing.assert_close(vec.values, independent_sas(model, tokenizer, consistent_pairs(12), sae, 0.7),
                               rtol=1e-5, atol=1e-6)
    loaded = load_vector(save_vector(vec, tmp_path / "sas.safetensors"), model=model, sae=sae)
    assert loaded.method == "sas" and torch.equal(loaded.values, vec.values)
    with loaded.apply(model, 0.5):
        model(torch.tensor([[5, 6, 7]]))


def independent_sas(model, tokenizer, pairs, sae, tau):
    """SAS written out from its definition, without the library: each completion's code is the mean
    SAE code of its own answer tokens (block 1's output, the chat template's turn around it); keep
    the latents positive in at least ``tau`` of one side's completions and not of the other's; the
    vector is the difference of the two sides' mean codes there."""
    block = model.model.layers[1]

    def code(prompt, answer):
        head = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             tokenize=False)
        head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        seen = []
        handle = block.register_forward_hook(lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out))
        try:
            with torch.no_grad():
                model(torch.tensor([head_ids + answer_ids]))
        finally:
            handle.remove()
        return sae.encode(seen[0][0, len(head_ids):]).mean(0)

    pos = torch.stack([code(p.prompt, p.chosen) for p in pairs])
    neg = torch.stack([code(p.prompt, p.rejected) for p in pairs])
    on_pos, on_neg = (pos > 0).float().mean(0) >= tau, (neg > 0).float().mean(0) >= tau
    keep = on_pos != on_neg
    return (pos.mean(0) - neg.mean(0)) * keep


def test_sas_keeps_a_latent_active_in_exactly_tau_of_a_sides_examples():
    """"At least a fraction τ": a latent on in 7 of 10 positive examples is kept at τ = 0.7, and at
    τ = 1 a latent on in every example is."""
    on_in_seven = torch.zeros(10, 2)
    on_in_seven[:7, 0] = 1.0
    assert sas_direction(on_in_seven, torch.zeros(10, 2), 0.7)[0].tolist() == pytest.approx([0.7, 0.0])
    always = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert sas_direction(always, torch.zeros(2, 2), 1.0)[0].tolist() == [1.5, 0.0]
