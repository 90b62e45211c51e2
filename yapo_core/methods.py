"""The four ways of making a steering vector, in one registry with the only dispatcher.

YaPO (sparse) and BiPO (dense) are *trained* with the bi-directional preference objective
(:class:`~.training.Trainer`); CAA (dense) and SAS (sparse) are *computed* from the pairs in one
pass (:mod:`.baselines`). Every caller (the CLI, the method comparison, the app's runs) makes
vectors through :func:`make_vector` or, to run a training step by step, :meth:`Method.trainer`.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, fields, replace
from typing import Callable, ContextManager, Sequence

from torch import nn

from .baselines import compute_caa, compute_sas
from .data import PreferencePair
from .errors import SettingsError
from .saes import check_sae_fits
from .steering import FORMULAS, SteeringVector
from .training import StepMetrics, TrainConfig, Trainer


@dataclass(frozen=True)
class Method:
    """A way of making a steering vector: its key, how it is shown, and what it builds."""

    key: str
    label: str
    kind: str  # "sparse" (over an SAE's latents) or "dense" (in the residual stream)
    trained: bool  # trained with the preference objective, else computed in one pass
    summary: str

    @property
    def formula(self) -> str:
        """How the vector is applied at multiplier m (docs/method.md §2)."""
        return FORMULAS[self.kind]

    def trainer(self, model: nn.Module, tokenizer, pairs: Sequence[PreferencePair], sae: nn.Module | None = None,
                config: TrainConfig | None = None, progress: bool = False) -> Trainer:
        """A :class:`Trainer` for this (trained) method; ``config.kind`` is set to the method's."""
        if not self.trained:
            raise SettingsError(f"{self.label} is computed, not trained; use make_vector({self.key!r}, ...).")
        config = replace(config or TrainConfig(), kind=self.kind)
        return Trainer(model, tokenizer, pairs, config, sae=sae, progress=progress)  # a dense run takes its layer from the SAE


METHODS: dict[str, Method] = {
    "yapo": Method("yapo", "YaPO (sparse)", "sparse", True,
                   "a vector over the SAE's latents, trained with the preference objective"),
    "bipo": Method("bipo", "BiPO (dense)", "dense", True,
                   "a vector in the residual stream, trained with the preference objective"),
    "caa": Method("caa", "CAA (dense, computed)", "dense", False,
                  "mean of h(chosen) − h(rejected) at the last answer token (the paper uses m = 0.5)"),
    "sas": Method("sas", "SAS (sparse, computed)", "sparse", False,
                  "mean SAE codes of chosen − rejected over latents active in ≥ 70% of one side only"),
}


def get_method(key: str) -> Method:
    """The registry entry for ``key`` (case-insensitive), or an error naming the choices."""
    method = METHODS.get(str(key).lower())
    if method is None:
        raise SettingsError(f"method {key!r} is unknown; use one of {', '.join(METHODS)}.")
    return method


def make_vector(
    method: str | Method,
    model: nn.Module,
    tokenizer,
    pairs: Sequence[PreferencePair],
    sae: nn.Module | None = None,
    layer: int | None = None,
    config: TrainConfig | None = None,
    progress: bool = False,
    on_step: Callable[[StepMetrics], None] | None = None,
    guard: Callable[[], ContextManager] = nullcontext,
    **train_config,
) -> SteeringVector:
    """Make ``method``'s vector from ``pairs``: train YaPO/BiPO, compute CAA/SAS.

    ``layer`` is the steered block (taken from the SAE's hook when omitted); ``config``, keyword
    arguments (:class:`TrainConfig` fields), or both (the keywords replace the config's fields)
    set the training; ``on_step`` sees each training step's metrics. ``guard()`` is entered around
    each use of the model (a computation, the training's preparation, each step), so that a shared
    model is held one step at a time; it may raise to stop the work.
    """
    method = method if isinstance(method, Method) else get_method(method)
    if config is not None and not isinstance(config, TrainConfig):
        raise SettingsError(f"config must be a TrainConfig, not a {type(config).__name__}.")
    unknown = sorted(set(train_config) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise SettingsError(f"{', '.join(unknown)} {'is not a setting' if len(unknown) == 1 else 'are not settings'} "
                            f"of TrainConfig; its settings: {', '.join(f.name for f in fields(TrainConfig))}.")
    config = replace(config, **train_config) if config is not None else TrainConfig(**train_config)
    if layer is not None and config.layer is not None and layer != config.layer:
        raise SettingsError(f"layer={layer} and the config's layer={config.layer} disagree; give one of them.")
    layer = layer if layer is not None else config.layer
    if method.kind == "sparse" and sae is None:
        raise SettingsError(f"{method.label} works in an SAE's latent space: pass an SAE.")
    if layer is None and sae is None:
        raise SettingsError(f"{method.label} needs layer= (or an SAE to take it from).")
    if method.key == "caa":  # at the SAE's own hook point when no layer is named (the input of block 0 too)
        with guard():
            return compute_caa(model, tokenizer, pairs, check_sae_fits(model, sae) if layer is None else layer)
    if method.key == "sas":
        with guard():
            return compute_sas(model, tokenizer, pairs, sae)
    config = replace(config, layer=layer)
    with guard():  # tokenising and caching activations run the model
        trainer = method.trainer(model, tokenizer, pairs, sae, config, progress=progress)
    if on_step is None and guard is nullcontext:
        return trainer.run(progress=progress)
    steps = iter(trainer)
    while True:
        with guard():
            metrics = next(steps, None)
        if metrics is None:
            return trainer.vector
        if on_step is not None:
            on_step(metrics)


__all__ = ["METHODS", "Method", "get_method", "make_vector"]
