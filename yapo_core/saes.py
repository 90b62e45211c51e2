"""Loading SAEs through sae-lens and checking that they fit the model and layer they steer."""

from __future__ import annotations

import json
import os
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .architectures import decoder_layers, hidden_size, num_layers
from .errors import SAELoadError, SettingsError
from .hooks import HookPoint, block_output, hook_device, parse_hook_name
from .hub import explain_hub_error, require_hub
from .models import (
    check_weights,
    model_blocks_fingerprint,
    model_fingerprint,
    module_fingerprint,
    resolve_device,
    same_weights,
)


@dataclass(frozen=True)
class SAESource:
    """Where an SAE came from: a sae-lens release and id, or a local folder."""

    release: str | None = None
    sae_id: str | None = None
    path: str | None = None
    neuronpedia_id: str | None = None

    def describe(self) -> str:
        if self.release:
            return f"{self.release}/{self.sae_id}"
        return f"local folder {self.path}" if self.path else "an SAE built in memory"

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


_SOURCES: "weakref.WeakKeyDictionary[nn.Module, SAESource]" = weakref.WeakKeyDictionary()


def neuronpedia_id(release: str, sae_id: str) -> str | None:
    """The ``<model>/<sae-id>`` part of a Neuronpedia URL, from sae-lens's offline registry."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    lookup = get_pretrained_saes_directory().get(release)
    return lookup.neuronpedia_id.get(sae_id) if lookup else None


def load_sae(
    release: str | None = None,
    sae_id: str | None = None,
    path: str | os.PathLike | None = None,
    device: str | None = "auto",
    dtype: str = "float32",
):
    """Load a frozen sae-lens SAE, by registry ``release`` + ``sae_id`` or from a local ``path``."""
    from sae_lens import SAE

    device = resolve_device(device)
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.exists():
            raise SAELoadError(f"SAE folder {str(folder)!r} does not exist; check the path, or give a sae-lens release "
                               "and SAE id instead.")
        if not (folder / "cfg.json").is_file():
            raise SAELoadError(
                f"SAE folder {str(folder)!r} has no cfg.json; point to a folder written by "
                "sae-lens's save_model (cfg.json + sae_weights.safetensors)."
            )
        try:
            sae = SAE.load_from_disk(folder, device=device, dtype=dtype)
        except Exception as exc:  # sae-lens raises many kinds; all mean "this folder is unusable"
            raise SAELoadError(f"SAE folder {str(folder)!r} could not be loaded: {exc}") from exc
        source = SAESource(path=str(folder))
    else:
        if not release or not sae_id:
            raise SAELoadError("give either path=<local SAE folder> or both release= and sae_id=.")
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

        directory = get_pretrained_saes_directory()
        lookup = directory.get(release)
        if lookup is None and "/" not in release:  # neither a listed release nor a hub repo (owner/name)
            import difflib

            close = difflib.get_close_matches(release, list(directory), n=5, cutoff=0.6)
            raise SAELoadError(f"SAE release {release!r} is not one of sae-lens's {len(directory)} releases"
                               + (f"; similar: {', '.join(close)}" if close else "")
                               + " (a hub repo of SAEs is named owner/name).")
        if lookup is not None and sae_id not in lookup.saes_map:
            close = [i for i in lookup.saes_map if sae_id.split("/")[0] in i][:5]
            raise SAELoadError(
                f"SAE id {sae_id!r} is not in release {release!r}"
                + (f"; similar ids: {close}" if close else f" ({len(lookup.saes_map)} ids listed)")
            )
        require_hub("SAE release", lookup.repo_id if lookup is not None else release, SAELoadError)
        try:
            sae = SAE.from_pretrained(release, sae_id, device=device, dtype=dtype)
        except Exception as exc:
            raise SAELoadError(explain_hub_error("SAE release", f"{release}/{sae_id}", exc,
                                                 repo_id=lookup.repo_id if lookup is not None else release)) from exc
        source = SAESource(release=release, sae_id=sae_id, neuronpedia_id=neuronpedia_id(release, sae_id))
    sae.eval()
    sae.requires_grad_(False)
    _SOURCES[sae] = source
    check_weights(sae, f"SAE {source.describe()}", SAELoadError)
    return sae


def sae_source(sae: nn.Module) -> SAESource:
    """Where ``sae`` was loaded from (empty when it was built in memory)."""
    return _SOURCES.get(sae, SAESource())


def set_sae_source(sae: nn.Module, source: SAESource) -> None:
    """Record where an in-memory SAE comes from (used when it is saved or built by the project)."""
    _SOURCES[sae] = source


def sae_fingerprint(sae: nn.Module) -> str:
    """:func:`~.models.weights_fingerprint` of the SAE's encoder, decoder and decoder bias."""
    return module_fingerprint(sae, [sae.W_enc, sae.W_dec, sae.b_dec])


