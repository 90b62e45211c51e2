"""Features: cases whose answers are known in advance (built into the weights), plus an oracle
check of the activations against a direct hidden-state computation."""

import io
import json
import time
import urllib.request

import pytest
import torch
from conftest import consistent_pairs, make_model, make_sae

from yapo_core import SteeringVector
from yapo_core import features as F
from yapo_core import neuronpedia as NP
from yapo_core.architectures import architecture_of
from yapo_core.errors import SettingsError
from yapo_core.saes import SAESource


def sparse_vector(values: dict[int, float], width: int = 128, layer: int = 1, sae=None) -> SteeringVector:
    v = torch.zeros(width)
    for i, x in values.items():
        v[i] = x
    return SteeringVector("sparse", v, f"blocks.{layer}.hook_resid_post", sae=sae)


def test_top_latents_orders_by_magnitude_and_keeps_signs():
    vec = sparse_vector({3: 0.5, 7: -2.0, 11: 1.0})
    top = F.top_latents(vec, k=2)
    assert [(w.index, w.value) for w in top] == [(7, -2.0), (11, 1.0)]
    assert len(F.top_latents(vec, k=10)) == 3  # zero entries are never listed
    assert F.top_latents(sparse_vector({}), k=5) == []
    with pytest.raises(SettingsError):
        F.top_latents(SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post"))


def model_with_loud_token(family: str, token: int):
    """A model whose unembedding row ``token`` is 10x longer than any other, and whose final norm
    has unit gain and (LayerNorm) a large bias against that token, which the lens must ignore:
    the lens of ``W_U[token]`` is known."""
    model = make_model(family)
    arch = architecture_of(model)
    head = model.get_submodule(arch.lm_head).weight
    norm = model.get_submodule(arch.final_norm)
    with torch.no_grad():
        head.normal_(0, 1)
        head /= head.norm(dim=1, keepdim=True)
        head[token] *= 10
        norm.weight.fill_(0.0 if family == "gemma2" else 1.0)  # Gemma's RMSNorm scales by (1 + w)
        if getattr(norm, "bias", None) is not None:
            norm.bias.copy_(-head[token] * 50)
    return model, head.detach().clone()


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2"])
def test_logit_lens_of_an_unembedding_row_puts_its_token_first(tokenizer, family):
    token = 40
    model, head = model_with_loud_token(family, token)
    direction = head[token] - head[token].mean()  # centred, so GPT-2's LayerNorm keeps it intact
    lens = F.logit_lens(model, tokenizer, direction, k=5)
    assert lens.top[0].token_id == token
    assert lens.top[0].token == tokenizer.decode([token])
    assert F.logit_lens(model, tokenizer, -direction, k=5).bottom[0].token_id == token
    assert [t.score for t in lens.top] == sorted((t.score for t in lens.top), reverse=True)


def test_logit_lens_is_scale_invariant_and_rejects_zero(tokenizer):
    model, head = model_with_loud_token("llama", 12)
    small = F.logit_lens(model, tokenizer, head[12] * 1e-3, k=3)
    large = F.logit_lens(model, tokenizer, head[12] * 1e3, k=3)
    assert [t.token_id for t in small.top] == [t.token_id for t in large.top]
    assert small.top[0].score == pytest.approx(large.top[0].score, rel=1e-4)
    with pytest.raises(SettingsError):
        F.logit_lens(model, tokenizer, torch.zeros(32))


def test_a_latents_decoder_row_is_its_own_nearest_latent():
    sae = make_sae()
    rows = sae.W_dec.detach()
    near = F.nearest_latents(rows[5], sae, k=3)
    assert near[0].index == 5 and near[0].cosine == pytest.approx(1.0, abs=1e-5)
    opposite = F.nearest_latents(-rows[7], sae, k=1)[0]
    assert opposite.index == 7 and opposite.cosine == pytest.approx(-1.0, abs=1e-5)
    assert F.nearest_latents(torch.zeros(32), sae) == []
    with pytest.raises(SettingsError):
        F.nearest_latents(torch.ones(5), sae)


def sae_with_constant_latents(on: int, off: int):
    """Latent ``on`` reads nothing and has bias 1 (ReLU: exactly 1 at every token); latent
    ``off`` has bias −1 (exactly 0 everywhere)."""
    sae = make_sae()
    with torch.no_grad():
        sae.W_enc[:, on] = 0
        sae.W_enc[:, off] = 0
        sae.b_enc[on] = 1.0
        sae.b_enc[off] = -1.0
    return sae


def test_latent_activity_known_density_and_values(tokenizer):
    model, sae = make_model("llama"), sae_with_constant_latents(on=3, off=4)
    texts = F.dialogue_texts(tokenizer, consistent_pairs(4))
    activity = F.latent_activity(model, tokenizer, sae, texts, [3, 4], top_n=2, window=5)
    bos_free = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    n_tokens = sum(len(ids) - ids.count(tokenizer.bos_token_id) for ids in bos_free)
    always, never = activity[3], activity[4]
    assert always.n_tokens == n_tokens
    assert always.density == 1.0 and always.max_value == pytest.approx(1.0) and always.mean_active == pytest.approx(1.0)
    # a constant latent peaks at every text's first token, where the texts read alike: distinct snippets only
    assert 1 <= len(always.examples) <= 2 and all(len(e.tokens) == len(e.values) <= 11 for e in always.examples)
    assert len({tuple(e.tokens) for e in always.examples}) == len(always.examples)
    assert sum(always.histogram_counts) == n_tokens
    # one value everywhere: one bar at it, not a range padded below zero around it
    assert always.histogram_counts == [n_tokens] and always.histogram_edges == pytest.approx([1.0, 1.0])
    assert never.density == 0.0 and never.examples == [] and never.histogram_counts == []


def test_a_latents_examples_that_read_alike_around_the_peak_are_shown_once(tokenizer):
    """Texts that differ only outside the window (the same answer to two questions) would show one
    snippet twice; the next distinct one is shown instead."""
    model, sae = make_model("llama"), sae_with_constant_latents(on=3, off=4)
    texts = ["Question one? Tea.", "Question two? Tea.", "Another one entirely, with coffee."]
    activity = F.latent_activity(model, tokenizer, sae, texts, [3], top_n=3, window=1)
    snippets = [tuple(e.tokens) for e in activity[3].examples]
    assert len(snippets) == len(set(snippets)) >= 2


def test_latent_activity_matches_a_direct_computation(tokenizer):
    model, sae = make_model("llama"), make_sae()
    pairs = consistent_pairs(3, seed=4)
    texts = F.dialogue_texts(tokenizer, pairs, with_answer=False)
    latents = list(range(0, 128, 9))
    activity = F.latent_activity(model, tokenizer, sae, texts, latents, top_n=3, window=1000, batch_size=2)
    codes = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
            h = model(input_ids=ids, output_hidden_states=True).hidden_states[2][0]  # output of block 1
            keep = ids[0] != tokenizer.bos_token_id
            codes.append(sae.encode(h[keep])[:, latents])
    everything = torch.cat(codes)
    for col, index in enumerate(latents):
        got = activity[index]
        assert got.density == pytest.approx(float((everything[:, col] > 0).float().mean()))
        assert got.max_value == pytest.approx(float(everything[:, col].max()), abs=1e-5)
        if got.examples:
            best = got.examples[0]
            torch.testing.assert_close(torch.tensor(best.values), codes[best.text_index][:, col], atol=1e-5, rtol=1e-4)


def test_neuronpedia_urls():
    source = SAESource(release="gemma-scope-2b-pt-res-canonical", sae_id="layer_15/width_65k/canonical",
                       neuronpedia_id="gemma-2-2b/15-gemmascope-res-65k")
    assert NP.neuronpedia_url(source, 42) == "https://www.neuronpedia.org/gemma-2-2b/15-gemmascope-res-65k/42"
    assert NP.neuronpedia_url("gpt2-small/8-res-jb", 7) == "https://www.neuronpedia.org/gpt2-small/8-res-jb/7"
    assert NP.neuronpedia_url(SAESource(path="/some/folder"), 1) is None


def test_neuronpedia_explanation_parses_the_api_and_fails_quietly(monkeypatch):
    body = json.dumps({"explanations": [{"description": " mentions of tea "}]}).encode()
    seen = {}

    def fake_open(request, timeout):
        seen["url"], seen["timeout"] = request.full_url, timeout
        return io.BytesIO(body)

    monkeypatch.setattr(urllib.request, "urlopen", fake_open)
    assert NP.neuronpedia_explanation("gpt2-small/8-res-jb", 7, timeout=1.5) == "mentions of tea"
    assert seen == {"url": "https://www.neuronpedia.org/api/feature/gpt2-small/8-res-jb/7", "timeout": 1.5}
    for odd in ([], ["x"], {"explanations": "x"}, {"explanations": ["tea", None, {"description": 3}]}, None):
        body = json.dumps(odd).encode()  # an answer of another shape is no explanation, not an error
        assert NP.neuronpedia_explanation("gpt2-small/8-res-jb", 7) is None, odd

    def offline(request, timeout):
        raise OSError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    start = time.perf_counter()
    assert NP.neuronpedia_explanation("gpt2-small/8-res-jb", 7) is None
    assert time.perf_counter() - start < 1.0
    assert NP.neuronpedia_explanation(None, 7) is None


def test_vector_card_reports_what_a_dense_export_drops(tokenizer):
    model, sae = make_model("llama"), make_sae()
    vec = sparse_vector({2: 2.0, 9: -1.0}, sae=sae)
    card = F.vector_card(vec, model, tokenizer, sae, k=4)
    assert (card.l0, card.width, card.kind) == (2, 128, "sparse")
    assert card.dropped_at_plus == pytest.approx(1 / 3)
    assert card.dropped_at_minus == pytest.approx(2 / 3)
    expected = 2.0 * sae.W_dec[2] - sae.W_dec[9]
    assert card.direction_norm == pytest.approx(float(expected.norm()), rel=1e-5)
    assert len(card.logit_lens.top) == 4 and card.nearest == []


def test_feature_report_for_sparse_and_dense_vectors(tokenizer):
    model, sae = make_model("llama"), make_sae()
    texts = F.dialogue_texts(tokenizer, consistent_pairs(3))
    sparse = sparse_vector({5: 1.5, 6: -0.5, 70: 0.2}, sae=sae)
    report = F.feature_report(sparse, model, tokenizer, sae, texts, k=2, lens_k=3)
    assert [(c.index, c.weight, c.weight_kind) for c in report.latents] == [(5, 1.5, "value"), (6, -0.5, "value")]
    assert all(len(c.logit_lens.top) == 3 and c.activity is not None for c in report.latents)
    assert report.latents[0].neuronpedia_url is None  # an in-memory SAE has no Neuronpedia id
    # the card of latent 5 is the lens of its decoder row
    assert report.latents[0].logit_lens == F.logit_lens(model, tokenizer, sae.W_dec[5], 3)

    dense = SteeringVector("dense", sae.W_dec[17].clone(), "blocks.1.hook_resid_post")
    report = F.feature_report(dense, model, tokenizer, sae, texts, k=3)
    assert report.latents[0].index == 17 and report.latents[0].weight_kind == "cosine"
    assert report.vector.nearest[0].index == 17 and report.vector.dropped_at_plus is None
    # as many latents as asked for, beyond the logit lens's 8 tokens
    assert len(F.feature_report(dense, model, tokenizer, sae, texts[:1], k=12).latents) == 12


def test_explanations_of_several_latents_come_back_by_index_within_the_deadline(monkeypatch):
    def fake(source, index, timeout=4.0):
        if index == 3:
            time.sleep(5)  # never answers in time
        return None if index == 2 else f"latent {index}"

    monkeypatch.setattr(NP, "neuronpedia_explanation", fake)
    start = time.perf_counter()
    assert NP.neuronpedia_explanations("gpt2-small/8-res-jb", [1, 2, 3], deadline=0.5) == {1: "latent 1"}
    assert time.perf_counter() - start < 2.0
    assert NP.neuronpedia_explanations(SAESource(path="/local"), [1]) == {}
    # more latents than workers: those still queued at the deadline are cancelled, not an error
    monkeypatch.setattr(NP, "neuronpedia_explanation", lambda source, index, timeout=4.0: time.sleep(0.3) or f"latent {index}")
    start = time.perf_counter()
    found = NP.neuronpedia_explanations("gpt2-small/8-res-jb", range(20), deadline=0.1)
    assert found == {} and time.perf_counter() - start < 1.0  # none answers within it; none is waited for


def test_dialogue_texts_reads_each_text_once(tokenizer):
    """Pairs that differ only in their rejected answer (one per wrong option) are one text, or a
    latent's top examples would be copies of one."""
    from yapo_core.data import PreferencePair

    pairs = [PreferencePair("Which dish?", "H", wrong) for wrong in "ABC"] + [PreferencePair("Which sport?", "H", "A")]
    texts = F.dialogue_texts(tokenizer, pairs)
    assert len(texts) == 2 and "dish" in texts[0] and "sport" in texts[1]


def test_a_texts_activations_do_not_depend_on_the_batch_it_is_read_in():
    """A left-padding tokenizer (the demo's, many chat models') must not shift a short text's
    positions when a longer one shares its batch: a learned-position model would read it shifted."""
    from conftest import make_tokenizer

    tok = make_tokenizer()
    tok.padding_side = "left"
    model, sae = make_model("gpt2"), make_sae()
    short, long = "Tea?", "A much longer question about coffee?"
    [(ids_alone, alone)] = F.sae_codes(model, tok, sae, [short], range(16))
    (ids_batched, batched), _ = F.sae_codes(model, tok, sae, [short, long], range(16))
    assert ids_alone == ids_batched and tok.padding_side == "left"
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)
    [(ids, _)] = F.sae_codes(model, tok, sae, ["x" * 2000], range(4))  # past the 512 positions: cut, not an index error
    assert len(ids) <= 512


