"""Where each supported architecture keeps its decoder blocks, final norm and unembedding.

All architecture differences of the project live in the ``ARCHITECTURES`` table below; code
elsewhere asks :func:`architecture_of` and never branches on model names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from .errors import ModelLoadError, SAELoadError, SettingsError


@dataclass(frozen=True)
class Architecture:
    """Attribute paths (dotted, from the ``*ForCausalLM`` module) of one model family."""

    name: str
    model_types: tuple[str, ...]
    layers: str  # the ModuleList of decoder blocks
    final_norm: str  # the norm applied after the last block, before the unembedding
    embed: str  # the token embedding
    lm_head: str  # the unembedding
    rotary: str | None = None  # the rotary-embedding module shared by all blocks, if any
    position_embed: str | None = None  # learned absolute positions (GPT-2), if any
    embed_scale_by_sqrt_d: bool = False  # Gemma multiplies embeddings by sqrt(hidden)

    @property
    def base(self) -> str:
        """Path of the base (headless) model, e.g. ``model`` or ``transformer``."""
        return self.layers.rsplit(".", 1)[0]


_LLAMA_LIKE = dict(
    layers="model.layers",
    final_norm="model.norm",
    embed="model.embed_tokens",
    lm_head="lm_head",
    rotary="model.rotary_emb",
)

ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture("llama", ("llama",), **_LLAMA_LIKE),
    Architecture("mistral", ("mistral", "mixtral"), **_LLAMA_LIKE),
    Architecture("qwen2", ("qwen2", "qwen3"), **_LLAMA_LIKE),
    Architecture("gemma2", ("gemma", "gemma2"), embed_scale_by_sqrt_d=True, **_LLAMA_LIKE),
    Architecture(
        "gpt2",
        ("gpt2",),
        layers="transformer.h",
        final_norm="transformer.ln_f",
        embed="transformer.wte",
        lm_head="lm_head",
        position_embed="transformer.wpe",
    ),
    Architecture(
        "gpt_neox",
        ("gpt_neox",),
        layers="gpt_neox.layers",
        final_norm="gpt_neox.final_layer_norm",
        embed="gpt_neox.embed_in",
        lm_head="lm_head",
        rotary="gpt_neox.rotary_emb",
    ),
)

SUPPORTED_MODEL_TYPES = tuple(t for a in ARCHITECTURES for t in a.model_types)


def architecture_of(model: nn.Module) -> Architecture:
    """The table row for ``model`` (by ``config.model_type``), or a clear error."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for arch in ARCHITECTURES:
        if model_type in arch.model_types:
            return arch
    raise ModelLoadError(
        f"model type {model_type!r} is not supported; supported types: "
        f"{', '.join(SUPPORTED_MODEL_TYPES)}. Add a row to yapo_core.architectures.ARCHITECTURES "
        "naming its decoder blocks, final norm, embedding and unembedding."
    )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    return model.get_submodule(architecture_of(model).layers)


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def hidden_size(model: nn.Module) -> int:
    cfg = model.config
    return int(getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd"))


def logit_softcap(model: nn.Module) -> float | None:
    """Gemma-2 squashes final logits with ``cap * tanh(logits / cap)``; None elsewhere."""
    return getattr(model.config, "final_logit_softcapping", None) or None


@dataclass(frozen=True)
class HookPoint:
    """A point of the residual stream: the output (``post``) or input (``pre``) of a block."""

    layer: int
    position: str  # "post" or "pre"

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_resid_{self.position}"

    @property
    def resid_layer(self) -> int:
        """The block whose output this point is (``pre`` of block L is the output of L-1)."""
        return self.layer if self.position == "post" else self.layer - 1


_TL_NAME = re.compile(r"^blocks\.(\d+)\.hook_resid_(post|pre)$")
_HF_NAME = re.compile(r"^([A-Za-z_][\w.]*?)\.(\d+)(?:\.(output|input))?$")


def hook_point_from_name(hook_name: str) -> HookPoint:
    """The residual-stream point a sae-lens hook name denotes, without needing the model.

    Accepts TransformerLens names (``blocks.L.hook_resid_post``/``hook_resid_pre``) and the
    Hugging Face module names sae-lens uses for AutoModel SAEs (``model.layers.L``,
    ``model.layers.L.output``, ``model.layers.L.input``).
    """
    match = _TL_NAME.match(hook_name)
    if match:
        return HookPoint(int(match.group(1)), match.group(2))
    match = _HF_NAME.match(hook_name)
    if match and not match.group(1).startswith("blocks"):
        return HookPoint(int(match.group(2)), "pre" if match.group(3) == "input" else "post")
    raise SAELoadError(
        f"hook {hook_name!r} is not a residual-stream point this project can steer; use "
        "'blocks.L.hook_resid_post', 'blocks.L.hook_resid_pre' or the model's '<layers>.L'."
    )


def parse_hook_name(model: nn.Module, hook_name: str) -> HookPoint:
    """:func:`hook_point_from_name`, checked against ``model``'s layer path and depth."""
    point = hook_point_from_name(hook_name)
    hf = _HF_NAME.match(hook_name)
    layers_path = architecture_of(model).layers
    if hf and not hook_name.startswith("blocks.") and hf.group(1) != layers_path:
        raise SAELoadError(
            f"hook {hook_name!r} names modules under {hf.group(1)!r}, but this model keeps its "
            f"blocks under {layers_path!r}: the SAE was made for another architecture."
        )
    check_layer(model, point.layer)
    return point


def check_layer(model: nn.Module, layer: int) -> int:
    n = num_layers(model)
    if not isinstance(layer, int) or not 0 <= layer < n:
        raise SettingsError(
            f"layer {layer!r} is out of range: this model has {n} decoder blocks, so choose a "
            f"layer from 0 to {n - 1}."
        )
    return layer


def unembed(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Final norm, unembedding and (Gemma-2) soft-capping: what the LM head does to a residual."""
    arch = architecture_of(model)
    logits = model.get_submodule(arch.lm_head)(model.get_submodule(arch.final_norm)(hidden))
    cap = logit_softcap(model)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
