"""The app's settings: every variable read in one place, malformed values named with the fix."""

import pytest

from yapo_core.errors import SettingsError
from yapo_studio.settings import ROOT, Settings, current


def test_defaults_when_nothing_is_set():
    s = current({})
    assert s == Settings() and (s.host, s.port, s.demo_size, s.max_upload_bytes) == ("127.0.0.1", 7860, "full", 50 * 2**20)
    assert s.presets_file == ROOT / "assets" / "presets.json" and s.train_chunk_seconds is None and not s.zero_gpu


def test_each_variable_is_read():
    env = {"YAPO_HOST": "0.0.0.0", "YAPO_PORT": "8001", "YAPO_PRESETS": "/p.json", "YAPO_DEFAULT_PRESET": "gpt2-small",
           "YAPO_DEMO_SIZE": "mini", "YAPO_MAX_UPLOAD_MB": "5", "YAPO_HEAVY_JOBS": "3", "YAPO_TRAINING_JOBS": "2",
           "YAPO_KEEP_MODELS": "4", "YAPO_BIPO_DIR": "/bipo", "YAPO_DEVICE_MAP": "auto", "YAPO_TRAIN_CHUNK_SECONDS": "1.5",
           "YAPO_CACHE_DIR": "/cache", "SPACES_ZERO_GPU": "true"}
    s = current(env)
    assert (s.host, s.port, str(s.presets_file), s.default_preset, s.demo_size) == ("0.0.0.0", 8001, "/p.json", "gpt2-small", "mini")
    assert (s.max_upload_mb, s.heavy_jobs, s.training_jobs, s.keep_models) == (5, 3, 2, 4)
    assert (s.bipo_dir, s.device_map, s.train_chunk_seconds, s.cache_dir, s.zero_gpu) == ("/bipo", "auto", 1.5, "/cache", True)
    assert (current({"GRADIO_SERVER_NAME": "h", "GRADIO_SERVER_PORT": "9000"}).host,
            current({"GRADIO_SERVER_NAME": "h", "GRADIO_SERVER_PORT": "9000"}).port) == ("h", 9000)


@pytest.mark.parametrize("name, value, message", [
    ("YAPO_HEAVY_JOBS", "many", "YAPO_HEAVY_JOBS='many' must be a positive whole number"),
    ("YAPO_KEEP_MODELS", "0", "YAPO_KEEP_MODELS='0' must be a positive whole number"),
    ("YAPO_TRAIN_CHUNK_SECONDS", "-3", "YAPO_TRAIN_CHUNK_SECONDS='-3' must be a positive number"),
    ("YAPO_DEMO_SIZE", "huge", "YAPO_DEMO_SIZE='huge' is unknown; use 'full' or 'mini'"),
    ("YAPO_PORT", "eighty", "YAPO_PORT='eighty' is not a port; give a number from 1 to 65535"),
    ("GRADIO_SERVER_PORT", "abc", "GRADIO_SERVER_PORT='abc' is not a port"),
    ("YAPO_PORT", "99999", "YAPO_PORT='99999' is not a port"),
    ("YAPO_PUBLIC", "maybe", "YAPO_PUBLIC='maybe' must be 1 or 0"),
    ("YAPO_MAX_NEW_TOKENS", "-1", "YAPO_MAX_NEW_TOKENS='-1' must be a positive whole number"),
])
def test_malformed_values_name_the_variable_and_the_fix(name, value, message):
    with pytest.raises(SettingsError, match=message):
        current({name: value})


def test_public_mode_is_on_on_a_space_unless_turned_off_and_tightens_the_caps():
    local, space = current({}), current({"SPACE_ID": "someone/yapo"})
    assert not local.public and (local.max_prompt_chars, local.max_new_tokens, local.max_steps) == (20_000, 512, None)
    assert space.public and (space.max_prompt_chars, space.max_new_tokens, space.max_steps) == (2000, 128, 2400)
    assert not current({"SPACE_ID": "someone/yapo", "YAPO_PUBLIC": "0"}).public
    s = current({"YAPO_PUBLIC": "1", "YAPO_ALLOW_MODELS": "a/b, c/d,", "YAPO_ALLOW_SAES": "r1", "YAPO_MAX_STEPS": "50"})
    assert s.public and s.allow_models == ("a/b", "c/d") and s.allow_saes == ("r1",) and s.max_steps == 50


def test_public_mode_runs_the_demo_worlds_own_settings():
    """A public Space opens on the demo world: the step cap must admit the settings the app fills
    in for every demo task, or its default run is refused."""
    from yapo_core.demo.config import TRAINING, open_training

    cap = current({"SPACE_ID": "someone/yapo"}).max_steps
    opened = [open_training(kind, task) for kind in ("sparse", "dense") for task in (None, "culture", "behaviour")]
    assert all(settings["max_steps"] <= cap for settings in (TRAINING, *opened))
    assert max(settings["max_steps"] for settings in (TRAINING, *opened)) == cap  # and no more


def test_reading_the_settings_loads_no_sae_library():
    """The settings (read by the CLI and the app's start) import the demo's configuration, not its
    build: sae-lens is imported where an SAE is loaded or trained, not before."""
    import subprocess
    import sys

    code = "import sys, yapo_studio.settings, yapo_core.demo; print('sae_lens' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
