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
    """Attribute paths (dotted, from the ``*ForCausalLM`` module) of one model family, and what its
    head does to the logits besides the final norm and the unembedding."""

    name: str
    model_types: tuple[str, ...]
    layers: str = "model.layers"  # the ModuleList of decoder blocks
    final_norm: str = "model.norm"  # the norm applied after the last block, before the unembedding
    lm_head: str = "lm_head"  # the unembedding
    softcaps_logits: bool = True  # the head applies the config's final_logit_softcapping when set
    logit_multiplier: str | None = None  # config attribute the head multiplies the logits by
    logit_divisor: str | None = None  # config attribute the head divides the logits by
    # how the family applies ``config.sliding_window``: "none" (never, whatever the config holds),
    # "every_block" (to all blocks), or "layer_types" (to the blocks ``config.layer_types`` names
    # "sliding_attention"); the fast engine builds its own masks and must window as the model does
    windows: str = "none"

    @property
    def base(self) -> str:
        """Path of the base (headless) model, e.g. ``model`` or ``transformer``."""
        return self.layers.rsplit(".", 1)[0]


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture("llama", ("llama",)),
    Architecture("mistral", ("mistral", "mixtral"), windows="every_block"),
    Architecture("qwen2", ("qwen2", "qwen3"), windows="layer_types"),
    Architecture("qwen3_moe", ("qwen3_moe",), windows="every_block"),
    Architecture("gemma", ("gemma",)),
    Architecture("gemma2", ("gemma2", "gemma3_text"), windows="layer_types"),  # Gemma-2 soft-caps its logits
    # Gemma-3 with its vision tower: the text blocks sit under the language model; this head does
    # not soft-cap
    Architecture("gemma3", ("gemma3",), layers="model.language_model.layers", final_norm="model.language_model.norm",
                 softcaps_logits=False, windows="layer_types"),
    Architecture("phi3", ("phi3",), windows="every_block"),
    Architecture("olmo2", ("olmo2",)),
    Architecture("stablelm", ("stablelm",)),
    Architecture("granite", ("granite",), logit_divisor="logits_scaling"),
    Architecture("cohere", ("cohere",), logit_multiplier="logit_scale"),
    Architecture("gpt2", ("gpt2",), layers="transformer.h", final_norm="transformer.ln_f"),
    Architecture("gpt_neox", ("gpt_neox",), layers="gpt_neox.layers", final_norm="gpt_neox.final_layer_norm"),
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
        "naming its decoder blocks, final norm and unembedding, and how its head scales the logits."
    )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    return model.get_submodule(architecture_of(model).layers)


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def text_config(model: nn.Module):
    """The config of the language model itself (a multimodal model's ``text_config``)."""
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def hidden_size(model: nn.Module) -> int:
    cfg = text_config(model)
    return int(getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd"))


def context_length(model: nn.Module) -> int | None:
    """The longest sequence the model's positions cover (None when its config does not say)."""
    cfg = text_config(model)
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def length_dependent_rope(model: nn.Module) -> tuple[str, int] | None:
    """A rotary encoding whose frequencies follow the longest sequence of the batch it runs on:
    its type ("dynamic", "longrope") and the length past which they change; None otherwise. Below
    that length every batch runs at the same frequencies."""
    cfg = text_config(model)
    params = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    per_type = [p for p in params.values() if isinstance(p, dict)]  # one set per attention type (Gemma-3)
    for p in per_type or [params]:
        kind = p.get("rope_type") or p.get("type")
        if kind == "longrope":
            return kind, int(p.get("original_max_position_embeddings")
                             or getattr(cfg, "original_max_position_embeddings", None) or cfg.max_position_embeddings)
        if kind == "dynamic":
            return kind, int(cfg.max_position_embeddings)
    return None


LONGEST = 8192
"""Tokens read at most when neither the caller nor the model names a length."""


def capped_length(model: nn.Module, max_length: int | None) -> int:
    """``max_length``, capped by the model's context (positions past it do not exist); ``None``:
    the model's context (:data:`LONGEST` when it states none)."""
    context = context_length(model)
    wanted = max_length if max_length is not None else LONGEST
    return min(wanted, context) if context else wanted


def logit_softcap(model: nn.Module) -> float | None:
    """Gemma-2 squashes final logits with ``cap * tanh(logits / cap)``; None elsewhere."""
    if not architecture_of(model).softcaps_logits:
        return None
    return getattr(text_config(model), "final_logit_softcapping", None) or None


def check_layer(model: nn.Module, layer: int) -> int:
    n = num_layers(model)
    if not isinstance(layer, int) or not 0 <= layer < n:
        raise SettingsError(
            f"layer {layer!r} is out of range: this model has {n} decoder blocks, so choose a "
            f"layer from 0 to {n - 1}."
        )
    return layer


def unembed(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Final norm, unembedding, the head's logit scaling (Granite, Cohere) and soft-capping
    (Gemma-2): what the LM head does to a residual."""
    arch = architecture_of(model)
    logits = model.get_submodule(arch.lm_head)(model.get_submodule(arch.final_norm)(hidden))
    if arch.logit_multiplier:
        logits = logits * getattr(text_config(model), arch.logit_multiplier)
    if arch.logit_divisor:
        logits = logits / getattr(text_config(model), arch.logit_divisor)
    cap = logit_softcap(model)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
