"""Training settings: :class:`TrainConfig`, checked when made (every value named with its bound)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from . import checks
from .errors import SettingsError
from .objectives import ENGINES
from .options import MCQ_REJECTED


@dataclass
class TrainConfig:
    """Training settings; the defaults are those of the public YaPO/BiPO runs (docs/method.md §3)."""

    kind: str = "sparse"
    layer: int | None = None  # block whose output is steered; from the SAE's hook when sparse
    lr: float = 5e-4
    warmup_steps: int = 100
    epochs: int = 20
    max_steps: int | None = None  # stop earlier than ``epochs`` when set
    batch_size: int = 4
    beta: float = 0.1
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    seed: int = 11
    max_length: int = 512
    checkpoint_every: int = 0  # steps; 0 = no checkpoints
    checkpoint_dir: str | None = None
    engine: str = "auto"  # "fast" (cached, tail-only; yapo_core.objectives), "simple", or "auto"
    cache_dir: str | None = None  # where the fast engine keeps its activation cache on disk
    cache_in_memory: bool | None = None  # None: in memory unless too large and cache_dir is set
    # "given": each pair's own rejected answer (the papers); "every_option": multiple-choice pairs
    # are trained against every wrong option (options.against_every_option)
    mcq_rejected: str = "given"

    def __post_init__(self):
        if self.kind not in ("sparse", "dense"):
            raise SettingsError(f"kind {self.kind!r} is unknown; use 'sparse' (YaPO) or 'dense' (BiPO).")
        # finite and positive (clipping at 0 would train nothing); bounded far above any useful value
        checks.number("lr", self.lr, above=0, most=10)
        checks.number("beta", self.beta, above=0, most=1000)
        checks.number("grad_clip", self.grad_clip, least=1e-6)
        checks.number("weight_decay", self.weight_decay, least=0, most=1)
        for name, least in (("batch_size", 1), ("epochs", 1), ("max_length", 2), ("warmup_steps", 0),
                            ("checkpoint_every", 0)):
            checks.whole(name, getattr(self, name), least)
        if self.max_steps is not None:
            checks.whole("max_steps", self.max_steps, 1)  # or None: train for the given epochs
        if self.layer is not None:
            checks.whole("layer", self.layer, 0)
        checks.seed(self.seed)
        if self.engine not in ENGINES:
            raise SettingsError(f"engine {self.engine!r} is unknown; use one of {list(ENGINES)}.")
        if self.mcq_rejected not in MCQ_REJECTED:
            raise SettingsError(f"mcq_rejected={self.mcq_rejected!r} is unknown; use one of {list(MCQ_REJECTED)}.")
        if self.cache_in_memory not in (None, True, False):
            raise SettingsError(f"cache_in_memory={self.cache_in_memory!r} must be True, False or None (decide by size).")
        # no file made on every config built: a finished cache may be read from read-only storage, and a
        # checkpoint that cannot be written is said as such when it is written, the vector kept
        checks.folder("cache_dir", self.cache_dir, probe=False)
        checks.folder("checkpoint_dir", self.checkpoint_dir, probe=False)
        if self.checkpoint_every and not self.checkpoint_dir:
            raise SettingsError("checkpoint_every is set but checkpoint_dir is not; give a folder.")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise SettingsError(f"training settings must be a JSON object, not {text[:40]!r}.")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
