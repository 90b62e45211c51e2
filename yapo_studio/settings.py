"""Every setting the app reads from the environment, in one typed place.

:func:`current` reads them (cheaply, so a changed environment is seen at the next call) and
checks each value, naming the variable and the fix when one is malformed. The core library reads
none of these; it has its own few (``YAPO_CACHE_DIR`` for the demo world's cache, ``HF_TOKEN``,
``HF_HUB_OFFLINE``), which the table lists too, for one place to look.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

from yapo_core.demo.config import longest_run
from yapo_core.errors import SettingsError

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MAX_STEPS = longest_run()
"""Public mode's default cap on a training run's steps: the longest run the demo world's settings
fill in (2400 steps of MCQ or A/B pairs, or of a culture's open answers), so that a public Space runs its
own default task."""

PAGE_MULTIPLIERS = 9
"""The most multipliers one grid or sweep of a page takes: each runs the shared model once more."""

PAGE_MULTIPLIER_RANGE = 10.0
"""A page's multipliers lie within ± this."""


@dataclass(frozen=True)
class Settings:
    """The app's settings; each field's comment names its variable and default."""

    host: str = "127.0.0.1"  # YAPO_HOST, else GRADIO_SERVER_NAME (Spaces set it)
    port: int = 7860  # YAPO_PORT, else GRADIO_SERVER_PORT
    presets_file: Path = ROOT / "assets" / "presets.json"  # YAPO_PRESETS
    default_preset: str | None = None  # YAPO_DEFAULT_PRESET (e.g. gemma-2-2b-it on a GPU Space)
    demo_size: str = "full"  # YAPO_DEMO_SIZE: full or mini
    max_upload_mb: int = 50  # YAPO_MAX_UPLOAD_MB
    max_upload_rows: int = 200_000  # YAPO_MAX_UPLOAD_ROWS: rows of an uploaded table (Parquet's, from its footer)
    heavy_jobs: int = 2  # YAPO_HEAVY_JOBS: model calls (generation, sweeps, ...) at once
    training_jobs: int = 1  # YAPO_TRAINING_JOBS: training runs computing at once
    keep_models: int = 1  # YAPO_KEEP_MODELS: models kept loaded when no session uses them
    bipo_dir: str | None = None  # YAPO_BIPO_DIR: a local copy of BiPO's data/ folder
    device_map: str | None = None  # YAPO_DEVICE_MAP: "auto" spreads each model over every GPU
    train_chunk_seconds: float | None = None  # YAPO_TRAIN_CHUNK_SECONDS: train in chunks (ZeroGPU)
    cache_dir: str | None = None  # YAPO_CACHE_DIR (read by yapo_core.demo): the demo world's cache, else ~/.cache/yapo-studio
    zero_gpu: bool = False  # SPACES_ZERO_GPU: set by Hugging Face on ZeroGPU Spaces
    public: bool = False  # YAPO_PUBLIC (1/0): a public app's limits; on by itself where SPACE_ID is set (a Hugging Face Space)
    allow_models: tuple[str, ...] = ()  # YAPO_ALLOW_MODELS: hub ids a public app loads besides the presets'
    allow_saes: tuple[str, ...] = ()  # YAPO_ALLOW_SAES: sae-lens releases a public app loads besides the presets'
    max_prompt_chars: int = 20_000  # YAPO_MAX_PROMPT_CHARS (public default 2000)
    max_new_tokens: int = 512  # YAPO_MAX_NEW_TOKENS (public default 128)
    max_steps: int | None = None  # YAPO_MAX_STEPS: a cap on a run's training steps (public: the demo's steps)
    session_grace_s: float = 120.0  # YAPO_SESSION_GRACE_S: how long a closed page's session waits for it (0: none)

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


def variables() -> list[str]:
    """Each setting's line as :class:`Settings` documents it, with its default: the variables that
    set it (``python app.py --help`` prints them)."""
    said = dict(re.findall(r"^\s+(\w+): .+?  # (.+)$", inspect.getsource(Settings), flags=re.M))
    lines = []
    for f in fields(Settings):
        default = f.default
        shown = ("not set" if default is None or default == () else f"{int(default)}" if isinstance(default, bool)
                 else str(default.relative_to(ROOT)) if isinstance(default, Path) else f"{default:g}"
                 if isinstance(default, float) else str(default))
        lines.append(f"{said.get(f.name, f.name)} [default: {shown}]")  # a field without its comment still starts
    return lines


def _positive(env: Mapping[str, str], name: str, default, kind=int, zero: bool = False):
    """``name``'s value as ``kind``, above 0 (or 0 itself, where ``zero`` means something: none)."""
    value = env.get(name)
    if not value:
        return default
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or not (number > 0 or (zero and number == 0)):
        unit = ("whole number" if kind is int else "number") + (" or 0" if zero else "")
        advice = f"set it to e.g. {default}, or unset it" if default is not None else "unset it for the default"
        raise SettingsError(f"{name}={value!r} must be a positive {unit}; {advice}.")
    return number


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = (env.get(name) or "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={env.get(name)!r} must be 1 or 0 (true or false); unset it for the default.")


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in (env.get(name) or "").split(",") if part.strip())


