"""Saving and loading steering vectors (safetensors, never pickle) and llama.cpp GGUF export.

A vector file holds one tensor, ``vector``, and string metadata that explains it: method, kind,
model id, layer, hook name, SAE release and id (or path), widths, default multiplier, training
settings and library version. :func:`load_vector` checks it against the model and SAE it is
going to be applied to and says what does not match.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from . import checks
from ._version import __version__
from .architectures import num_layers
from .errors import SettingsError, VectorFileError, YapoError
from .hooks import hook_point_from_name
from .models import model_blocks_fingerprint, model_fingerprint, same_weights
from .models import model_id as model_id_of
from .saes import SAESource, sae_encoding_fingerprint, sae_fingerprint, sae_latents_fingerprint
from .steering import FORMULAS, SteeringVector, dense_equivalent

KEPT_METADATA = ("training", "steps", "library_version", "data_report", "d_sae", "d_model", "model_fingerprint",
                 "model_blocks", "model_type", "n_layers", "sae_fingerprint", "sae_latents", "sae_encoding", "n_pairs",
                 "position", "tau")
"""Metadata a loaded vector keeps (the rest is derived from its fields when it is saved again)."""

FORMAT = "yapo-steering-vector"
FORMAT_VERSION = "1"
MAX_HEADER_BYTES = 100 * 1024 * 1024


def _check_not_pickle(path: Path) -> None:
    """Refuse files that are not safetensors before any parser sees them.

    A safetensors file opens with its header's length (8 bytes, little-endian) and the header's
    JSON (``{``). ``torch.save`` files are zip archives ("PK") or raw pickles (first byte 0x80);
    opening either with ``torch.load`` can run arbitrary code, so they are never opened.
    """
    with open(path, "rb") as f:
        head, opening = f.read(8), f.read(1)
    size = int.from_bytes(head, "little") if len(head) == 8 else 0
    if opening == b"{" and 2 <= size <= MAX_HEADER_BYTES:  # a safetensors header: its length, then JSON
        if size > path.stat().st_size - 8:  # (a length of 1408 starts with 0x80 too, as a pickle does)
            raise VectorFileError(
                f"{path.name!r} is a truncated safetensors file: its header alone should take {size} bytes and the "
                f"file has {path.stat().st_size - 8} after the length. Copy or download it again."
            )
        return
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise VectorFileError(
            f"{path.name!r} is a pickle/torch.save file; pickles can run code when loaded and are "
            "never opened. Convert it to .safetensors where it was made (safetensors.torch.save_file)."
        )
    if head[:4] == b"GGUF":
        raise VectorFileError(
            f"{path.name!r} is a GGUF file (a llama.cpp control vector), which is written for llama.cpp and not read "
            "back: it holds the dense decoding at one multiplier. Load the .safetensors vector it was exported from."
        )
    if len(head) < 8 or int.from_bytes(head, "little") > MAX_HEADER_BYTES:
        raise VectorFileError(f"{path.name!r} is not a safetensors file (bad header).")


def open_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file, after the pickle check."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.is_dir():
        raise VectorFileError(f"{str(path)!r} is a folder; give the .safetensors file in it.")
    if not path.is_file():
        raise VectorFileError(f"file {str(path)!r} does not exist.")
    _check_not_pickle(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise VectorFileError(f"{path.name!r} is not a readable safetensors file: {exc}") from exc


def vector_metadata(vector: SteeringVector, sae: nn.Module | None = None) -> dict[str, str]:
    sae = sae if sae is not None else vector.sae
    source = vector.sae_source
    meta = {
        **{k: str(v) for k, v in vector.metadata.items()},
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": vector.kind,
        "method": vector.method,
        "model_id": vector.model_id,
        "layer": str(vector.layer),
        "hook_name": vector.hook_name,
        "width": str(vector.width),
        "default_multiplier": repr(float(vector.default_multiplier)),
        "sae_release": source.release or "",
        "sae_id": source.sae_id or "",
        "sae_path": source.path or "",
        "sae_neuronpedia_id": source.neuronpedia_id or "",
    }
    point = hook_point_from_name(vector.hook_name)
    meta.update({  # enough for another tool to apply the file without guessing
        "operation": ("add m·v to the SAE's latent codes and decode: " if vector.kind == "sparse"
                      else "add m·v to the residual stream: ") + FORMULAS[vector.kind],
        "hook_point": f"{'output' if point.position == 'post' else 'input'} of decoder block {point.layer}",
        "layer_numbering": "0-based decoder blocks; 'layer' is the block whose output is steered "
                           "(the input of block L is the output of block L-1)",
        "positions": "every token: each prompt token and each generated token",
    })
    if sae is not None and vector.kind == "sparse":  # a dense vector lives in the residual stream, not the SAE's space
        meta["d_sae"] = str(sae.cfg.d_sae)
        meta["d_model"] = str(sae.cfg.d_in)
        meta.setdefault("sae_fingerprint", sae_fingerprint(sae))
        meta.setdefault("sae_latents", sae_latents_fingerprint(sae))
        meta.setdefault("sae_encoding", sae_encoding_fingerprint(sae))
    if "library_version" not in meta:
        meta["library_version"] = __version__
    return meta


def check_output_path(path: str | Path, example: str = "vector.safetensors") -> Path:
    """Refuse a path a file could not be written to (a folder, or under a folder this process
    cannot write), naming it and the fix; callers check before long work, not after."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise VectorFileError(f"output path {path!r} is empty; give a file name such as {example!r}.")
    path = Path(path).expanduser()
    if path.is_dir():
        raise VectorFileError(f"{str(path)!r} is a folder; give a file name such as {str(path / example)!r}.")
    folder = next((p for p in [path.parent, *path.parent.parents] if p.exists()), Path("."))
    problem = f"{str(folder)!r} is a file" if not folder.is_dir() else checks.unwritable(folder)
    if problem:
        raise VectorFileError(f"{str(path)!r} cannot be written ({problem}); choose another path.")
    return path


def save_vector(vector: SteeringVector, path: str | Path, sae: nn.Module | None = None) -> Path:
    """Write ``vector`` to a ``.safetensors`` file with self-describing metadata."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = check_output_path(path)
    values, meta = vector.values.detach().cpu().contiguous(), vector_metadata(vector, sae)
    # written beside under a name of its own, then renamed: an interrupted write never leaves a
    # half file under the name, and two writers of one name never write into one file
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    try:
        save_file({"vector": values}, partial, metadata=meta)
        checks.made_as_usual(partial)  # safetensors writes owner-only; a vector file is for sharing
        os.replace(partial, path)
    except (OSError, SafetensorError) as exc:  # a full disk: said as such, and no partial file left behind
        Path(partial).unlink(missing_ok=True)
        raise VectorFileError(f"could not write {str(path)!r}: {exc}") from exc
    return path


def load_vector(
    path: str | Path,
    model: nn.Module | None = None,
    sae: nn.Module | None = None,
    allow_other_model: bool = False,
) -> SteeringVector:
    """Read a vector file; with ``model`` (and ``sae`` for sparse vectors) check that it fits.

    Refused, with the reason: another model (unless ``allow_other_model``), a layer the model
    does not have, another SAE (release/id or width), a wrong shape.
    """
    tensors, meta = open_safetensors(path)
    name = Path(path).name
    if {"v", "order_rng", "sign_rng"} <= set(tensors):
        raise VectorFileError(f"{name!r} is a training checkpoint, which continues a run (yapo train --resume, "
                              "Trainer.load_checkpoint); the vector to apply is the .safetensors file the run wrote.")
    if meta.get("format") != FORMAT or "vector" not in tensors:
        raise VectorFileError(
            f"{name!r} is a safetensors file but not a YaPO Studio steering vector (no 'vector' "
            "tensor / format metadata)."
        )
    if meta.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise VectorFileError(f"{name!r} is a vector file of format version {meta['format_version']!r}, which this "
                              f"YaPO Studio ({__version__}, format version {FORMAT_VERSION}) cannot read; load it with "
                              "the YaPO Studio that wrote it, or a newer one.")
    missing = [key for key in ("kind", "hook_name", "width") if not meta.get(key)]
    if missing:
        raise VectorFileError(f"{name!r} lacks the metadata {', '.join(missing)}; write it with "
                              "yapo_core.save_vector, which records how to apply the vector.")
    values = tensors["vector"]
    if values.ndim != 1 or str(values.numel()) != meta.get("width"):
        raise VectorFileError(f"{name!r}: the vector's shape {tuple(values.shape)} disagrees with its metadata.")
    if not values.is_floating_point():
        raise VectorFileError(f"{name!r} holds {values.dtype} values, not floating-point numbers: it is not a steering vector.")
    finite = torch.isfinite(values)
    if finite.all() and not torch.isfinite(values.float().norm()):
        raise VectorFileError(f"{name!r} holds values so large (up to {values.abs().max().item():.3g}) that its norm "
                              "overflows: it cannot steer anything.")
    if not finite.all():
        bad = int((~finite).sum())
        raise VectorFileError(f"{name!r} holds {bad} non-finite value(s) (NaN or infinity): it cannot steer anything; "
                              "use the last good vector of the run that wrote it.")
    vector = SteeringVector(
        kind=meta["kind"],
        values=values,
        hook_name=meta["hook_name"],
        method=meta.get("method", ""),
        model_id=meta.get("model_id", ""),
        sae_source=SAESource(
            release=meta.get("sae_release") or None,
            sae_id=meta.get("sae_id") or None,
            path=meta.get("sae_path") or None,
            neuronpedia_id=meta.get("sae_neuronpedia_id") or None,
        ),
        default_multiplier=_default_multiplier(meta.get("default_multiplier", "1.0"), name),
        metadata={k: v for k, v in meta.items() if k in KEPT_METADATA},
        sae=sae if meta["kind"] == "sparse" else None,
    )
    if model is not None:
        check_vector_matches(vector, model, sae, allow_other_model, name)
    return vector


def _default_multiplier(text: str, name: str) -> float:
    try:
        return checks.multipliers([text], "default_multiplier")[0]
    except Exception:
        raise VectorFileError(f"{name!r}: its default_multiplier {text!r} is not a finite number; rewrite the file with "
                              "yapo_core.save_vector.") from None


def check_vector_matches(vector, model, sae=None, allow_other_model=False, name="vector") -> None:
    """Raise :class:`VectorFileError` naming the first mismatch between vector, model and SAE."""
    here = model_id_of(model)
    theirs_weights = vector.metadata.get("model_fingerprint")
    if theirs_weights:  # the weights decide: a moved or re-built folder of the same weights is the same model
        other = not same_weights(theirs_weights, model_fingerprint(model))
        blocks = vector.metadata.get("model_blocks")  # every block's; files written before it was recorded have none
        other = other or bool(blocks and not same_weights(blocks, model_blocks_fingerprint(model)))
    else:
        other = bool(vector.model_id and here and vector.model_id != here)
    if other and not allow_other_model:
        raise VectorFileError(
            f"{name} was trained on model {vector.model_id!r} but is being applied to {here!r}, whose weights "
            "differ; load the matching model, or pass allow_other_model=True if you mean to."
        )
    n = num_layers(model)
    point = hook_point_from_name(vector.hook_name)
    if point.layer >= n:
        raise VectorFileError(f"{name} steers layer {point.layer} but this model has only {n} blocks (0..{n - 1}).")
    if vector.kind == "sparse" and sae is not None:
        vector.check_sae(sae, name)
    try:
        vector.check_fits(model, sae)
    except YapoError as exc:  # the vector's own misfit; a defect elsewhere surfaces as itself
        raise VectorFileError(f"{name} does not fit: {exc}") from exc


def _gguf_architecture(model_type: str) -> str:
    """``model_type`` as llama.cpp names the architecture (``qwen3_moe`` → ``qwen3moe``; ``mistral``
    and ``mixtral`` → ``llama`` and ``gemma3_text`` → ``gemma3``, as its converter writes them); a
    type it does not know, as given."""
    import gguf

    known = set(gguf.MODEL_ARCH_NAMES.values())
    joined = {"mistral": "llama", "mixtral": "llama", "gemma3_text": "gemma3"}.get(model_type, model_type.replace("_", ""))
    return joined if joined in known else model_type


def _recorded_depth(recorded: str | None, layer: int) -> int:
    """The model depth a vector file recorded, at least ``layer + 1`` (older or edited files: that)."""
    try:
        return max(int(recorded), layer + 1) if recorded else layer + 1
    except ValueError:
        return layer + 1


def check_gguf_path(path: str | Path) -> Path:
    """:func:`check_output_path` for a llama.cpp control vector, which must be named ``.gguf``."""
    path = check_output_path(path, "vector.gguf")
    if path.suffix.lower() != ".gguf":
        raise VectorFileError(f"{str(path)!r}: a llama.cpp control vector is a GGUF file; name it with .gguf (e.g. "
                              f"{path.with_suffix('.gguf').name!r}). The .safetensors vector is the one training writes.")
    return path


def export_gguf(
    vector: SteeringVector,
    path: str | Path,
    model: nn.Module | None = None,
    sae: nn.Module | None = None,
    multiplier: float = 1.0,
    model_hint: str | None = None,
    allow_other_model: bool = False,
) -> dict[str, float | str]:
    """Write a llama.cpp control vector (GGUF) for ``vector`` at ``multiplier``.

    llama.cpp adds ``direction.L`` to the output of block L at every token, L ≥ 1. A sparse
    vector is exported as its dense decoding ``relu(m·v) @ W_dec``, exact only when ``m·v ≥ 0``;
    the share of the vector it had to drop is returned (``dropped_fraction``).
    """
    import gguf
    import numpy as np

    checks.multipliers([multiplier], "multiplier")
    if multiplier == 0:
        raise SettingsError("a control vector at multiplier 0 is all zeros and steers nothing; give the multiplier to "
                            "bake in (1 is the vector as trained).")
    check_gguf_path(path)
    if model is not None:  # the model names the file's layer count and hint: it must be the vector's
        check_vector_matches(vector, model, sae, allow_other_model)
    elif vector.kind == "sparse" and sae is not None:
        vector.check_sae(sae)
    layer = vector.layer
    if layer < 1:
        raise VectorFileError("llama.cpp control vectors cannot steer block 0 (its layers start at 1); train the "
                              "vector at a later block (an SAE hooked there, or a dense vector's layer of 1 or more).")
    delta, dropped = dense_equivalent(vector, sae, multiplier)
    if not bool(delta.any()):
        if not bool(vector.values.any()):
            raise SettingsError("this vector is all zeros: it steers nothing, and there is nothing to export.")
        raise SettingsError(
            f"at multiplier {multiplier:g} every latent this sparse vector moves is lowered, and lowering a latent "
            "has no fixed dense equivalent, so no control vector steers like it at this sign (the file would be "
            "all zeros). Steer with its .safetensors file (YaPO Studio, yapo_core) at this sign instead.")
    # the hint is informational (llama.cpp's loader reads only the direction tensors): the model's
    # architecture as llama.cpp names it, which cvector-generator writes; without the model, the type
    # and depth its vector file recorded (older files: the model id's last part, and block L + 1)
    meta = vector.metadata
    hint = model_hint or _gguf_architecture(model.config.model_type if model is not None else meta.get("model_type")
                                            or Path(vector.model_id or "unknown").name)
    n_layers = num_layers(model) if model is not None else _recorded_depth(meta.get("n_layers"), layer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)  # renamed when whole, as save_vector does; a name of its own per export
    partial = Path(partial)
    writer = gguf.GGUFWriter(str(partial), "controlvector")
    try:
        writer.add_string("controlvector.model_hint", hint)
        writer.add_uint32("controlvector.layer_count", n_layers)
        writer.add_string("controlvector.method", vector.method)
        writer.add_string("yapo.metadata", json.dumps(vector_metadata(vector, sae)))
        writer.add_float32("yapo.dropped_fraction", float(dropped))
        writer.add_tensor(f"direction.{layer}", delta.numpy().astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        checks.made_as_usual(partial)  # mkstemp makes it owner-only; a control vector is for sharing
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return {"path": str(path), "layer": layer, "dropped_fraction": dropped, "norm": float(delta.norm())}