def test_mean_active_is_the_mean_where_the_latent_fires(tokenizer):
    model, sae = make_model("llama"), make_sae()
    texts = F.dialogue_texts(tokenizer, consistent_pairs(3, seed=4), with_answer=False)
    latents = list(range(0, 128, 9))
    everything = torch.cat([v for _, v in F.sae_codes(model, tokenizer, sae, texts, latents)])
    activity = F.latent_activity(model, tokenizer, sae, texts, latents)
    partial = [c for c in range(len(latents)) if 0 < int((everything[:, c] > 0).sum()) < len(everything)]
    assert partial  # latents that fire on some tokens only
    for c in partial:
        fired = everything[:, c][everything[:, c] > 0]
        assert activity[latents[c]].mean_active == pytest.approx(float(fired.mean()))


def test_an_example_shows_window_tokens_after_its_peak(tokenizer):
    model, sae = make_model("llama"), sae_with_constant_latents(on=3, off=4)
    text = "A text long enough to have many tokens after its first one."
    example = F.latent_activity(model, tokenizer, sae, [text], [3], window=2)[3].examples[0]
    assert len(example.tokens) == min(example.peak, 2) + 1 + 2  # up to 2 before the peak, the peak, 2 after


def test_the_tokens_a_direction_suppresses_have_negative_scores(tokenizer):
    model, head = model_with_loud_token("llama", 40)
    lens = F.logit_lens(model, tokenizer, -head[40], k=5)
    assert lens.bottom[0].token_id == 40 and lens.bottom[0].score < 0
    assert [t.score for t in lens.bottom] == sorted(t.score for t in lens.bottom)  # most lowered first
