"""The steering-vector value and how it is applied to a model (docs/method.md §2).

Dense (BiPO, CAA):   h' = h + m·v
Sparse (YaPO, SAS):  h' = dec(relu(enc(h) + m·v)) + (h − dec(enc(h)))

A vector is applied with forward hooks at the output of one decoder block, at every position of
every forward pass (all prompt tokens during prefill and each generated token). The hooks are
registered by a context manager and always removed, also when the body raises.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .architectures import hidden_size
from .errors import SAELoadError, SettingsError, VectorFileError
from .hooks import HookPoint, hook_device, hook_point_from_name, parse_hook_name, steering_hook
from .models import same_weights
from .saes import (
    SAESource,
    check_sae_fits,
    decoder_is_linear,
    decoder_matrix,
    sae_encoding_fingerprint,
    sae_fingerprint,
    sae_input,
    sae_latents_fingerprint,
    sae_source,
    same_encoding,
)

KINDS = ("sparse", "dense")
FORMULAS = {
    "sparse": "h′ = dec(relu(enc(h) + m·v)) + (h − dec(enc(h)))",
    "dense": "h′ = h + m·v",
}
"""How a vector of each kind is applied at multiplier m."""
TRAINED_METHOD = {"sparse": "yapo", "dense": "bipo"}
"""The method that trains a vector of each kind with the preference objective."""


def sparse_delta(h: torch.Tensor, sae: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """``dec(relu(z + a)) − dec(z)`` with ``z = enc(h)``: what the sparse method adds to ``h``.

    Computed in the SAE's dtype. For SAEs whose decoder is linear the difference is taken in
    latent space first (``(relu(z + a) − z) @ W``), which is exact and avoids two decodes. Other
    SAEs are decoded by sae-lens itself; those that normalise their input keep its scale from one
    ``encode`` to the next ``decode`` only, so ``h`` is encoded again before the second decode.
    """
    h = sae_input(sae, h)
    z = sae.encode(h)
    shifted = F.relu(z + a.to(z.dtype))
    if decoder_is_linear(sae):
        return (shifted - z) @ decoder_matrix(sae)
    steered = sae.decode(shifted)
    sae.encode(h)  # restores the per-token input scale that decode consumed
    return steered - sae.decode(z)


def steer_hidden(
    h: torch.Tensor, kind: str, values: torch.Tensor, multiplier: float | torch.Tensor, sae=None
) -> torch.Tensor:
    """The steered residual ``h'`` for a vector of ``kind`` at ``multiplier`` (docs/method.md §2).

    Tensors are moved to where they are needed, so a model sharded over several devices
    (``device_map="auto"``) is steered on whichever device holds the hooked block.
    """
    if isinstance(multiplier, torch.Tensor):
        multiplier = multiplier.to(h.device)
    a = values.to(h.device) * multiplier
    if kind == "dense":
        return added(h, a)
    sae_device = sae.W_dec.device
    return added(h, sparse_delta(h.to(sae_device), sae, a.to(sae_device)).to(h.device))


def added(h: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``h + delta`` in fp32 at least, rounded once to ``h``'s dtype (a bf16 residual and a bf16
    delta summed in bf16 would be rounded twice)."""
    if h.dtype in (torch.float16, torch.bfloat16):
        return (h.float() + delta.float()).to(h.dtype)
    return h + delta.to(h.dtype)


