"""Loading causal LMs and tokenizers from the Hugging Face Hub or a local folder."""

from __future__ import annotations

import json
import os
import re
import weakref
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from .architectures import architecture_of, decoder_layers
from .errors import ModelLoadError, SettingsError
from .hub import explain_hub_error, require_hub

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def resolve_device(device: str | None = None) -> str:
    """``"auto"``/None picks cuda, then mps, then cpu; anything else is checked and returned."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if not isinstance(device, str) or not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
        raise SettingsError(f"device {device!r} is unknown; use auto, cpu, cuda, cuda:N or mps.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError(f"device {device!r} was asked for but no CUDA GPU is visible; use 'cpu'.")
    if device == "mps" and not torch.backends.mps.is_available():
        raise SettingsError("device 'mps' was asked for but Metal is not available; use 'cpu'.")
    return device


def use_available_cores() -> int:
    """Let torch use the cores this process may run on: its CPU affinity, or a container's CPU
    quota where that is smaller (``docker run --cpus=2``, a Space's or a pod's limit, which the
    affinity does not show), unless the user chose with ``OMP_NUM_THREADS``; returns the thread count."""
    if not os.environ.get("OMP_NUM_THREADS"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        quota = cpu_quota()
        torch.set_num_threads(max(1, min(cores, quota) if quota else cores))
    return torch.get_num_threads()


CGROUP_QUOTAS = (("/sys/fs/cgroup/cpu.max", None),  # cgroup v2: "<quota> <period>" or "max <period>"
                 ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"))  # cgroup v1


def cpu_quota() -> int | None:
    """The cores a container's CPU quota allows (rounded up), or ``None`` where none is set."""
    import math

    for path, period_path in CGROUP_QUOTAS:
        try:
            text = Path(path).read_text().split()
            quota, period = text[0], (text[1] if period_path is None else Path(period_path).read_text().strip())
            if quota not in ("max", "-1") and float(period) > 0:
                return max(1, math.ceil(float(quota) / float(period)))
        except (OSError, IndexError, ValueError):
            continue
    return None


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise SettingsError(f"dtype {dtype!r} is unknown; use one of {sorted(DTYPES)}.") from None


def load_model(
    source: str | os.PathLike,
    device: str | None = "auto",
    dtype: str | torch.dtype = "fp32",
    trust_remote_code: bool = False,
    token: str | None = None,
    device_map: str | dict | None = None,
    offload_folder: str | os.PathLike | None = None,
):
    """Load ``(model, tokenizer)`` from a Hugging Face id or a local folder, in eval mode.

    The model is frozen (``requires_grad_(False)``): only steering vectors are ever trained.
    ``device_map="auto"`` (accelerate) spreads a model over several GPUs instead of ``device``;
    put the SAE beside the steered block with :func:`yapo_core.saes.place_sae`. Blocks that fit
    nowhere are offloaded to ``offload_folder`` (device ``"disk"`` in a ``device_map`` dict).
    """
    source = str(source)
    local = is_local_source(source)
    if local:
        check_model_folder(Path(source).expanduser())
    else:
        require_hub("model", source, ModelLoadError)  # online, an unreachable Hub is retried for minutes
    torch_dtype = resolve_dtype(dtype)
    kwargs = dict(trust_remote_code=trust_remote_code, token=token or os.environ.get("HF_TOKEN"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as exc:  # tokenizers fail in many ways; each means "no usable tokenizer here"
        if local:
            raise ModelLoadError(f"model folder {source!r} has no usable tokenizer ({type(exc).__name__}: {exc}); "
                                 "save it beside the weights with tokenizer.save_pretrained.") from exc
        raise ModelLoadError(explain_hub_error("model", source, exc)) from exc
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch_dtype, device_map=device_map,
            **({"offload_folder": str(offload_folder)} if offload_folder else {}), **kwargs
        )
    except Exception as exc:  # a cut-short or corrupt weights file raises the safetensors library's own error
        if local:
            raise ModelLoadError(f"the weights in model folder {source!r} could not be read ({type(exc).__name__}: "
                                 f"{exc}); the files may be incomplete: copy or save them again.") from exc
        raise ModelLoadError(explain_hub_error("model", source, exc)) from exc
    if device_map is None:
        model.to(resolve_device(device))
    prepare_model(model)
    prepare_tokenizer(tokenizer)
    check_weights(model, f"model {source!r}", ModelLoadError)
    return model, tokenizer


def check_weights(module: nn.Module, name: str, error=ModelLoadError) -> None:
    """Refuse a model without blocks, or weights that hold NaN or infinite values (a broken save
    or conversion: every output would be NaN). One pass over the weights; offloaded ones are skipped."""
    if hasattr(module, "config") and not decoder_layers(module):
        raise error(f"{name} has no decoder blocks (its config says num_hidden_layers=0); check config.json.")
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all():
                raise error(f"the weights of {name} hold NaN or infinite values ({key}); the files are broken: "
                            "download or save them again.")


def is_local_source(source: str) -> bool:
    """Whether ``source`` names a local folder (a path, or an existing one) rather than a hub id."""
    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists()


WEIGHT_FILES = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def check_model_folder(folder: Path) -> None:
    """A local model folder must exist and hold a config and weights, whatever its tokenizer."""
    if not folder.exists():
        raise ModelLoadError(f"model folder {str(folder)!r} does not exist; check the path.")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"model folder {str(folder)!r} has no config.json; point to a folder written by "
                             "save_pretrained.")
    if not any(any(folder.glob(pattern)) for pattern in WEIGHT_FILES):
        raise ModelLoadError(f"model folder {str(folder)!r} has a config.json but no weights (*.safetensors or *.bin); "
                             "copy the weight files into it.")