_ENCODING_SETTINGS = ("k", "normalize_activations", "apply_b_dec_to_input", "rescale_acts_by_decoder_norm",
                      "reshape_activations")


def sae_encoding_fingerprint(sae: nn.Module) -> str:
    """What besides the matrices :func:`sae_fingerprint` covers decides which latents fire, and how
    much: the SAE's other tensors (encoder bias, JumpReLU threshold), its kind, and the settings of
    its encoding (TopK's ``k``, input normalisation). Compared by :func:`same_encoding`."""
    others = [t for name, t in sorted([*sae.named_parameters(), *sae.named_buffers()])
              if name not in ("W_enc", "W_dec", "b_dec")]
    kind = sae.cfg.architecture() if callable(getattr(sae.cfg, "architecture", None)) else type(sae).__name__
    settings = {"architecture": kind, **{k: repr(getattr(sae.cfg, k)) for k in _ENCODING_SETTINGS if hasattr(sae.cfg, k)}}
    return json.dumps({"settings": settings, "tensors": json.loads(module_fingerprint(sae, others))}, sort_keys=True)


def same_encoding(a: str, b: str) -> bool:
    """Whether two :func:`sae_encoding_fingerprint` strings describe the same encoding: equal
    settings, where both record one (another sae-lens version may add or drop a field), and tensors
    equal within :func:`~.models.same_weights`'s tolerance."""
    try:
        x, y = json.loads(a), json.loads(b)
        both = x["settings"].keys() & y["settings"].keys()
        return ("architecture" in both and all(x["settings"][k] == y["settings"][k] for k in both)
                and same_weights(json.dumps(x["tensors"]), json.dumps(y["tensors"])))
    except (ValueError, KeyError, TypeError, AttributeError):  # a record that cannot be read matches nothing
        return False


LATENTS_SAMPLED = 16


def sae_latents_fingerprint(sae: nn.Module) -> str:
    """What identifies the SAE's latents by their index: the encoder column's and the decoder
    row's absolute sums at :data:`LATENTS_SAMPLED` indices spread over the latents, as entries
    :func:`~.models.same_weights` compares (``[[index], sum]``). :func:`sae_fingerprint` sums
    whole matrices, so the same SAE with its latents in another order passes it; a sparse vector's
    entry ``i`` means latent ``i``, and this tells the two apart."""
    return module_fingerprint(sae, [sae.W_enc, sae.W_dec], _latent_sums)


def _latent_sums(tensors: list[torch.Tensor]) -> str:
    W_enc, W_dec = tensors
    d_sae = W_dec.shape[0]
    picks = sorted({round(k * (d_sae - 1) / max(LATENTS_SAMPLED - 1, 1)) for k in range(LATENTS_SAMPLED)})
    index = torch.tensor(picks, device=W_dec.device)
    with torch.no_grad():
        decoder = W_dec.detach().index_select(0, index).abs().sum(1, dtype=torch.float64)
        encoder = W_enc.detach().index_select(1, index).abs().sum(0, dtype=torch.float64)
    return json.dumps([[[i, side], round(float(x), 6)] for side, sums in (("dec", decoder), ("enc", encoder))
                       for i, x in zip(picks, sums.tolist())])


def provenance(model: nn.Module, sae: nn.Module | None = None) -> dict[str, str]:
    """Fingerprints of the weights a vector is made for, and the model's type and depth, for its
    file's metadata."""
    out = {"model_fingerprint": model_fingerprint(model), "model_blocks": model_blocks_fingerprint(model),
           "model_type": str(getattr(model.config, "model_type", "")),
           "n_layers": str(num_layers(model))}  # what a GGUF export names without the model at hand
    if sae is not None:
        out["sae_fingerprint"] = sae_fingerprint(sae)
        out["sae_latents"] = sae_latents_fingerprint(sae)
        out["sae_encoding"] = sae_encoding_fingerprint(sae)
    return out


def sae_hook_name(sae: nn.Module) -> str | None:
    return sae.cfg.metadata.get("hook_name")


