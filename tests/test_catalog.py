"""The preset catalogue: every preset's SAE exists in sae-lens's registry (read offline) and reads
the layer the preset says; the paper's settings use the paper's SAEs."""

import re
from pathlib import Path

import pytest
from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

from yapo_core.errors import SettingsError
from yapo_core.hooks import hook_point_from_name
from yapo_studio.catalog import load_catalog

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "assets" / "presets.json")
HUB_PRESETS = [p for p in CATALOG.presets if p.sae_release]


def layer_of(sae_id: str) -> int:
    """The block whose output an SAE of the registry reads, from its id's naming scheme."""
    if match := re.match(r"layer_(\d+)/", sae_id):  # Gemma Scope: the output of block L
        return int(match.group(1))
    if match := re.match(r"l(\d+)r_", sae_id):  # Llama Scope's residual SAEs: the output of block L
        return int(match.group(1))
    return hook_point_from_name(sae_id).resid_layer  # TransformerLens hook names


@pytest.mark.parametrize("preset", HUB_PRESETS, ids=[p.key for p in HUB_PRESETS])
def test_every_presets_sae_is_in_the_registry_at_its_layer(preset):
    release = get_pretrained_saes_directory().get(preset.sae_release)
    assert release is not None, f"{preset.sae_release} is not a sae-lens release"
    assert preset.sae_id in release.saes_map
    assert layer_of(preset.sae_id) == preset.layer


def test_the_papers_settings_use_the_papers_saes():
    registry = get_pretrained_saes_directory()
    two_b, nine_b = CATALOG.preset("gemma-2-2b-it"), CATALOG.preset("gemma-2-9b-it")
    assert (two_b.sae_release, two_b.sae_id) == ("gemma-scope-2b-pt-res", "layer_15/width_65k/average_l0_68")
    # the 9B canonical SAE of layer 28 is the paper's (average L0 98)
    assert registry[nine_b.sae_release].saes_map[nine_b.sae_id].endswith("layer_28/width_131k/average_l0_98")
    # the paper's 2B SAE has no Neuronpedia pages; the canonical one of the same layer does, as its own preset
    assert registry[two_b.sae_release].neuronpedia_id.get(two_b.sae_id) is None
    canonical = CATALOG.preset("gemma-2-2b-it-canonical")
    assert registry[canonical.sae_release].neuronpedia_id.get(canonical.sae_id) and canonical.layer == 15
    assert "Neuronpedia" in two_b.notes and "base model" in two_b.notes
    # Llama: the paper's train.sh defaults (layer 15, Llama Scope site R, expansion 8)
    llama = CATALOG.preset("llama-3.1-8b-instruct")
    assert registry[llama.sae_release].repo_id == "fnlp/Llama3_1-8B-Base-LXR-8x"
    assert registry[llama.sae_release].saes_map[llama.sae_id] == "Llama3_1-8B-Base-L15R-8x" and llama.layer == 15


def test_the_catalogue_reads_presets_and_task_sources():
    keys = [p.key for p in CATALOG.presets]
    assert keys[0] == "demo" and len(set(keys)) == len(keys) and "custom" in keys
    assert all(p.model and p.layer is not None for p in HUB_PRESETS)
    assert len(CATALOG.tasks["culture"]["countries"]) == 15
    with pytest.raises(SettingsError, match="unknown"):
        CATALOG.preset("nope")