def current(env: Mapping[str, str] | None = None) -> Settings:
    """The settings as the environment (``os.environ`` unless given) says now."""
    env = os.environ if env is None else env
    demo_size = env.get("YAPO_DEMO_SIZE") or "full"
    if demo_size not in ("full", "mini"):
        raise SettingsError(f"YAPO_DEMO_SIZE={demo_size!r} is unknown; use 'full' or 'mini'.")
    port_variable = next((name for name in ("YAPO_PORT", "GRADIO_SERVER_PORT") if env.get(name)), None)
    port = env.get(port_variable) if port_variable else "7860"
    try:
        port_number = int(port)
    except ValueError:
        port_number = -1
    if not 1 <= port_number <= 65535:
        raise SettingsError(f"{port_variable}={port!r} is not a port; give a number from 1 to 65535.")
    public = _switch(env, "YAPO_PUBLIC", bool(env.get("SPACE_ID")))
    return Settings(
        host=env.get("YAPO_HOST") or env.get("GRADIO_SERVER_NAME") or "127.0.0.1",
        port=port_number,
        presets_file=Path(env.get("YAPO_PRESETS") or ROOT / "assets" / "presets.json"),
        default_preset=env.get("YAPO_DEFAULT_PRESET") or None,
        demo_size=demo_size,
        max_upload_mb=_positive(env, "YAPO_MAX_UPLOAD_MB", 50),
        max_upload_rows=_positive(env, "YAPO_MAX_UPLOAD_ROWS", 200_000),
        heavy_jobs=_positive(env, "YAPO_HEAVY_JOBS", 2),
        training_jobs=_positive(env, "YAPO_TRAINING_JOBS", 1),
        keep_models=_positive(env, "YAPO_KEEP_MODELS", 1),
        bipo_dir=env.get("YAPO_BIPO_DIR") or None,
        device_map=env.get("YAPO_DEVICE_MAP") or None,
        train_chunk_seconds=_positive(env, "YAPO_TRAIN_CHUNK_SECONDS", None, float),
        cache_dir=env.get("YAPO_CACHE_DIR") or None,
        zero_gpu=env.get("SPACES_ZERO_GPU", "").lower() in ("1", "true"),
        public=public,
        allow_models=_names(env, "YAPO_ALLOW_MODELS"),
        allow_saes=_names(env, "YAPO_ALLOW_SAES"),
        max_prompt_chars=_positive(env, "YAPO_MAX_PROMPT_CHARS", 2000 if public else 20_000),
        max_new_tokens=_positive(env, "YAPO_MAX_NEW_TOKENS", 128 if public else 512),
        max_steps=_positive(env, "YAPO_MAX_STEPS", PUBLIC_MAX_STEPS if public else None),
        session_grace_s=_positive(env, "YAPO_SESSION_GRACE_S", 120.0, float, zero=True),
    )