def check_sae_fits(model: nn.Module, sae: nn.Module, layer: int | None = None) -> HookPoint:
    """Check the SAE's width and hook against the model; returns the hook point to steer.

    ``layer`` (the block whose output is steered) must agree with the SAE's hook when given.
    """
    check_steerable(sae)
    _READS_CENTRED[sae] = _trained_centred(sae) and uses_layer_norm(model)
    d_model = hidden_size(model)
    if sae.cfg.d_in != d_model:
        raise SAELoadError(
            f"SAE input width d_in={sae.cfg.d_in} does not match the model's hidden size "
            f"{d_model}: this SAE ({sae_source(sae).describe()}) was trained for another model."
        )
    hook_name = sae_hook_name(sae)
    if hook_name is None:
        if layer is None:
            raise SAELoadError("the SAE names no hook in its config; pass layer= explicitly.")
        return block_output(model, layer)
    try:
        point = parse_hook_name(model, hook_name)
    except SettingsError:  # a block this model does not have: the SAE's doing, not a chosen layer's
        n = num_layers(model)
        raise SAELoadError(f"the SAE reads {hook_name!r}, but this model has {n} blocks (0 to {n - 1}): the SAE "
                           f"({sae_source(sae).describe()}) was trained for another model.") from None
    if layer is not None and point.resid_layer != layer:
        use = f"use layer={point.resid_layer}" if point.resid_layer >= 0 else "leave the layer unset"
        raise SAELoadError(
            f"the SAE reads {hook_name!r} ({point.where}) but layer {layer} was chosen; {use} or an SAE trained "
            f"at layer {layer}."
        )
    return point


def load_sae_for(vector=None, release: str | None = None, sae_id: str | None = None, path: str | None = None,
                 model: nn.Module | None = None, device: str | None = "cpu",
                 how: str = "pass path= or release= and sae_id=") -> nn.Module | None:
    """The SAE named here (``path``, or ``release`` + ``sae_id``), else the one a sparse ``vector``
    was trained with (its provenance); placed beside its block of ``model`` when given. None when
    neither names one (a dense vector). ``how`` says, in the caller's terms, how to name one."""
    if path or release:
        pass
    elif vector is not None and vector.kind == "sparse":
        src = vector.sae_source
        if not (src.release or src.path):
            raise SAELoadError(f"this sparse vector names no SAE; {how}.")
        release, sae_id, path = src.release, src.sae_id, src.path
    else:
        return None
    sae = load_sae(release, sae_id, path=path, device=device)
    if model is not None:
        place_sae(model, sae)
    return sae


def place_sae(model: nn.Module, sae: nn.Module, layer: int | None = None) -> HookPoint:
    """Check the SAE fits the model and move it to the device of the block it is hooked on, so that a
    model sharded over several GPUs (``device_map="auto"``) steers without moving the SAE's
    weights on every forward pass. Returns the hook point."""
    point = check_sae_fits(model, sae, layer)
    device = hook_device(model, point)
    if sae.W_dec.device != device:
        sae.to(device)
    return point


STEERABLE_ARCHITECTURES = ("standard", "gated", "jumprelu", "topk")
"""sae-lens SAE architectures whose codes are non-negative and whose decoder is ``z @ W + b`` (up to
the input normalisation), so that ``dec(relu(enc(h) + m·v)) + (h − dec(enc(h)))`` is the method's
steering, exact at ``m = 0``."""

BATCH_ARCHITECTURES = ("batchtopk", "matryoshka_batchtopk")
"""sae-lens training SAEs whose ``encode`` keeps the top k over the whole batch, so a token's code
depends on the other tokens beside it; sae-lens saves them as JumpReLU SAEs for inference."""


def centres_input(sae: nn.Module) -> bool:
    """True when the SAE was trained on TransformerLens's residual with centred writing weights
    (sae-lens's ``model_from_pretrained_kwargs`` says ``center_writing_weights``: GPT-2 small's
    ``gpt2-small-res-jb`` releases). TransformerLens centres them only in models that read the
    residual through LayerNorms (it skips RMSNorm models); there that residual is the Hugging Face
    model's less its mean over the hidden dimension at each token. :func:`check_sae_fits` records
    which, for the model it places the SAE on."""
    fitted = _READS_CENTRED.get(sae)
    return _trained_centred(sae) if fitted is None else fitted


