"""SAEs load through sae-lens and are checked against the model and layer."""

import pytest
import torch
from conftest import make_model, make_sae

from yapo_core.errors import SAELoadError
from yapo_core.saes import check_sae_fits, load_sae, neuronpedia_id, sae_source


def test_load_from_disk_records_its_source(sae_dir):
    sae = load_sae(path=sae_dir, device="cpu")
    assert sae.cfg.d_in == 32 and sae.cfg.d_sae == 128
    assert sae_source(sae).path == str(sae_dir)
    assert not any(p.requires_grad for p in sae.parameters())
    assert check_sae_fits(make_model("llama"), sae).resid_layer == 1


def test_width_mismatch_is_refused():
    with pytest.raises(SAELoadError, match="d_in=48 does not match the model's hidden size 32"):
        check_sae_fits(make_model("llama"), make_sae(d_in=48))


def test_layer_mismatch_is_refused():
    with pytest.raises(SAELoadError, match="output of block 1.*layer 2 was chosen"):
        check_sae_fits(make_model("llama"), make_sae(layer=1), layer=2)
    with pytest.raises(SAELoadError, match=r"reads 'blocks.9.hook_resid_post', but this model has 4 blocks .* another"):
        check_sae_fits(make_model("llama"), make_sae(layer=9))  # the SAE's block, not a chosen layer


def test_resid_pre_sae_reads_the_previous_block():
    point = check_sae_fits(make_model("gpt2"), make_sae(layer=2, position="pre"), layer=1)
    assert point.hook_name == "blocks.2.hook_resid_pre"


def test_neuronpedia_ids_come_from_the_offline_registry():
    assert neuronpedia_id("gpt2-small-res-jb", "blocks.8.hook_resid_pre") == "gpt2-small/8-res-jb"
    assert neuronpedia_id("no-such-release", "x") is None


def test_bad_sources_fail_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SAELoadError, match="no cfg.json"):
        load_sae(path=tmp_path)
    with pytest.raises(SAELoadError, match="is not in release 'gpt2-small-res-jb'"):
        load_sae("gpt2-small-res-jb", "blocks.99.hook_resid_pre")
    with pytest.raises(SAELoadError, match="not in the local Hugging Face cache|could not be loaded|not found"):
        load_sae("gpt2-small-res-jb", "blocks.8.hook_resid_pre", device="cpu")
    with pytest.raises(SAELoadError, match="give either path"):
        load_sae()
    with pytest.raises(SAELoadError, match="release 'gpt2-small-res-jbb' is not one of sae-lens's .* similar: "
                                           "gpt2-small-res-jb"):
        load_sae("gpt2-small-res-jbb", "blocks.8.hook_resid_pre")  # known to be wrong offline too


def test_an_sae_id_with_slashes_offline_is_named_as_not_in_the_cache(monkeypatch):
    """Gemma Scope's ids (``layer_15/width_65k/canonical``) hold slashes: release/id is no repository
    id, but the release's repository is, and offline it is simply not cached."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SAELoadError, match="not in the local Hugging Face cache and the Hub cannot be reached"):
        load_sae("gemma-scope-2b-pt-res-canonical", "layer_15/width_65k/canonical", device="cpu")


def test_place_sae_puts_the_sae_on_the_device_of_the_block_it_is_hooked_on(monkeypatch):
    """``blocks.L.hook_resid_pre`` is hooked on block L (for L = 0: not on block L-1 = the last one)."""
    import torch

    from yapo_core import hooks
    from yapo_core.architectures import decoder_layers
    from yapo_core.saes import place_sae

    model = make_model("llama")
    first = decoder_layers(model)[0]
    # As on a model split over GPUs: block 0 computes on one device, the others on another.
    monkeypatch.setattr(hooks, "module_device", lambda m: torch.device("meta" if m is first else "cpu"))
    pre = make_sae(layer=0, position="pre")
    assert place_sae(model, pre).hook_name == "blocks.0.hook_resid_pre" and pre.W_dec.device.type == "meta"
    post = make_sae(layer=1)
    assert place_sae(model, post).layer == 1 and post.W_dec.device.type == "cpu"


def test_the_sae_of_a_vector_is_the_one_named_or_the_one_it_was_trained_with(tmp_path):
    import torch

    from yapo_core.saes import load_sae, load_sae_for
    from yapo_core.steering import SteeringVector

    make_sae().save_model(tmp_path / "sae")
    trained_with = load_sae(path=tmp_path / "sae")
    sparse = SteeringVector("sparse", torch.ones(128), "blocks.1.hook_resid_post", sae=trained_with)
    assert load_sae_for(sparse).cfg.d_sae == 128  # from the vector's provenance
    assert load_sae_for(None, path=str(tmp_path / "sae")) is not None  # named explicitly
    assert load_sae_for(SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post")) is None
    orphan = SteeringVector("sparse", torch.ones(128), "blocks.1.hook_resid_post")
    with pytest.raises(SAELoadError, match="this sparse vector names no SAE; give --its-sae"):
        load_sae_for(orphan, how="give --its-sae")


def test_loading_a_model_and_an_sae_leaves_the_global_generator_alone(tmp_path, tokenizer):
    """A tab that loads a model or an SAE while another tab samples must not move that sample:
    sampled generation seeds torch's one global generator under a lock that loading does not
    take, so loading must not draw from it (both build their modules on the meta device)."""
    from yapo_core.models import load_model

    make_model("llama").save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    make_sae().save_model(tmp_path / "sae")
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    load_model(tmp_path / "model", device="cpu")
    load_sae(path=tmp_path / "sae", device="cpu")
    assert torch.equal(torch.rand(4), expected)


def test_a_missing_sae_folder_is_named_as_such(tmp_path):
    with pytest.raises(SAELoadError, match="does not exist"):
        load_sae(path=tmp_path / "nothere")


def test_an_sae_encoding_recorded_under_another_sae_lens_version_is_compared_on_the_fields_both_know():
    import json

    from yapo_core.saes import sae_encoding_fingerprint, same_encoding

    sae = make_sae()
    ours = json.loads(sae_encoding_fingerprint(sae))
    older = dict(ours, settings={k: v for k, v in ours["settings"].items() if k != "reshape_activations"})
    assert same_encoding(json.dumps(older), sae_encoding_fingerprint(sae))
    other_kind = dict(ours, settings={**ours["settings"], "architecture": "topk"})
    assert not same_encoding(json.dumps(other_kind), sae_encoding_fingerprint(sae))
    for unreadable in ('{"settings": [], "tensors": []}', '{"settings": {}, "tensors": []}', "5"):
        assert not same_encoding(unreadable, sae_encoding_fingerprint(sae))
