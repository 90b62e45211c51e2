"""Loaded models, shared by every session of a process, and the fast reachability checks that
make a load fail within seconds (not after minutes of retries) when the Hub is needed but
cannot be reached.

:class:`ModelStore` reuses a loaded model between sessions (weights are read-only, and a large
model cannot be loaded once per user); each :class:`Bundle` has a lock that every use of the
model takes (a steering hook is on the model while it runs), served first come, first served
(:class:`~.fair_lock.FairLock`), so that a training run does not starve other requests.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

from yapo_core.architectures import num_layers
from yapo_core.errors import ModelLoadError, SAELoadError, SettingsError
from yapo_core.hooks import block_output, hook_point_from_name
from yapo_core.hub import require_hub
from yapo_core.models import is_local_source, load_model
from yapo_core.saes import load_sae, place_sae

from .fair_lock import FairLock
from .settings import current


@dataclass(frozen=True)
class Sources:
    """Where a model and its SAE come from: a model (hub id or folder), optionally an SAE (sae-lens
    release + id, or a folder), the steered layer when there is no SAE, and the dtype."""

    model: str | None = None
    sae_release: str | None = None
    sae_id: str | None = None
    sae_path: str | None = None
    layer: int | None = None
    dtype: str = "fp32"


@dataclass(frozen=True)
class LoadSpec(Sources):
    """Exactly what to load: the sources, on which device."""

    device: str = "auto"
    device_map: str | None = field(default_factory=lambda: current().device_map)
    """``auto``: spread the model over every visible GPU (accelerate); set ``YAPO_DEVICE_MAP``."""

    def describe(self) -> str:
        sae = f"{self.sae_release}/{self.sae_id}" if self.sae_release else (self.sae_path or "no SAE")
        return f"{self.model} + {sae}"


@dataclass(eq=False)
class Bundle:
    """A loaded model, its tokenizer and SAE. Take ``lock`` around every use of ``model``."""

    spec: LoadSpec
    label: str
    model: object
    tokenizer: object
    sae: object | None
    hook_name: str | None
    lock: FairLock = field(default_factory=FairLock)

    def describe(self) -> str:
        """One line: the model's size and depth, and the SAE it steers through."""
        sae = "no SAE (BiPO and CAA only: YaPO and SAS work in an SAE's latents)"
        if self.sae is not None:
            sae = f"SAE with {self.sae.cfg.d_sae:,} latents reading `{self.hook_name}`"
        parameters = sum(p.numel() for p in self.model.parameters())
        return f"`{self.spec.model}` ({num_layers(self.model)} blocks, {parameters:,} parameters), {sae}"

    @property
    def layer(self) -> int | None:
        return hook_point_from_name(self.hook_name).resid_layer if self.hook_name else self.spec.layer


_LOADED: "weakref.WeakValueDictionary[LoadSpec, Bundle]" = weakref.WeakValueDictionary()
"""Every bundle this process has loaded and still holds, by spec (see :func:`loaded_bundle`)."""


def load_bundle(spec: LoadSpec, label: str = "") -> Bundle:
    """Load model, tokenizer and SAE of ``spec`` and check that they fit together."""
    if not is_local_source(spec.model):  # load_model checks too; the model's answer comes before the SAE's
        require_hub("model", spec.model, ModelLoadError)
    if spec.sae_release:
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

        lookup = get_pretrained_saes_directory().get(spec.sae_release)
        if lookup is None:
            raise SAELoadError(f"SAE release {spec.sae_release!r} is not in sae-lens's registry; check the spelling.")
        require_hub("SAE release", lookup.repo_id, SAELoadError)
    model, tokenizer = load_model(spec.model, device=spec.device, dtype=spec.dtype, device_map=spec.device_map)
    sae = None
    if spec.sae_release or spec.sae_path:
        sae = load_sae(spec.sae_release, spec.sae_id, path=spec.sae_path, device="cpu")
        hook = place_sae(model, sae, spec.layer).hook_name
    elif spec.layer is not None:
        hook = block_output(model, spec.layer).hook_name
    else:
        raise SettingsError("without an SAE, give the layer to steer (only BiPO can be trained then).")
    bundle = _LOADED[spec] = Bundle(spec, label or spec.describe(), model, tokenizer, sae, hook)
    return bundle


_WORKER_KEPT: list[Bundle] = []  # the last bundle loaded_bundle had to load itself, kept alive
_WORKER_LOCK = threading.Lock()


def loaded_bundle(spec: LoadSpec) -> Bundle:
    """The bundle of ``spec`` this process already holds, or a fresh load (a ZeroGPU worker that
    was forked before the user loaded it), which then stays loaded for the next chunk."""
    with _WORKER_LOCK:
        bundle = _LOADED.get(spec)
        if bundle is None:
            bundle = load_bundle(spec)
            _WORKER_KEPT[:] = [bundle]
        return bundle


class ModelStore:
    """Loaded bundles shared by all sessions of a process.

    A bundle stays available while any session uses it (weak references), and the
    ``keep`` most recently loaded ones stay loaded even when nobody does. Loads of the same spec
    are serialised, so two users asking at once load it once.
    """

    def __init__(self, keep: int = 1):
        self.keep = keep
        self._live: "weakref.WeakValueDictionary[LoadSpec, Bundle]" = weakref.WeakValueDictionary()
        self._recent: list[Bundle] = []
        self._lock = threading.Lock()
        self._loading: dict[LoadSpec, threading.Lock] = {}

    def get(self, spec: LoadSpec, label: str = "") -> Bundle:
        with self._lock:
            gate = self._loading.setdefault(spec, threading.Lock())
        with gate:
            bundle = self._live.get(spec)
            if bundle is None:
                bundle = load_bundle(spec, label)
                self._live[spec] = bundle
            with self._lock:
                self._recent = ([bundle] + [b for b in self._recent if b is not bundle])[: self.keep]
            return bundle