def _trained_centred(sae: nn.Module) -> bool:
    """What the SAE's metadata says: ``center_writing_weights`` among ``model_from_pretrained_kwargs``."""
    kwargs = getattr(getattr(sae.cfg, "metadata", None), "model_from_pretrained_kwargs", None) or {}
    return bool(kwargs.get("center_writing_weights", False))


_READS_CENTRED: "weakref.WeakKeyDictionary[nn.Module, bool]" = weakref.WeakKeyDictionary()
"""Whether each SAE checked against a model reads the residual centred (:func:`centres_input`)."""


def uses_layer_norm(model: nn.Module) -> bool:
    """Whether the model's blocks read the residual through LayerNorms (which remove its mean), not
    RMSNorms (which do not)."""
    return any("LayerNorm" in type(m).__name__ for m in decoder_layers(model)[0].modules())


def sae_input(sae: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The residual ``h`` as the SAE was trained to read it (:func:`centres_input`), in the SAE's
    dtype (centred in fp32 at least). What ``dec(relu(z + a)) − dec(z)`` adds is added to ``h``
    itself: a model whose SAE reads it centred reads it through LayerNorms, which remove the mean
    either way."""
    if not centres_input(sae):
        return h.to(sae.dtype)
    wide = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h
    return (wide - wide.mean(-1, keepdim=True)).to(sae.dtype)


def architecture_of_sae(sae: nn.Module) -> str:
    cfg = sae.cfg
    return cfg.architecture() if callable(getattr(cfg, "architecture", None)) else str(getattr(cfg, "architecture", ""))


def check_steerable(sae: nn.Module) -> None:
    """Refuse an SAE the method cannot steer exactly, saying why."""
    kind = architecture_of_sae(sae)
    if kind in BATCH_ARCHITECTURES:
        raise SAELoadError(
            f"SAE architecture {kind!r} ({sae_source(sae).describe()}) keeps the top k latents over the whole "
            "batch, so a token's code would depend on the tokens beside it; save it with sae-lens (it saves "
            "as a JumpReLU SAE) and load the saved SAE."
        )
    if kind not in STEERABLE_ARCHITECTURES:
        raise SAELoadError(
            f"SAE architecture {kind!r} ({sae_source(sae).describe()}) cannot be steered exactly: the method adds "
            "m·v to non-negative codes and decodes them linearly, which holds for "
            f"{', '.join(STEERABLE_ARCHITECTURES)} SAEs; use one of those."
        )
    if getattr(sae.cfg, "reshape_activations", "none") != "none":
        raise SAELoadError("this SAE reshapes its input (an attention hook_z SAE); only residual-stream SAEs "
                           "can be steered.")


LINEAR_NORMALISATIONS = ("none", "expected_average_only_in", "covariance_whitening")
"""sae-lens ``normalize_activations`` modes that ``decode`` does not undo per token (a fixed scale
at most; an inference SAE trained with ``covariance_whitening`` has the whitening folded into its
weights and reads the raw residual); the others (``layer_norm``, ``constant_norm_rescale``) keep the
input's scale from an ``encode`` for the next ``decode``."""


def decoder_is_linear(sae: nn.Module) -> bool:
    """True when ``decode(z) = z @ decoder_matrix(sae) + b_dec`` exactly, so the sparse identity
    applies (and the fast engine and dense exports with it): no input normalisation that
    ``decode`` undoes per token (``layer_norm``, ``constant_norm_rescale``)."""
    return (sae.cfg.normalize_activations in LINEAR_NORMALISATIONS
            and getattr(sae.cfg, "reshape_activations", "none") == "none"
            and isinstance(getattr(sae, "W_dec", None), torch.Tensor)
            and architecture_of_sae(sae) in STEERABLE_ARCHITECTURES)


def encode_is_stateful(sae: nn.Module | None) -> bool:
    """True when ``encode`` stores the input's scale on the SAE for the next ``decode``
    (any mode outside :data:`LINEAR_NORMALISATIONS`): two threads must not encode with it at once."""
    return sae is not None and sae.cfg.normalize_activations not in LINEAR_NORMALISATIONS


def decoder_matrix(sae: nn.Module) -> torch.Tensor:
    """The matrix ``decode`` multiplies codes by: ``W_dec``, with each row divided by its norm when
    the SAE rescales activations by the decoder norm (a TopK SAE saved with ``save_model``)."""
    W = sae.W_dec
    if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        W = W / W.norm(dim=-1, keepdim=True)
    return W
