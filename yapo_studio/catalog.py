"""The preset catalogue: model + SAE combinations and task sources, read from one data file
(``assets/presets.json``), and the :class:`~.store.LoadSpec` each preset loads."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

from yapo_core.errors import SettingsError

from .settings import current
from .store import LoadSpec, Sources
from .tasks import ensure_demo_world


@dataclass(frozen=True)
class Preset(Sources):
    """A model + SAE combination offered in the app (``assets/presets.json``).

    ``demo`` presets build/load the built-in demo world; ``custom`` ones take their sources from
    the user. ``dcl_rejected_model`` names the Deep-Culture-Lense ``rejected_<model>_*`` columns
    that hold this model's own answers (the paper's on-policy rejected answers).
    """

    key: str = ""
    label: str = ""
    demo: bool = False
    custom: bool = False
    gated: bool = False
    dcl_rejected_model: str | None = None
    notes: str = ""
    train: dict | None = None  # TrainConfig fields that differ from the public runs' defaults


@dataclass(frozen=True)
class Catalog:
    """Presets and task sources, read from one data file."""

    presets: tuple[Preset, ...]
    tasks: dict

    @property
    def default_key(self) -> str:
        """``$YAPO_DEFAULT_PRESET`` (e.g. ``gemma-2-2b-it`` on a GPU Space), else the first preset."""
        key = current().default_preset or self.presets[0].key
        return self.preset(key).key

    def preset(self, key: str) -> Preset:
        for p in self.presets:
            if p.key == key:
                return p
        raise SettingsError(f"preset {key!r} is unknown; known presets: {[p.key for p in self.presets]}.")


def load_catalog(path: str | os.PathLike) -> Catalog:
    """Read ``presets.json``: ``{"presets": [...], "tasks": {...}}`` (see the file itself)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {f.name for f in fields(Preset)}
        presets = tuple(Preset(**{k: v for k, v in p.items() if k in known}) for p in data["presets"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(f"the presets file {str(path)!r} could not be read: {exc}") from exc
    return Catalog(presets, data.get("tasks", {}))


def check_public_sources(catalog: Catalog | None, model: str | None = None, sae_release: str | None = None,
                         sae_path: str | None = None, **_) -> None:
    """On a public app (``YAPO_PUBLIC``, on by default on a Space) a custom model or SAE must be a
    preset's or on the operator's allow-list (``YAPO_ALLOW_MODELS``, ``YAPO_ALLOW_SAES``), and
    never a path on the server. Decided from the names alone, before anything is looked up, so
    the answer tells nothing about the server's files."""
    settings = current()
    if not settings.public:
        return
    presets = catalog.presets if catalog is not None else ()
    if sae_path and sae_path.strip():
        raise SettingsError("this is a public app: SAE folders on the server cannot be loaded; use an sae-lens "
                            "release and id.")
    models = sorted({p.model for p in presets if p.model and not p.demo} | set(settings.allow_models))
    model = (model or "").strip()
    if model and model not in models:
        raise SettingsError(
            f"this is a public app: it loads only these models by their Hugging Face ids: {', '.join(models) or 'none'} "
            "(its operator can add ids with YAPO_ALLOW_MODELS; local folders are disabled). Run the app "
            "yourself (python app.py) for any other model."
        )
    releases = sorted({p.sae_release for p in presets if p.sae_release} | set(settings.allow_saes))
    release = (sae_release or "").strip()
    if release and release not in releases:
        raise SettingsError(
            f"this is a public app: it loads only these SAE releases: {', '.join(releases) or 'none'} "
            "(its operator can add releases with YAPO_ALLOW_SAES)."
        )


def spec_for(preset: Preset, model: str | None = None, sae_release: str | None = None, sae_id: str | None = None,
             sae_path: str | None = None, layer: int | None = None, device: str = "auto") -> LoadSpec:
    """The :class:`LoadSpec` of a preset; a custom preset takes the given sources."""
    if preset.demo:
        world = ensure_demo_world()  # built on first use
        return LoadSpec(str(world.model_dir), sae_path=str(world.sae_dir), layer=world.layer, device=device)
    if preset.custom:
        if not model or not model.strip():
            raise SettingsError("enter a model: a Hugging Face id (e.g. openai-community/gpt2) or a local folder.")
        release, sae_id, path = (sae_release or "").strip() or None, (sae_id or "").strip() or None, (sae_path or "").strip() or None
        if path and release:
            raise SettingsError("give either an SAE release and id or a local SAE folder, not both.")
        if release and not sae_id:
            raise SettingsError(f"SAE release {release!r} needs an SAE id too (e.g. blocks.8.hook_resid_pre).")
        if not (release or path) and layer is None:
            raise SettingsError("give an SAE (release + id, or a local folder) or at least the layer to steer.")
        return LoadSpec(model.strip(), release, sae_id, path, layer, preset.dtype, device)
    return LoadSpec(**{f.name: getattr(preset, f.name) for f in fields(Sources)}, device=device)
