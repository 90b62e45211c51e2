"""Where each supported architecture keeps its decoder blocks, final norm and unembedding.

All architecture differences of the project live in the ``ARCHITECTURES`` table below; code
elsewhere asks :func:`architecture_of` and never branches on model names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import ModelLoadError, SettingsError


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
