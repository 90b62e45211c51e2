"""Vector files: bit-exact round trip, self-describing metadata, refusals, GGUF export."""

import os
import pickle
from pathlib import Path

import pytest
import torch
from conftest import make_model, make_sae
from safetensors.torch import save_file

from yapo_core import SteeringVector, load_vector, save_vector
from yapo_core.errors import SettingsError, VectorFileError
from yapo_core.export import export_gguf, open_safetensors
from yapo_core.models import load_model
from yapo_core.saes import SAESource, load_sae


def _sparse(sae, model_id="tiny-llama"):
    values = torch.randn(128, generator=torch.Generator().manual_seed(0))
    values[values.abs() < 1] = 0
    return SteeringVector("sparse", values, "blocks.1.hook_resid_post", model_id=model_id, sae=sae,
                          default_multiplier=1.5, metadata={"training": '{"lr": 0.0005}'})


def test_round_trip_is_bit_exact_with_metadata(tmp_path, sae_dir):
    sae, model = load_sae(path=sae_dir, device="cpu"), make_model("llama")
    vec = _sparse(sae)
    path = save_vector(vec, tmp_path / "v.safetensors")
    _, meta = open_safetensors(path)
    assert meta["method"] == "yapo" and meta["layer"] == "1" and meta["hook_name"] == "blocks.1.hook_resid_post"
    assert meta["sae_path"] == str(sae_dir) and meta["d_sae"] == "128" and meta["model_id"] == "tiny-llama"
    assert meta["default_multiplier"] == "1.5" and meta["training"] == '{"lr": 0.0005}' and meta["library_version"]
    loaded = load_vector(path, model=model, sae=sae)
    assert torch.equal(loaded.values, vec.values)
    assert (loaded.kind, loaded.hook_name, loaded.default_multiplier, loaded.sae_source) == (
        "sparse", "blocks.1.hook_resid_post", 1.5, vec.sae_source)
    with loaded.apply(model, 1.0):  # the SAE given at load time travels with the vector
        model(torch.tensor([[5, 6, 7]]))
    # a dense vector saved beside an SAE is not described in the SAE's terms
    _, meta = open_safetensors(save_vector(SteeringVector("dense", torch.ones(32), vec.hook_name), tmp_path / "d.safetensors", sae))
    assert meta["kind"] == "dense" and not {"d_sae", "sae_fingerprint", "sae_latents", "sae_encoding"} & set(meta)


def test_vector_for_another_model_layer_or_sae_is_refused(tmp_path, sae_dir):
    sae, model = load_sae(path=sae_dir, device="cpu"), make_model("llama")
    path = save_vector(_sparse(sae), tmp_path / "v.safetensors")
    with pytest.raises(VectorFileError, match="trained on model 'tiny-llama' but is being applied to 'tiny-gpt2'"):
        load_vector(path, model=make_model("gpt2"), sae=sae)
    assert load_vector(path, model=make_model("gpt2"), sae=sae, allow_other_model=True).width == 128
    with pytest.raises(VectorFileError, match="the SAE has 64 latents"):
        load_vector(path, model=model, sae=make_sae(d_sae=64))
    with pytest.raises(VectorFileError, match="reads 'blocks.2.hook_resid_post'"):
        load_vector(path, model=model, sae=make_sae(layer=2))
    deep = SteeringVector("dense", torch.ones(32), "blocks.3.hook_resid_post", model_id="tiny-llama")
    shallow = make_model("llama")
    shallow.model.layers = shallow.model.layers[:2]
    with pytest.raises(VectorFileError, match="steers layer 3 but this model has only 2 blocks"):
        load_vector(save_vector(deep, tmp_path / "d.safetensors"), model=shallow)
    other = _sparse(sae)
    other.sae_source = SAESource(release="gpt2-small-res-jb", sae_id="blocks.1.hook_resid_pre")
    hub_sae = make_sae()
    from yapo_core.saes import set_sae_source
    set_sae_source(hub_sae, SAESource(release="gemma-scope-2b-pt-res-canonical", sae_id="layer_1/width_16k/canonical"))
    with pytest.raises(VectorFileError, match="trained with SAE gpt2-small-res-jb"):
        load_vector(save_vector(other, tmp_path / "o.safetensors"), model=model, sae=hub_sae)


