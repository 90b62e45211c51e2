"""YaPO Studio core: learn, apply, inspect and export sparse (YaPO) and dense (BiPO) steering
vectors on Hugging Face causal LMs with sae-lens SAEs.

Quick use::

    from yapo_core import load_model, load_sae, load_pairs, train_vector
    model, tok = load_model("google/gemma-2-2b-it", dtype="bf16")
    sae = load_sae("gemma-scope-2b-pt-res-canonical", "layer_15/width_65k/canonical")
    vec = train_vector(model, tok, load_pairs("pairs.csv"), sae=sae, kind="sparse")
    with vec.apply(model, multiplier=1.0):
        ...
"""

import os

# OpenMP threads wait for work passively, not by spinning: on a CPU shared with another busy
# process, spinning threads make torch 20-30x slower. Must be set before torch is imported; a
# user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Torch's AVX2 kernels on every x86-64 CPU that has them (AVX-512 ones round differently), so that
# the same seed builds the same demo world everywhere; YAPO_CPU_KERNELS=native opts out (_cpu.py).
from ._cpu import pin_cpu_kernels  # noqa: E402  (imports no torch)

pin_cpu_kernels()

from ._version import __version__
from .data import PairSet, PreferencePair, load_pairs
from .errors import (
    DataError,
    ModelLoadError,
    SAELoadError,
    SettingsError,
    TrainingError,
    VectorFileError,
    YapoError,
)
from .export import export_gguf, load_vector, save_vector
from .generation import generate
from .models import load_model
from .saes import load_sae
from .steering import SteeringVector, dense_equivalent
from .training import StepMetrics, TrainConfig, Trainer, train_vector

__all__ = [
    "DataError",
    "ModelLoadError",
    "PairSet",
    "PreferencePair",
    "SAELoadError",
    "SettingsError",
    "SteeringVector",
    "StepMetrics",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "VectorFileError",
    "YapoError",
    "__version__",
    "dense_equivalent",
    "export_gguf",
    "generate",
    "load_model",
    "load_pairs",
    "load_sae",
    "load_vector",
    "save_vector",
    "train_vector",
]
