"""Answer log-probabilities: what training, evaluation and the baselines score."""

import torch
from conftest import consistent_pairs, make_model

from yapo_core.encoding import collate, encode_pairs
from yapo_core.logprobs import answer_logprobs, pair_logprobs


def _straightforward(logits, batch):
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logp = logp.gather(-1, batch.input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token_logp * batch.answer_mask[:, 1:]).sum(-1)


def test_answer_logprobs_are_the_straightforward_sum_over_answer_tokens(tokenizer):
    model = make_model("llama")
    encoded, _ = encode_pairs(tokenizer, consistent_pairs(6), 512)
    batch = collate(encoded, tokenizer.pad_token_id)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert torch.equal(answer_logprobs(logits, batch), _straightforward(logits, batch))
    by_pair = pair_logprobs(model, tokenizer, encoded, batch_size=4)
    torch.testing.assert_close(by_pair, torch.stack([_straightforward(logits, batch)[:6],
                                                     _straightforward(logits, batch)[6:]], 1), rtol=1e-5, atol=1e-5)


def test_positions_that_predict_no_answer_token_are_never_read(tokenizer):
    """A padded row's logits can be NaN (a query that sees no key under SDPA); only the positions
    that predict answer tokens enter the sum, so the answers' log-probs stay what they are."""
    model = make_model("llama")
    encoded, _ = encode_pairs(tokenizer, consistent_pairs(4), 512)
    batch = collate(encoded, tokenizer.pad_token_id)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    expected = answer_logprobs(logits, batch)
    spoiled = logits.clone()
    spoiled[:, :-1][~batch.answer_mask[:, 1:].bool()] = float("nan")
    assert torch.equal(answer_logprobs(spoiled, batch), expected) and expected.isfinite().all()
