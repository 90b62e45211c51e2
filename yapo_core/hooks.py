"""Where a hook sits on the residual stream, and the two things done there: steer and read.

A :class:`HookPoint` is the output (``post``) or input (``pre``) of one decoder block, named the
way sae-lens names it (``blocks.L.hook_resid_post``). :func:`steering_hook` replaces the residual
there; :func:`record_residual` reads it. Both are context managers whose hooks always come off,
also when the body raises. Every steering and every reading of a block's residual in the
project goes through these two functions.

Hooks act only on the thread that registered them (:func:`this_thread_only`): a model shared by
several requests (the app's sessions) may run a training step in one thread while another thread
generates with its own steering hook on, and neither sees the other's hook.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from .architectures import architecture_of, check_layer, decoder_layers
from .errors import SAELoadError


@dataclass(frozen=True)
class HookPoint:
    """A point of the residual stream: the output (``post``) or input (``pre``) of a block."""

    layer: int
    position: str  # "post" or "pre"

    @classmethod
    def block_output(cls, layer: int) -> "HookPoint":
        """The output of block ``layer`` (``blocks.{layer}.hook_resid_post``)."""
        return cls(layer, "post")

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_resid_{self.position}"

    @property
    def resid_layer(self) -> int:
        """The block whose output this point is (``pre`` of block L is the output of L-1)."""
        return self.layer if self.position == "post" else self.layer - 1

    @property
    def where(self) -> str:
        """This point in words: "the output of block 3"; "the input of block 0" for the one point that
        is the output of no block (the embeddings' output)."""
        return f"the output of block {self.resid_layer}" if self.resid_layer >= 0 else "the input of block 0"


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


def block_output(model: nn.Module, layer: int) -> HookPoint:
    """The output of block ``layer`` of ``model``, checked against its depth."""
    return HookPoint.block_output(check_layer(model, layer))


def module_device(module: nn.Module) -> torch.device:
    """Where ``module`` computes: its accelerate execution device when the model was loaded with
    a ``device_map`` (weights may then be offloaded), else its parameters' device."""
    device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
    if device is not None:
        return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    return next(module.parameters()).device


def hook_device(model: nn.Module, point: HookPoint) -> torch.device:
    """Where the residual at ``point`` is computed: the device of the block the hook sits on
    (block L for both ``blocks.L.hook_resid_post`` and ``blocks.L.hook_resid_pre``)."""
    return module_device(decoder_layers(model)[point.layer])


def this_thread_only(hook: Callable) -> Callable:
    """``hook`` (a forward or forward-pre hook) acting only in the thread that wraps it; in any
    other thread it returns None, which leaves the module's input or output as it is."""
    owner = threading.get_ident()

    @functools.wraps(hook)
    def scoped(*args, **kwargs):
        if threading.get_ident() != owner:
            return None
        return hook(*args, **kwargs)

    return scoped


@contextlib.contextmanager
def steering_hook(model: nn.Module, point: HookPoint, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the residual at ``point`` by ``fn(residual)`` inside the ``with`` block.

    ``post`` points hook the output of block L; ``pre`` points hook the input of block L (for
    L=0 that is the embedding output, which has no block before it).
    """
    block = decoder_layers(model)[point.layer]
    if point.position == "post":

        @this_thread_only
        def hook(module, args, output):
            if isinstance(output, tuple):
                return (fn(output[0]),) + tuple(output[1:])
            return fn(output)

        handle = block.register_forward_hook(hook)
    else:

        @this_thread_only
        def hook(module, args, kwargs):
            if args:
                return (fn(args[0]),) + tuple(args[1:]), kwargs
            kwargs = dict(kwargs, hidden_states=fn(kwargs["hidden_states"]))
            return args, kwargs

        handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def record_residual(model: nn.Module, point: HookPoint) -> Iterator[list[torch.Tensor]]:
    """Record the residual at ``point`` inside the ``with`` block.

    Yields a list that gets the ``(batch, seq, hidden)`` residual of every forward pass run in
    the block, in order, exactly as a steering hook at ``point`` would see it (detached)::

        with record_residual(model, point) as seen:
            model(input_ids)
        h = seen[-1]
    """
    seen: list[torch.Tensor] = []

    def record(h: torch.Tensor) -> torch.Tensor:
        seen.append(h.detach())
        return h

    with steering_hook(model, point, record):
        yield seen
