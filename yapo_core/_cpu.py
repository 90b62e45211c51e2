"""Which vectorised CPU kernels torch uses: chosen before torch is imported, so that float results
(a demo world's build, a trained vector) are the same on every x86-64 machine.

Torch picks its elementwise and reduction kernels by the CPU's instruction set (AVX2 or AVX-512),
and so does MKL, which runs its matrix products; the code paths round differently, and the same
seed then builds another demo model on an AVX-512 machine than on an AVX2 one, with other steering
figures (docs/results.md, "Results"). Both are pinned to AVX2, the instructions every x86-64 CPU of
the last decade has: torch's kernels by ``ATEN_CPU_CAPABILITY``, MKL's by its conditional numerical
reproducibility branch (``MKL_CBWR``). This module must not import torch: ``yapo_core/__init__``
calls :func:`pin_cpu_kernels` first thing (MKL reads its setting at its first call).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, MutableMapping

PINNED = "avx2"
"""``ATEN_CPU_CAPABILITY``'s value: torch's AVX2 kernels."""

MKL_PINNED = "AVX2"
"""``MKL_CBWR``'s value: MKL's AVX2 code path, the same on every CPU that has AVX2."""

PIN_VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR")
"""The environment variables the pin sets; one the user set already leaves the pin to them."""

X86_64 = ("x86_64", "amd64")
"""``platform.machine()`` of an x86-64 CPU (lower case; Windows says AMD64)."""

NEEDED_FLAGS = frozenset({"avx2", "fma"})
"""What torch's AVX2 kernels need of the CPU (``/proc/cpuinfo`` flags); without them the pin would
make torch run instructions the CPU does not have."""


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The instruction-set flags of the first processor in ``/proc/cpuinfo``'s text."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def native_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``YAPO_CPU_KERNELS=native`` asks for the CPU's own best kernels."""
    return environ.get("YAPO_CPU_KERNELS", "").strip().lower() == "native"


def pin_cpu_kernels(environ: MutableMapping[str, str] = os.environ, cpuinfo_path: str = "/proc/cpuinfo",
                    machine: str | None = None) -> str | None:
    """Set ``ATEN_CPU_CAPABILITY=avx2`` (torch's AVX2 kernels) and ``MKL_CBWR=AVX2`` (MKL's AVX2
    code path for matrix products) on an x86-64 Linux CPU that has AVX2 and FMA, unless either is
    set already (the user's choice wins) or ``YAPO_CPU_KERNELS=native`` asks for the CPU's own best
    kernels. Returns ``ATEN_CPU_CAPABILITY``'s value set, or None where nothing was set.

    It takes effect only if torch is imported (and MKL called) afterwards."""
    if any(name in environ for name in PIN_VARIABLES) or native_requested(environ):
        return None
    if (machine or platform.machine()).lower() not in X86_64:
        return None
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            flags = cpu_flags(f.read())
    except OSError:
        return None
    if not NEEDED_FLAGS <= flags:
        return None
    environ["ATEN_CPU_CAPABILITY"], environ["MKL_CBWR"] = PINNED, MKL_PINNED
    return PINNED


def mkl_branch(environ: Mapping[str, str] = os.environ) -> str:
    """The MKL code path a build runs on: ``MKL_CBWR``'s value, or ``"auto"`` (MKL's own choice by the CPU)."""
    return environ.get("MKL_CBWR", "").strip().upper() or "auto"