def test_pickles_and_foreign_files_are_never_opened(tmp_path):
    pt = tmp_path / "v.pt"
    torch.save({"vector": torch.ones(3)}, pt)
    with pytest.raises(VectorFileError, match="pickle"):
        load_vector(pt)
    raw = tmp_path / "v.bin"
    raw.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(VectorFileError, match="pickle"):
        load_vector(raw)
    from safetensors.torch import save_file
    save_file({"weights": torch.ones(2)}, tmp_path / "other.safetensors")
    with pytest.raises(VectorFileError, match="not a YaPO Studio steering vector"):
        load_vector(tmp_path / "other.safetensors")
    with pytest.raises(VectorFileError, match="does not exist"):
        load_vector(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("length", [0x580, 0x4B50])  # the first byte a pickle's (0x80); the first two a zip's ("PK")
def test_a_safetensors_file_whose_header_length_looks_like_a_pickle_or_a_zip_is_read(tmp_path, length):
    vector = SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post", method="bipo")
    path = tmp_path / "v.safetensors"
    save_vector(vector, path)
    start = length - int.from_bytes(path.read_bytes()[:8], "little") - 16
    for pad in range(start, start + 32):  # metadata of the length that gives the header that length
        vector.metadata["note"] = "x" * pad
        save_vector(vector, path)
        if int.from_bytes(path.read_bytes()[:8], "little") >= length:
            break
    assert int.from_bytes(path.read_bytes()[:8], "little") == length
    assert torch.equal(load_vector(path).values, vector.values)
    cut = tmp_path / "cut.safetensors"  # cut short in the header: a broken copy, not a pickle
    cut.write_bytes(path.read_bytes()[:length // 2])
    with pytest.raises(VectorFileError, match=f"truncated safetensors file: its header alone should take {length} bytes"):
        load_vector(cut)


def test_gguf_control_vector(tmp_path):
    import gguf

    sae, model = make_sae(), make_model("llama")
    vec = _sparse(sae)
    info = export_gguf(vec, tmp_path / "v.gguf", model=model, sae=sae, multiplier=1.0)
    assert 0 < info["dropped_fraction"] < 1  # the vector has negative entries
    with pytest.raises(VectorFileError, match="is a GGUF file .* Load the .safetensors vector it was exported from"):
        load_vector(tmp_path / "v.gguf")
    with pytest.raises(SettingsError, match="multiplier 0 is all zeros"):
        export_gguf(vec, tmp_path / "zero.gguf", model=model, sae=sae, multiplier=0.0)
    assert not (tmp_path / "zero.gguf").exists()
    reader = gguf.GGUFReader(tmp_path / "v.gguf")
    tensors = {t.name: t for t in reader.tensors}
    assert list(tensors) == ["direction.1"]
    expected = torch.relu(vec.values) @ sae.W_dec
    torch.testing.assert_close(torch.tensor(tensors["direction.1"].data.copy()), expected)
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "controlvector"
    assert int(fields["controlvector.layer_count"].parts[-1][0]) == 4
    assert bytes(fields["controlvector.model_hint"].parts[-1]).decode() == "llama"
    assert bytes(fields["controlvector.method"].parts[-1]).decode() == "yapo"
    export_gguf(SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post"), tmp_path / "q.gguf",
                model=make_model("qwen3"))
    hint = gguf.GGUFReader(tmp_path / "q.gguf").fields["controlvector.model_hint"]
    assert bytes(hint.parts[-1]).decode() == "qwen3"  # the model's type, as repeng reads it; not the table's row
    positive = SteeringVector("sparse", vec.values.clamp(min=0), vec.hook_name, sae=sae)
    assert export_gguf(positive, tmp_path / "p.gguf", model=model, sae=sae)["dropped_fraction"] == 0.0
    with pytest.raises(VectorFileError, match="block 0"):
        export_gguf(SteeringVector("dense", torch.ones(32), "blocks.0.hook_resid_post"), tmp_path / "z.gguf")
    for name in ("copy.safetensors", "v.txt", "v"):  # GGUF bytes under another name: no tool could read them
        with pytest.raises(VectorFileError, match="is a GGUF file; name it with .gguf"):
            export_gguf(positive, tmp_path / name, model=model, sae=sae)
        assert not (tmp_path / name).exists()


def test_an_interrupted_gguf_export_leaves_the_earlier_file_whole(tmp_path, monkeypatch):
    import gguf

    path, vec = tmp_path / "v.gguf", SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post")
    export_gguf(vec, path, model=make_model("llama"))
    before = path.read_bytes()

    def full_disk(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export_gguf(SteeringVector("dense", 2 * torch.ones(32), "blocks.1.hook_resid_post"), path, model=make_model("llama"))
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["v.gguf"]


def test_a_gguf_export_without_the_model_names_what_the_vector_file_recorded(tmp_path):
    """The file's layer count and model hint come from the model, or from the vector file's record
    of it: the two exports are the same file."""
    import gguf

    from yapo_core.saes import provenance

    model = make_model("qwen3")
    saved = save_vector(SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post", metadata=provenance(model)),
                        tmp_path / "v.safetensors")
    umask = os.umask(0)
    os.umask(umask)
    assert saved.stat().st_mode & 0o777 == 0o666 & ~umask  # made as other files are (safetensors: owner-only)
    export_gguf(load_vector(saved), tmp_path / "with.gguf", model=model)
    export_gguf(load_vector(saved), tmp_path / "without.gguf")
    for name in ("with", "without"):
        fields = gguf.GGUFReader(tmp_path / f"{name}.gguf").fields
        assert int(fields["controlvector.layer_count"].parts[-1][0]) == 4, name
        assert bytes(fields["controlvector.model_hint"].parts[-1]).decode() == "qwen3", name
    edited = load_vector(saved)
    edited.metadata["n_layers"] = "many"  # an edited file: at least the vector's own block + 1
    export_gguf(edited, tmp_path / "edited.gguf")
    assert int(gguf.GGUFReader(tmp_path / "edited.gguf").fields["controlvector.layer_count"].parts[-1][0]) == 2


def test_files_describe_how_to_apply_them_and_name_weights_not_paths(tmp_path, tokenizer):
    from conftest import consistent_pairs

    from yapo_core import TrainConfig, Trainer

    folder = tmp_path / "home" / "me" / "models" / "tiny"
    make_model("llama").save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = load_model(str(folder), device="cpu")[0]
    sae = make_sae()
    vector = Trainer(model, tokenizer, consistent_pairs(4), TrainConfig(kind="sparse", max_steps=1), sae=sae).vector
    path = save_vector(vector, tmp_path / "v.safetensors")
    _, meta = open_safetensors(path)
    assert meta["model_id"] == "models/tiny" and str(tmp_path) not in meta["model_id"]
    assert meta["operation"].startswith("add m·v to the SAE's latent codes") and "dec(relu(enc(h) + m·v))" in meta["operation"]
    assert meta["hook_point"] == "output of decoder block 1" and "0-based" in meta["layer_numbering"]
    assert meta["positions"].startswith("every token")
    # the same weights in another folder are the same model; other weights of the same shape are not
    moved = tmp_path / "elsewhere" / "copy"
    make_model("llama").save_pretrained(moved)
    tokenizer.save_pretrained(moved)
    assert load_vector(path, model=load_model(str(moved), device="cpu")[0], sae=sae).model_id == "models/tiny"
    with pytest.raises(VectorFileError, match="weights differ"):
        load_vector(path, model=make_model("llama", seed=1), sae=sae)
    middle = make_model("llama")  # a fine-tune of a block between the first and the last
    with torch.no_grad():
        middle.model.layers[2].mlp.down_proj.weight.mul_(1.1)
    with pytest.raises(VectorFileError, match="weights differ"):
        load_vector(path, model=middle, sae=sae)
    tensors, meta = open_safetensors(path)  # a file written before every block was recorded: the first and last decide
    save_file(tensors, str(tmp_path / "first-last.safetensors"), metadata={k: v for k, v in meta.items()
                                                                           if k != "model_blocks"})
    assert load_vector(tmp_path / "first-last.safetensors", model=middle, sae=sae).width == sae.cfg.d_sae
    with pytest.raises(VectorFileError, match="other SAE weights.*same width and hook"):
        load_vector(path, model=model, sae=make_sae(seed=1))
    # the same matrices, another encoder bias or TopK's k: other latents fire
    shifted = make_sae()
    with torch.no_grad():
        shifted.b_enc.add_(5.0)
    with pytest.raises(VectorFileError, match="encodes otherwise .*another encoder bias, threshold, kind or k"):
        load_vector(path, model=model, sae=shifted)
    from sae_lens import TopKSAE, TopKSAEConfig
    topk = TopKSAE(TopKSAEConfig(d_in=sae.cfg.d_in, d_sae=sae.cfg.d_sae, k=4))
    topk.load_state_dict(sae.state_dict())
    topk.cfg.metadata.hook_name = sae.cfg.metadata.hook_name
    with pytest.raises(VectorFileError, match="encodes otherwise"):
        load_vector(path, model=model, sae=topk)
    # the same SAE with its latents in another order: the whole-matrix sums agree, the indices do not
    permuted, order = make_sae(), torch.randperm(sae.cfg.d_sae, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        permuted.W_enc.copy_(sae.W_enc[:, order])
        permuted.b_enc.copy_(sae.b_enc[order])
        permuted.W_dec.copy_(sae.W_dec[order])
    with pytest.raises(VectorFileError, match="latents are in another order"):
        load_vector(path, model=model, sae=permuted)
    assert load_vector(path, model=model, sae=make_sae().to(torch.bfloat16)).width == sae.cfg.d_sae  # another dtype passes
    # a file written before the latents were recorded is checked by the sums alone
    tensors, meta = open_safetensors(path)
    del meta["sae_latents"], meta["sae_encoding"]
    save_file(tensors, str(tmp_path / "older.safetensors"), metadata=meta)
    assert load_vector(tmp_path / "older.safetensors", model=model, sae=permuted).width == sae.cfg.d_sae
    assert load_vector(tmp_path / "older.safetensors", model=model, sae=shifted).width == sae.cfg.d_sae


def test_non_finite_or_undescribed_vector_files_are_refused(tmp_path):
    nan = SteeringVector("dense", torch.tensor([1.0, float("nan"), 2.0]), "blocks.1.hook_resid_post")
    with pytest.raises(VectorFileError, match="1 non-finite value"):
        load_vector(save_vector(nan, tmp_path / "nan.safetensors"))
    save_file({"vector": torch.ones(3)}, str(tmp_path / "bare.safetensors"), metadata={"format": "yapo-steering-vector"})
    with pytest.raises(VectorFileError, match="lacks the metadata kind, hook_name, width"):
        load_vector(tmp_path / "bare.safetensors")
    with pytest.raises(VectorFileError, match="is a folder"):
        save_vector(SteeringVector("dense", torch.ones(3), "blocks.1.hook_resid_post"), tmp_path)
    assert not list(tmp_path.glob(".*.partial"))  # writes are renamed into place


def test_gguf_export_checks_the_vector_against_the_model_and_sae_it_is_given(tmp_path, sae_dir):
    from yapo_core.errors import SettingsError

    model = make_model("llama")
    sae = load_sae(path=sae_dir)
    trained_on = load_vector(save_vector(SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post"),
                                         tmp_path / "t.safetensors"))
    deep = SteeringVector("dense", torch.ones(32), "blocks.9.hook_resid_post")
    with pytest.raises(VectorFileError, match="steers layer 9 but this model has only 4 blocks"):
        export_gguf(deep, tmp_path / "deep.gguf", model=model)
    sparse = SteeringVector("sparse", torch.ones(sae.cfg.d_sae), "blocks.1.hook_resid_post", sae=sae)
    wide = make_sae(d_sae=256)
    with pytest.raises(VectorFileError, match="has 128 entries but the SAE has 256 latents"):
        export_gguf(sparse, tmp_path / "w.gguf", sae=wide)
    with pytest.raises(VectorFileError, match="reads 'blocks.3.hook_resid_post'"):
        export_gguf(sparse, tmp_path / "l.gguf", sae=make_sae(layer=3))
    with pytest.raises(VectorFileError, match="is a folder; give a file name such as .*vector.gguf"):
        export_gguf(trained_on, tmp_path, model=model)
    with pytest.raises(SettingsError, match="between -1000 and 1000"):
        export_gguf(trained_on, tmp_path / "big.gguf", model=model, multiplier=1e39)


def test_vector_files_with_unreadable_metadata_or_values_are_refused(tmp_path):
    from safetensors.torch import save_file

    base = {"format": "yapo-steering-vector", "kind": "dense", "hook_name": "blocks.1.hook_resid_post", "width": "4"}
    cases = [
        ({"vector": torch.ones(4)}, {**base, "default_multiplier": "abc"}, "default_multiplier 'abc' is not a finite"),
        ({"vector": torch.ones(4)}, {**base, "default_multiplier": "nan"}, "default_multiplier 'nan' is not a finite"),
        ({"vector": torch.ones(4, dtype=torch.int32)}, base, "holds torch.int32 values"),
        ({"vector": torch.full((4,), 3e38)}, base, "so large .* that its norm overflows"),
    ]
    for i, (tensors, meta, message) in enumerate(cases):
        path = tmp_path / f"v{i}.safetensors"
        save_file(tensors, str(path), metadata=meta)
        with pytest.raises(VectorFileError, match=message):
            load_vector(path)


def test_a_folder_or_a_training_checkpoint_is_not_taken_for_a_vector(tmp_path):
    from conftest import consistent_pairs, make_tokenizer

    from yapo_core import TrainConfig, Trainer

    with pytest.raises(VectorFileError, match="is a folder; give the .safetensors file in it"):
        load_vector(tmp_path)
    trainer = Trainer(make_model("llama"), make_tokenizer(), consistent_pairs(4),
                      TrainConfig(kind="dense", layer=1, max_steps=1))
    trainer.run()
    checkpoint = trainer.save_checkpoint(tmp_path / "run.safetensors")
    with pytest.raises(VectorFileError, match="is a training checkpoint, which continues a run"):
        load_vector(checkpoint)


def test_a_vector_that_cannot_be_written_is_an_error_that_says_so_and_leaves_no_partial_file(tmp_path, monkeypatch):
    """safetensors reports a full disk as its own error, not an OSError."""
    import safetensors.torch
    from safetensors import SafetensorError

    def full_disk(tensors, path, metadata=None):
        Path(path).write_bytes(b"half")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    vector = SteeringVector("dense", torch.ones(4), "blocks.1.hook_resid_post", method="bipo")
    with pytest.raises(VectorFileError, match="could not write .*v.safetensors.*No space left on device"):
        save_vector(vector, tmp_path / "v.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_a_gguf_export_that_would_be_all_zeros_is_refused_and_the_hint_is_llama_cpps_name(tmp_path):
    import gguf

    sae, model = make_sae(), make_model("llama")
    raised = SteeringVector("sparse", _sparse(sae).values.clamp(min=0), "blocks.1.hook_resid_post", sae=sae)
    with pytest.raises(SettingsError, match="every latent this sparse vector moves is lowered"):
        export_gguf(raised, tmp_path / "neg.gguf", model=model, sae=sae, multiplier=-1.0)
    assert list(tmp_path.iterdir()) == []  # no file, no partial one
    with pytest.raises(SettingsError, match="this vector is all zeros"):
        export_gguf(SteeringVector("dense", torch.zeros(32), "blocks.1.hook_resid_post"), tmp_path / "z.gguf", model=model)
    lowered = SteeringVector("sparse", -raised.values, raised.hook_name, sae=sae)
    assert export_gguf(lowered, tmp_path / "neg.gguf", model=model, sae=sae, multiplier=-1.0)["dropped_fraction"] == 0
    dense = SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post", metadata={"model_type": "qwen3_moe"})
    export_gguf(dense, tmp_path / "moe.gguf")
    hint = gguf.GGUFReader(tmp_path / "moe.gguf").fields["controlvector.model_hint"]
    assert bytes(hint.parts[-1]).decode() == "qwen3moe"  # as llama.cpp's converter names the architecture
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "moe.gguf").stat().st_mode & 0o777 == 0o666 & ~umask  # made as other files are


def test_a_vector_file_of_a_newer_format_is_refused_by_its_version(tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_vector(SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post"), tmp_path / "v.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    save_file(load_file(str(path)), str(path), metadata={**meta, "format_version": "2"})
    with pytest.raises(VectorFileError, match="format version '2'"):
        load_vector(path)


def test_a_loaded_vector_keeps_its_training_settings_when_saved_again(tmp_path):
    vec = SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post",
                         metadata={"training": '{"lr": 0.5}', "steps": "3"})
    again = save_vector(load_vector(save_vector(vec, tmp_path / "a.safetensors")), tmp_path / "b.safetensors")
    _, meta = open_safetensors(again)
    assert (meta["training"], meta["steps"]) == ('{"lr": 0.5}', "3")