@dataclass
class SteeringVector:
    """A learned or computed steering vector, with everything needed to apply and check it.

    ``values`` has the SAE's width for ``kind="sparse"`` and the model's hidden size for
    ``kind="dense"``; it is kept in fp32 whatever the model's dtype.
    """

    kind: str
    values: torch.Tensor
    hook_name: str
    method: str = ""
    model_id: str = ""
    sae_source: SAESource = field(default_factory=SAESource)
    default_multiplier: float = 1.0
    metadata: dict[str, str] = field(default_factory=dict)
    sae: nn.Module | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise SettingsError(f"kind {self.kind!r} is unknown; use 'sparse' or 'dense'.")
        if self.values.ndim != 1:
            raise SettingsError(f"a steering vector is 1-D; got shape {tuple(self.values.shape)}.")
        self.values = self.values.detach().to(torch.float32)
        if not self.method:
            self.method = TRAINED_METHOD[self.kind]
        if self.sae is not None and not self.sae_source.release and not self.sae_source.path:
            self.sae_source = sae_source(self.sae)

    @property
    def layer(self) -> int:
        """The block whose output is steered (``hook_resid_pre`` of L is the output of L−1)."""
        return hook_point_from_name(self.hook_name).resid_layer

    @property
    def width(self) -> int:
        return int(self.values.numel())

    def l0(self) -> int:
        return int((self.values != 0).sum())

    def norm(self) -> float:
        return float(self.values.norm())

    def top_mass(self, k: int = 10) -> float:
        """Share of the vector's L1 mass in its ``k`` largest-magnitude entries."""
        mags = self.values.abs()
        total = float(mags.sum())
        return float(mags.topk(min(k, mags.numel())).values.sum()) / total if total else 0.0

    def check_fits(self, model: nn.Module, sae: nn.Module | None = None) -> HookPoint:
        """Raise a clear error when this vector cannot be applied to ``model`` (and ``sae``)."""
        point = parse_hook_name(model, self.hook_name)
        if self.kind == "dense":
            d = hidden_size(model)
            if self.width != d:
                raise SettingsError(
                    f"this dense vector has {self.width} entries but the model's hidden size is "
                    f"{d}: it was made for another model ({self.model_id or 'unknown'})."
                )
            return point
        sae = sae if sae is not None else self.sae
        if sae is None:
            raise SAELoadError(
                "a sparse vector needs its SAE to be applied: pass sae= (load it with "
                f"yapo_core.load_sae; this vector was trained with {self.sae_source.describe()})."
            )
        check_sae_fits(model, sae)
        self.check_sae(sae, "this sparse vector")
        return point

    def check_sae(self, sae: nn.Module, name: str = "vector") -> None:
        """Raise :class:`VectorFileError` when ``sae`` is not the SAE this sparse vector was trained
        with: another release/id, another layer, another width, or other weights (its fingerprint)."""
        theirs, ours = self.sae_source, sae_source(sae)
        if theirs.release and ours.release and (theirs.release, theirs.sae_id) != (ours.release, ours.sae_id):
            raise VectorFileError(f"{name} was trained with SAE {theirs.describe()} but {ours.describe()} was given; "
                                  "load the SAE it was trained with.")
        sae_hook = sae.cfg.metadata.get("hook_name")
        if sae_hook and hook_point_from_name(sae_hook).resid_layer != self.layer:
            raise VectorFileError(f"{name} steers the output of block {self.layer} but the SAE reads {sae_hook!r}; "
                                  "load the SAE of that layer.")
        if sae.cfg.d_sae != self.width:
            raise VectorFileError(f"{name} has {self.width} entries but the SAE has {sae.cfg.d_sae} latents; load the "
                                  f"SAE it was trained with ({theirs.describe()}).")
        fingerprint = self.metadata.get("sae_fingerprint")
        if fingerprint and not same_weights(fingerprint, sae_fingerprint(sae)):
            raise VectorFileError(f"{name} was trained with other SAE weights than those of {ours.describe()} (same "
                                  "width and hook, other values); load the SAE it was trained with.")
        encoding = self.metadata.get("sae_encoding")  # files written before it was recorded have none
        if encoding and not same_encoding(encoding, sae_encoding_fingerprint(sae)):
            raise VectorFileError(f"{name} was trained with an SAE that encodes otherwise than {ours.describe()} (the "
                                  "same matrices, another encoder bias, threshold, kind or k), so other latents would "
                                  "fire under it; load the SAE it was trained with.")
        latents = self.metadata.get("sae_latents")  # files written before it was recorded have none
        # each sum covers d_in weights only: a looser tolerance, for a small SAE reloaded in bf16 (a reordering moves
        # the sums at the 16 indices by far more)
        if latents and not same_weights(latents, sae_latents_fingerprint(sae), rtol=1e-2):
            raise VectorFileError(f"{name} was trained with an SAE whose latents are in another order than those of "
                                  f"{ours.describe()} (the same weights, other indices), so its entries would name "
                                  "other latents; load the SAE it was trained with.")

    @contextlib.contextmanager
    def apply(
        self, model: nn.Module, multiplier: float | None = None, sae: nn.Module | None = None
    ) -> Iterator[nn.Module]:
        """Steer ``model`` inside the ``with`` block; hooks come off on exit, also on errors.

        Multiplier 0 registers nothing, so the model's outputs are bit-identical to unsteered.
        """
        multiplier = self.default_multiplier if multiplier is None else float(multiplier)
        sae = sae if sae is not None else self.sae
        point = self.check_fits(model, sae)
        if multiplier == 0.0:
            yield model
            return
        # Beside the hooked block: on a model sharded over GPUs that is not the first device.
        device = hook_device(model, point)
        values = self.values.to(device)
        if sae is not None and sae.W_dec.device != device:
            sae.to(device)
        with steering_hook(model, point, lambda h: steer_hidden(h, self.kind, values, multiplier, sae)):
            yield model


def dense_equivalent(
    vector: SteeringVector, sae: nn.Module | None = None, multiplier: float = 1.0
) -> tuple[torch.Tensor, float]:
    """A dense residual vector for ``vector`` at ``multiplier``, and the share of it dropped.

    Dense vectors are returned scaled. For sparse ones, ``relu(m·v) @ W_dec`` is exact when
    ``m·v ≥ 0`` everywhere; negative entries only clamp latents that are already active and have
    no token-independent equivalent, so they are dropped and their share of the L1 mass of
    ``m·v`` is returned (0.0 means the export is exact).
    """
    if vector.kind == "dense":
        return vector.values * multiplier, 0.0
    sae = sae if sae is not None else vector.sae
    if sae is None:
        raise SAELoadError("a dense export of a sparse vector needs the SAE it was trained in (load_sae; in the "
                           "command line, --sae-path, or --sae-release and --sae-id).")
    if not decoder_is_linear(sae):
        raise SAELoadError("this SAE rescales its decoding per token (it normalises its input), so a sparse vector "
                           "on it has no fixed dense equivalent and cannot be exported as a control vector.")
    a = vector.values.to(sae.W_dec.device) * multiplier
    total = float(a.abs().sum())
    dropped = float(a.clamp(max=0).abs().sum()) / total if total else 0.0
    with torch.no_grad():
        delta = F.relu(a).to(sae.W_dec.dtype) @ decoder_matrix(sae)
    return delta.float().cpu(), dropped


def steered(model: nn.Module, vector: SteeringVector | None, multiplier: float, sae: nn.Module | None = None):
    """``vector.apply`` or, without a vector (or at 0), a context that changes nothing."""
    if vector is None or multiplier == 0:
        return contextlib.nullcontext(model)
    return vector.apply(model, multiplier, sae=sae)