def prepare_model(model: nn.Module) -> nn.Module:
    """Freeze and switch to eval mode (no dropout); checks the architecture is supported."""
    architecture_of(model)
    model.eval()
    model.requires_grad_(False)
    return model


def prepare_tokenizer(tokenizer):
    """Give the tokenizer a pad token (its eos) when it has none; padding side is set per use."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def model_id(model: nn.Module) -> str:
    """The Hugging Face id the model was loaded from, or for a local folder its last two path
    parts (never the absolute path: vector files name their model without leaking the user's
    home); the weights themselves are identified by :func:`weights_fingerprint`."""
    source = str(getattr(model.config, "_name_or_path", "") or model.config.model_type)
    if is_local_source(source):
        return "/".join(Path(source).expanduser().resolve().parts[-2:])
    return source


def weights_fingerprint(tensors) -> str:
    """What identifies weights whatever their dtype or device: each tensor's shape and the sum of
    its absolute values (compared with a relative tolerance by :func:`same_weights`). A tensor
    offloaded from the devices (on ``meta``: accelerate keeps its values elsewhere) has its shape
    and no sum."""
    return json.dumps([[list(t.shape), None if t.device.type == "meta"
                        else round(float(t.detach().abs().sum(dtype=torch.float64)), 6)] for t in tensors])


_FINGERPRINTS: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple[tuple, str]]]" = weakref.WeakKeyDictionary()

PROBES = 8
"""Values read from each tensor for :func:`module_fingerprint`'s memo (see :func:`_probes`)."""


def module_fingerprint(owner: nn.Module, tensors, compute: Callable[[list], str] = weights_fingerprint) -> str:
    """``compute(tensors)`` (default :func:`weights_fingerprint`) of ``owner``'s ``tensors``, computed
    once and reused until one of them is replaced or changed in place, also through ``.data`` (a
    vector is built on every look at a running training, and a 65k SAE's matrices are large)."""
    tensors = list(tensors)
    which = (compute, tuple((t.data_ptr(), tuple(t.shape)) for t in tensors))  # one memo per function and tensors
    state = (tuple(t._version for t in tensors), _probes(tensors))
    seen = _FINGERPRINTS.setdefault(owner, {})
    if which not in seen or seen[which][0] != state:
        seen[which] = (state, compute(tensors))
    return seen[which][1]


@torch.no_grad()
def _probes(tensors: list[torch.Tensor]) -> tuple[float, ...]:
    """:data:`PROBES` values spread over each tensor (meta ones have none), read in one transfer:
    an edit through ``.data`` (sae-lens folds its scaling factors so) changes them but not the
    tensors' version counters. Indices are whole numbers: in float32 the last one of a tensor of
    more than 2**24 values would round past its end."""
    picked: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:
        n = t.numel()
        if n == 0 or t.device.type == "meta":
            continue
        flat = t.detach().reshape(-1)  # a view: parameters are contiguous
        index = torch.tensor(sorted({k * (n - 1) // (PROBES - 1) for k in range(PROBES)}), device=t.device)
        picked.setdefault(t.device, []).append(flat.index_select(0, index).float())
    # one copy to the host per device (a GPU waits once, not once per tensor)
    return tuple(v for parts in picked.values() for v in torch.cat(parts).tolist())


def same_weights(a: str, b: str, rtol: float = 1e-3) -> bool:
    """Whether two :func:`weights_fingerprint` strings describe the same weights. The tolerance
    covers a model loaded in another dtype (bf16 or fp16 moves these sums by under 1e-4) and not a
    fine-tune that moves them by a tenth of a percent or more. A tensor without a sum (offloaded)
    is compared by its shape; a record that cannot be read matches nothing."""
    try:
        x, y = json.loads(a), json.loads(b)
        return len(x) == len(y) and all(
            sx == sy and (vx is None or vy is None or abs(vx - vy) <= rtol * max(abs(vx), abs(vy), 1e-12))
            for (sx, vx), (sy, vy) in zip(x, y))
    except (TypeError, ValueError):
        return False


def model_fingerprint(model: nn.Module) -> str:
    """:func:`weights_fingerprint` of the first two tensors of the first and the last block."""
    blocks = decoder_layers(model)
    return module_fingerprint(model, list(blocks[0].parameters())[:2] + list(blocks[-1].parameters())[:2])


def model_blocks_fingerprint(model: nn.Module) -> str:
    """:func:`weights_fingerprint` of every block's tensors (each summed once, computed once per
    model): what :func:`model_fingerprint`, which reads the first and the last block, cannot see,
    a fine-tune of the blocks between them (its own key, so that files recording only the first
    keep their meaning). An offloaded block's tensors count by their shape."""
    return module_fingerprint(model, [t for block in decoder_layers(model) for t in block.parameters()])
