"""Plain values at the boundaries: each bad number, seed, multiplier, device or folder is refused
with a SettingsError naming it and what is accepted, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import consistent_pairs, make_model, make_sae

from yapo_core import checks
from yapo_core.errors import SettingsError
from yapo_core.generation import generate
from yapo_core.models import resolve_device
from yapo_core.steering import SteeringVector
from yapo_core.training import TrainConfig, Trainer


def test_the_checks_name_the_value_and_the_bound(tmp_path):
    assert checks.whole("n", 3, 1) == 3
    for bad in (0, True, 1.5, "3"):
        with pytest.raises(SettingsError, match=r"n=.* must be a whole number of at least 1"):
            checks.whole("n", bad, 1)
    with pytest.raises(SettingsError, match="x=inf must be a finite number above 0 and at most 10"):
        checks.number("x", float("inf"), above=0, most=10)
    with pytest.raises(SettingsError, match="seed=-1 must be a whole number between 0 and"):
        checks.seed(-1)
    assert checks.multipliers(["-1", 0, 2.5]) == [-1.0, 0.0, 2.5]
    for bad, message in (([], "at least one multiplier"), (["a"], "'a' is not a number"),
                         ([1e39], "between -1000 and 1000"), ([float("nan")], "must be a finite number"),
                         ("0,1", "must be a list of numbers")):
        with pytest.raises(SettingsError, match=message):
            checks.multipliers(bad)
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    assert checks.folder("d", tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    with pytest.raises(SettingsError, match="d=.*f.txt' is a file; give a folder"):
        checks.folder("d", a_file)
    with pytest.raises(SettingsError, match="is inside .*f.txt', which is a file"):
        checks.folder("d", a_file / "sub")


@pytest.mark.parametrize("device", ["tpu", "", 0, "cuda:x"])
def test_an_unknown_device_is_named(device):
    with pytest.raises(SettingsError, match="is unknown; use auto, cpu, cuda, cuda:N or mps"):
        resolve_device(device)


@pytest.mark.parametrize("field, value, message", [
    ("seed", 10**30, "seed=.* must be a whole number between 0 and"),
    ("seed", 1.5, "seed=1.5 must be a whole number"),
    ("lr", 1e30, "lr=1e\\+30 must be a finite number above 0 and at most 10"),
    ("beta", 1e30, "beta=.* at most 1000"),
    ("grad_clip", 1e-300, "grad_clip=.* at least 1e-06"),
    ("weight_decay", 1e30, "weight_decay=.* at most 1"),
    ("cache_in_memory", "no", "cache_in_memory='no' must be True, False or None"),
    ("layer", -1, "layer=-1 must be a whole number of at least 0"),
])
def test_training_settings_out_of_range(field, value, message):
    with pytest.raises(SettingsError, match=message):
        TrainConfig(**{field: value})


def test_cache_and_checkpoint_folders_that_are_files_are_refused_before_training(tmp_path):
    a_file = tmp_path / "pairs.jsonl"
    a_file.write_text("{}")
    with pytest.raises(SettingsError, match="cache_dir=.* is a file"):
        TrainConfig(cache_dir=str(a_file))
    with pytest.raises(SettingsError, match="checkpoint_dir=.* is a file"):
        TrainConfig(checkpoint_every=1, checkpoint_dir=str(a_file))
    with pytest.raises(SettingsError, match="must be a JSON object"):
        TrainConfig.from_json("[1]")


def test_trainer_arguments_of_the_wrong_kind(tokenizer):
    model, sae = make_model(), make_sae()
    pairs = consistent_pairs(4)
    with pytest.raises(SettingsError, match="config must be a TrainConfig .* not a dict"):
        Trainer(model, tokenizer, pairs, {"max_steps": 1}, sae=sae)
    with pytest.raises(SettingsError, match="sae must be a loaded SAE .* not a str"):
        Trainer(model, tokenizer, pairs, TrainConfig(), sae="/some/path")
    with pytest.raises(SettingsError, match="pairs must be PreferencePair objects .* not dict"):
        Trainer(model, tokenizer, [{"prompt": "a"}], TrainConfig(), sae=sae)


def test_generation_settings_are_checked_before_decoding(tokenizer):
    model = make_model()
    vector = SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post")
    for kwargs, message in (
        (dict(do_sample=True, temperature=0.0), "temperature=0.0 must be a finite number above 0"),
        (dict(do_sample=True, top_p=float("nan")), "top_p=nan must be a finite number above 0 and at most 1"),
        (dict(seed=2**70), "seed=.* must be a whole number between 0"),
        (dict(multipliers=[]), "at least one multiplier"),
        (dict(multipliers=[1e39]), "between -1000 and 1000"),
    ):
        with pytest.raises(SettingsError, match=message):
            generate(model, tokenizer, "Hi", vector, **{"multipliers": [0, 1], **kwargs})
    with pytest.raises(SettingsError, match="prompts must be one or more non-empty strings"):
        generate(model, tokenizer, [], vector)


def test_models_and_saes_with_broken_weights_are_refused(tmp_path, tokenizer):
    from safetensors.torch import load_file, save_file

    from yapo_core.errors import ModelLoadError, SAELoadError
    from yapo_core.models import load_model
    from yapo_core.saes import load_sae

    model_dir, sae_dir = tmp_path / "model", tmp_path / "sae"
    make_model().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    weights = load_file(model_dir / "model.safetensors")
    key = next(k for k in weights if "layers.2" in k and weights[k].ndim == 2)
    weights[key][0, 0] = float("nan")
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="hold NaN or infinite values \\(model.layers.2"):
        load_model(model_dir, device="cpu")
    make_sae().save_model(sae_dir)
    sae_weights = load_file(sae_dir / "sae_weights.safetensors")
    sae_weights["W_dec"][3, 3] = float("inf")
    save_file(sae_weights, str(sae_dir / "sae_weights.safetensors"))
    with pytest.raises(SAELoadError, match="hold NaN or infinite values \\(W_dec\\)"):
        load_sae(path=sae_dir, device="cpu")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, where no file can be made")
def test_a_folder_to_write_is_probed_and_one_only_read_is_not():
    """Permissions pass /proc for root; making a file there fails. A finished activation cache may
    sit on read-only storage: TrainConfig's folders are not probed (nor a file made per config)."""
    from yapo_core import TrainConfig

    with pytest.raises(SettingsError, match="--out='/proc' cannot be written"):
        checks.folder("--out", "/proc")
    assert checks.folder("cache_dir", "/proc", probe=False) == Path("/proc")
    assert TrainConfig(cache_dir="/proc").cache_dir == "/proc"
