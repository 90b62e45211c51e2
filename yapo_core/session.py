"""One user's workspace: a loaded model + SAE, a task, training runs in the background, vectors.

The app keeps one :class:`Session` per browser session (never in a module global), so two users
never see each other's runs; a script can use the same object. Shared across sessions, and
passed in by whoever creates them:

- :class:`ModelStore`: loaded models are reused between sessions (weights are read-only, and a
  large model cannot be loaded once per user); each :class:`Bundle` has a lock that every use of
  the model takes (a steering hook is on the model while it runs);
- :class:`JobLimiter`: bounds how many training runs compute at once; later runs wait, "queued".

Loading fails fast with a message the user can act on: hub sources are checked for
reachability (seconds) before ``transformers``/``sae-lens`` would retry for minutes.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlparse

from .data import PairSet, detect_schema, load_pairs, read_table
from .errors import DataError, ModelLoadError, SAELoadError, SettingsError, TrainingError, VectorFileError, YapoError
from .models import is_offline, load_model
from .saes import load_sae, place_sae
from .steering import SteeringVector
from .spaces_compat import gpu, on_zero_gpu, zero_gpu_active
from .training import ChunkResult, StepMetrics, TrainConfig, Trainer, TrainState, train_chunk

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = int(float(os.environ.get("YAPO_MAX_UPLOAD_MB", "50")) * 1024 * 1024)
DATA_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")


# --- presets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """A model + SAE combination offered in the app (``assets/presets.json``).

    ``demo`` presets build/load the built-in demo world; ``custom`` ones take their sources from
    the user. ``dcl_rejected_model`` names the Deep-Culture-Lense ``rejected_<model>_*`` columns
    that hold this model's own answers (the paper's on-policy rejected answers).
    """

    key: str
    label: str
    model: str | None = None
    sae_release: str | None = None
    sae_id: str | None = None
    sae_path: str | None = None
    layer: int | None = None
    dtype: str = "fp32"
    demo: bool = False
    custom: bool = False
    gated: bool = False
    dcl_rejected_model: str | None = None
    notes: str = ""
    train: dict | None = None  # TrainConfig fields that differ from the public runs' defaults


@dataclass(frozen=True)
class Catalog:
    """Presets and task sources, read from one data file."""

    presets: tuple[Preset, ...]
    tasks: dict

    @property
    def default_key(self) -> str:
        """``$YAPO_DEFAULT_PRESET`` (e.g. ``gemma-2-2b-it`` on a GPU Space), else the first preset."""
        key = os.environ.get("YAPO_DEFAULT_PRESET") or self.presets[0].key
        return self.preset(key).key

    def preset(self, key: str) -> Preset:
        for p in self.presets:
            if p.key == key:
                return p
        raise SettingsError(f"preset {key!r} is unknown; known presets: {[p.key for p in self.presets]}.")


def load_catalog(path: str | os.PathLike) -> Catalog:
    """Read ``presets.json``: ``{"presets": [...], "tasks": {...}}`` (see the file itself)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {f.name for f in fields(Preset)}
        presets = tuple(Preset(**{k: v for k, v in p.items() if k in known}) for p in data["presets"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(f"the presets file {str(path)!r} could not be read: {exc}") from exc
    return Catalog(presets, data.get("tasks", {}))


# --- methods -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """A way of making a steering vector. YaPO and BiPO are trained with the preference
    objective (:class:`~yapo_core.training.Trainer`); CAA and SAS are computed from the pairs in
    one pass (:mod:`yapo_core.baselines`)."""

    key: str
    label: str
    kind: str
    summary: str
    trained: bool = True


METHODS: dict[str, Method] = {
    "yapo": Method("yapo", "YaPO (sparse)", "sparse",
                   "a vector over the SAE's latents, applied through the SAE: h' = dec(relu(enc(h) + m·v)) + error"),
    "bipo": Method("bipo", "BiPO (dense)", "dense", "a vector in the residual stream: h' = h + m·v"),
    "caa": Method("caa", "CAA (dense, computed)", "dense",
                  "mean of h(chosen) − h(rejected) at the last answer token; h' = h + m·v (the paper uses m = 0.5)",
                  trained=False),
    "sas": Method("sas", "SAS (sparse, computed)", "sparse",
                  "mean SAE codes of chosen − rejected over latents active in ≥ 70% of one side only; applied like YaPO",
                  trained=False),
}
"""Methods offered in the app, by key."""


# --- reachability ------------------------------------------------------------------------------


def host_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of ``url`` accepts a TCP connection within ``timeout`` seconds."""
    parsed = urlparse(url if "://" in url else f"https://{url}")
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        return True
    except (OSError, TypeError):
        return False


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_cached(repo_id: str, repo_type: str = "model") -> bool:
    """Whether the Hugging Face cache holds anything of ``repo_id`` (a download was started)."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    return folder.is_dir()


def require_hub(what: str, repo_id: str, error: type[YapoError], repo_type: str = "model") -> None:
    """Fail within seconds when the Hub is needed but cannot be reached.

    In offline mode the libraries fail fast themselves. Online, an unreachable Hub makes them
    retry for minutes, also for files already in the cache, hence the advice to go offline.
    """
    if is_offline() or (repo_type == "dataset" and os.environ.get("HF_DATASETS_OFFLINE", "0") in ("1", "true", "yes")):
        return
    endpoint = hub_endpoint()
    if host_reachable(endpoint):
        return
    cached = hub_cached(repo_id, repo_type)
    raise error(
        f"{what} {repo_id!r} needs the Hugging Face Hub, and {endpoint} cannot be reached (no network?). "
        + ("It is in the local cache: set HF_HUB_OFFLINE=1 (and HF_DATASETS_OFFLINE=1) to use the cached copy."
           if cached else "Download it once while online, or give a local folder.")
    )


# --- loaded models -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """Exactly what to load: a model (hub id or folder) and optionally an SAE (release + id or folder)."""

    model: str
    sae_release: str | None = None
    sae_id: str | None = None
    sae_path: str | None = None
    layer: int | None = None
    dtype: str = "fp32"
    device: str = "auto"
    device_map: str | None = field(default_factory=lambda: os.environ.get("YAPO_DEVICE_MAP") or None)
    """``auto``: spread the model over every visible GPU (accelerate); set ``YAPO_DEVICE_MAP``."""

    def describe(self) -> str:
        sae = f"{self.sae_release}/{self.sae_id}" if self.sae_release else (self.sae_path or "no SAE")
        return f"{self.model} + {sae}"


@dataclass(eq=False)
class Bundle:
    """A loaded model, its tokenizer and SAE. Take ``lock`` around every use of ``model``."""

    spec: LoadSpec
    label: str
    model: object
    tokenizer: object
    sae: object | None
    hook_name: str | None
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def layer(self) -> int | None:
        from .architectures import hook_point_from_name

        return hook_point_from_name(self.hook_name).resid_layer if self.hook_name else self.spec.layer


def _local(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists()


_LOADED: "weakref.WeakValueDictionary[LoadSpec, Bundle]" = weakref.WeakValueDictionary()
"""Every bundle this process has loaded and still holds, by spec (see :func:`loaded_bundle`)."""


def load_bundle(spec: LoadSpec, label: str = "") -> Bundle:
    """Load model, tokenizer and SAE of ``spec`` and check that they fit together."""
    if not _local(spec.model):
        require_hub("model", spec.model, ModelLoadError)
    if spec.sae_release:
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

        lookup = get_pretrained_saes_directory().get(spec.sae_release)
        if lookup is None:
            raise SAELoadError(f"SAE release {spec.sae_release!r} is not in sae-lens's registry; check the spelling.")
        require_hub("SAE release", lookup.repo_id, SAELoadError)
    model, tokenizer = load_model(spec.model, device=spec.device, dtype=spec.dtype, device_map=spec.device_map)
    sae = None
    if spec.sae_release or spec.sae_path:
        sae = load_sae(spec.sae_release, spec.sae_id, path=spec.sae_path, device="cpu")
        hook = place_sae(model, sae, spec.layer).hook_name
    elif spec.layer is not None:
        from .architectures import check_layer

        hook = f"blocks.{check_layer(model, spec.layer)}.hook_resid_post"
    else:
        raise SettingsError("without an SAE, give the layer to steer (only BiPO can be trained then).")
    bundle = _LOADED[spec] = Bundle(spec, label or spec.describe(), model, tokenizer, sae, hook)
    return bundle


_WORKER_KEPT: list[Bundle] = []  # the last bundle loaded_bundle had to load itself, kept alive
_WORKER_LOCK = threading.Lock()


def loaded_bundle(spec: LoadSpec) -> Bundle:
    """The bundle of ``spec`` this process already holds, or a fresh load (a ZeroGPU worker that
    was forked before the user loaded it), which then stays loaded for the next chunk."""
    with _WORKER_LOCK:
        bundle = _LOADED.get(spec)
        if bundle is None:
            bundle = load_bundle(spec)
            _WORKER_KEPT[:] = [bundle]
        return bundle


class ModelStore:
    """Loaded bundles shared by all sessions of a process.

    A bundle stays available while any session uses it (weak references), and the
    ``keep`` most recently loaded ones stay loaded even when nobody does. Loads of the same spec
    are serialised, so two users asking at once load it once.
    """

    def __init__(self, keep: int = 1):
        self.keep = keep
        self._live: "weakref.WeakValueDictionary[LoadSpec, Bundle]" = weakref.WeakValueDictionary()
        self._recent: list[Bundle] = []
        self._lock = threading.Lock()
        self._loading: dict[LoadSpec, threading.Lock] = {}

    def get(self, spec: LoadSpec, label: str = "") -> Bundle:
        with self._lock:
            gate = self._loading.setdefault(spec, threading.Lock())
        with gate:
            bundle = self._live.get(spec)
            if bundle is None:
                bundle = load_bundle(spec, label)
                self._live[spec] = bundle
            with self._lock:
                self._recent = ([bundle] + [b for b in self._recent if b is not bundle])[: self.keep]
            return bundle


def spread(items: Sequence, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced and in order: a test split is often grouped (by
    country, by localization), so its first ``n`` rows would not represent it."""
    items = list(items)
    if len(items) <= n:
        return items
    return [items[i * len(items) // n] for i in range(n)]


_DEMO_LOCK = threading.Lock()


def demo_size() -> str:
    """Which demo world the app uses: ``$YAPO_DEMO_SIZE`` (``full``, the default, built in about
    four minutes on first use; or ``mini``, the seconds-scale test world)."""
    return os.environ.get("YAPO_DEMO_SIZE", "full")


def ensure_demo_world(progress: bool = True):
    """The demo world, built on first use (one build at a time per process)."""
    from .demo import build_demo_world, load_demo_world

    size = demo_size()
    world = load_demo_world(size=size)
    if world is not None:
        return world
    with _DEMO_LOCK:
        return build_demo_world(size=size, progress=progress)


def demo_world_ready() -> bool:
    """Whether the demo world of :func:`demo_size` is built (loading it is then a matter of seconds)."""
    from .demo import load_demo_world

    return load_demo_world(size=demo_size()) is not None


def demo_task_names() -> list[str]:
    """The demo world's trainable tasks (culture per country, behaviours); empty until it is built."""
    from .demo import list_demo_tasks, load_demo_world

    world = load_demo_world(size=demo_size())
    return [t["name"] for t in list_demo_tasks(world) if t["kind"] in ("culture", "behaviour")] if world else []


def spec_for(preset: Preset, model: str | None = None, sae_release: str | None = None, sae_id: str | None = None,
             sae_path: str | None = None, layer: int | None = None, device: str = "auto") -> LoadSpec:
    """The :class:`LoadSpec` of a preset; a custom preset takes the given sources."""
    if preset.demo:
        world = ensure_demo_world()
        return LoadSpec(str(world.model_dir), sae_path=str(world.sae_dir), layer=world.layer, device=device)
    if preset.custom:
        if not model or not model.strip():
            raise SettingsError("enter a model: a Hugging Face id (e.g. openai-community/gpt2) or a local folder.")
        release, sae_id, path = (sae_release or "").strip() or None, (sae_id or "").strip() or None, (sae_path or "").strip() or None
        if release and not sae_id:
            raise SettingsError(f"SAE release {release!r} needs an SAE id too (e.g. blocks.8.hook_resid_pre).")
        if not (release or path) and layer is None:
            raise SettingsError("give an SAE (release + id, or a local folder) or at least the layer to steer.")
        return LoadSpec(model.strip(), release, sae_id, path, layer, preset.dtype, device)
    return LoadSpec(preset.model, preset.sae_release, preset.sae_id, preset.sae_path, preset.layer, preset.dtype, device)


# --- tasks -------------------------------------------------------------------------------------


@dataclass
class TaskSpec:
    """Which pairs to train and test on.

    ``source``: ``demo`` (a task of the demo world, by ``name``), ``culture`` (Deep-Culture-Lense
    or the demo world's culture table: ``country``, ``localization``, ``form``,
    ``rejected_model``), ``behaviour`` (BiPO's data, by ``name``) or ``file`` (``path``, with
    ``schema``/``columns``; split ``test_fraction`` off for testing).
    """

    source: str
    name: str | None = None
    country: str | None = None
    localization: str = "both"
    form: str = "mcq"
    rejected_model: str | None = None
    path: str | None = None
    schema: str = "auto"
    columns: dict[str, str] | None = None
    test_fraction: float = 0.2
    limit: int | None = None


@dataclass
class Task:
    label: str
    train: PairSet
    test: PairSet

    def describe(self) -> str:
        notes = "; ".join(self.train.notes + self.test.notes)
        return f"{self.label}: {len(self.train)} train / {len(self.test)} test pairs" + (f" ({notes})" if notes else "")


def check_upload(path: str | os.PathLike, suffixes: Sequence[str], what: str) -> Path:
    """An uploaded file that exists, is not empty or too large, and has an accepted suffix."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"the uploaded {what} {path.name!r} is missing; upload it again.")
    if path.suffix.lower() not in suffixes:
        raise DataError(f"{path.name!r} is not accepted as {what}: use {', '.join(suffixes)}.")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"the uploaded {what} {path.name!r} is empty.")
    if size > MAX_UPLOAD_BYTES:
        raise DataError(f"{path.name!r} is {size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MB.")
    return path


@dataclass
class Preview:
    """The first rows of an uploaded table, its columns and the schema guessed from them."""

    rows: object  # a pandas DataFrame
    columns: list[str]
    n_rows: int
    schema: str | None
    message: str


def preview_file(path: str | os.PathLike, n: int = 5) -> Preview:
    """Read an uploaded CSV/JSONL/JSON/Parquet file and guess its schema (for column mapping)."""
    path = check_upload(path, DATA_SUFFIXES, "data file")
    table = read_table(str(path))
    columns = [str(c) for c in table.columns]
    try:
        schema, message = detect_schema(columns), ""
    except DataError as exc:
        schema, message = None, str(exc)
    return Preview(table.head(n), columns, len(table), schema, message)


def _behaviour_source(catalog_tasks: dict, behaviour: str, split: str) -> str:
    """A BiPO split: from ``$YAPO_BIPO_DIR`` (a local copy) when set, else the public raw URL."""
    local = os.environ.get("YAPO_BIPO_DIR")
    if local:
        path = Path(local).expanduser() / behaviour / f"{split}.csv"
        if not path.is_file():
            raise DataError(f"YAPO_BIPO_DIR is set but {str(path)!r} does not exist.")
        return str(path)
    url = catalog_tasks.get("behaviour", {}).get(
        "url", "https://raw.githubusercontent.com/CaoYuanpu/BiPO/main/data/{behaviour}/{split}.csv"
    )
    return url.format(behaviour=behaviour, split=split)


def load_task(spec: TaskSpec, catalog_tasks: dict | None = None, rejected_model: str | None = None) -> Task:
    """Train and test pairs for ``spec`` (``rejected_model`` is the preset's default for culture data)."""
    catalog_tasks = catalog_tasks or {}
    if spec.source == "demo":
        return _demo_task(spec)
    if spec.source == "culture":
        dataset = catalog_tasks.get("culture", {}).get("dataset", "MBZUAI-Paris/Deep-Culture-Lense")
        require_hub("dataset", dataset, DataError, repo_type="dataset")
        kw = dict(country=spec.country, localization=spec.localization, form=spec.form,
                  rejected_model=spec.rejected_model or rejected_model, limit=spec.limit)
        train = load_pairs(dataset, split="train", **kw)
        test = load_pairs(dataset, split="test", **kw)
        label = f"culture · {spec.country or 'all countries'} · {spec.localization} · {spec.form}"
        return Task(label, train, test)
    if spec.source == "behaviour":
        behaviours = catalog_tasks.get("behaviour", {}).get("behaviours", ["power-seeking", "wealth-seeking", "hallucination", "jailbreak"])
        if spec.name not in behaviours:
            raise DataError(f"behaviour {spec.name!r} is unknown; choose one of {behaviours}.")
        train_src, test_src = (_behaviour_source(catalog_tasks, spec.name, s) for s in ("train", "test"))
        if train_src.startswith("http") and not os.environ.get("HF_DATASETS_OFFLINE") and not host_reachable(train_src):
            raise DataError(
                f"BiPO's data is read from {urlparse(train_src).hostname}, which cannot be reached. "
                "Set YAPO_BIPO_DIR to a local copy of its data/ folder, or upload the CSV as a file task."
            )
        train = load_pairs(train_src, schema="bipo", limit=spec.limit)
        test = load_pairs(test_src, schema="bipo", limit=spec.limit)
        return Task(f"behaviour · {spec.name}", train, test)
    if spec.source == "file":
        if not spec.path:
            raise DataError("upload a CSV, JSONL, JSON or Parquet file first.")
        path = check_upload(spec.path, DATA_SUFFIXES, "data file")
        pairs = load_pairs(str(path), schema=spec.schema, columns=spec.columns or None, limit=spec.limit)
        if len(pairs) < 2:
            raise DataError(f"{path.name!r} has {len(pairs)} usable pair(s); at least 2 are needed (train + test).")
        train, test = pairs.split(spec.test_fraction, seed=0)
        return Task(f"file · {path.name}", train, test)
    raise SettingsError(f"task source {spec.source!r} is unknown; use demo, culture, behaviour or file.")


def _demo_task(spec: TaskSpec) -> Task:
    from .demo import list_demo_tasks

    world = ensure_demo_world()
    tasks = {t["name"]: t for t in list_demo_tasks(world)}
    name = spec.name
    task = tasks.get(name)
    if task is None or task["kind"] not in ("culture", "behaviour"):
        trainable = [n for n, t in tasks.items() if t["kind"] in ("culture", "behaviour")]
        raise DataError(f"demo task {name!r} is unknown; the demo world has {trainable}.")
    paths = task["paths"]
    if task["kind"] == "culture":
        kw = dict(schema="dcl", country=task["country"], localization=spec.localization, form=spec.form, limit=spec.limit)
        train, test = load_pairs(str(paths["train"]), **kw), load_pairs(str(paths["test"]), **kw)
        label = f"demo culture · {task['country']} · {spec.localization} · {spec.form}"
    else:
        train = load_pairs(str(paths["train"]), schema="bipo", limit=spec.limit)
        test = load_pairs(str(paths["test"]), schema="bipo", limit=spec.limit)
        label = f"demo behaviour · {name}"
    return Task(label, train, test)


# --- runs --------------------------------------------------------------------------------------


class JobLimiter:
    """At most ``slots`` heavy background jobs (training runs) compute at once, process-wide."""

    def __init__(self, slots: int = 1):
        if slots < 1:
            raise SettingsError(f"the number of concurrent jobs must be at least 1, not {slots}.")
        self.slots = slots
        self._sem = threading.BoundedSemaphore(slots)

    def acquire(self, cancelled: threading.Event, poll: float = 0.25) -> bool:
        """Wait for a slot; False when ``cancelled`` is set first."""
        while not cancelled.is_set():
            if self._sem.acquire(timeout=poll):
                return True
        return False

    def release(self) -> None:
        self._sem.release()


RUN_STATES = ("queued", "preparing", "running", "finished", "stopped", "failed")

CHUNK_SECONDS = 45.0
"""On ZeroGPU, training runs as a series of GPU calls of this many seconds of steps each."""


CHUNK_MARGIN_SECONDS = 60
"""What a ZeroGPU call may run past its chunk's seconds: the last step and the result's transfer
(the chunk's clock includes re-tokenising and re-caching the pairs)."""


def chunk_seconds() -> float | None:
    """Seconds per training chunk: set on ZeroGPU Spaces (or by ``YAPO_TRAIN_CHUNK_SECONDS``),
    None (one uninterrupted run in a background thread) elsewhere."""
    value = os.environ.get("YAPO_TRAIN_CHUNK_SECONDS")
    if value:
        try:
            seconds = float(value)
        except ValueError:
            seconds = 0.0
        if not seconds > 0:
            raise SettingsError(f"YAPO_TRAIN_CHUNK_SECONDS={value!r} is not a positive number of seconds; "
                                "set it to e.g. 45, or unset it.")
        return seconds
    return CHUNK_SECONDS if on_zero_gpu() else None


def _chunk_duration(spec, pairs, config, state, max_seconds: float) -> int:
    """The GPU time ZeroGPU reserves for one call, from the chunk's own length."""
    return int(max_seconds) + CHUNK_MARGIN_SECONDS


@gpu(duration=_chunk_duration)
def train_chunk_on_gpu(spec: LoadSpec, pairs, config: TrainConfig, state: TrainState | None,
                       max_seconds: float) -> ChunkResult:
    """One chunk of a run, as a ZeroGPU call: arguments and result are small and picklable (the
    model is looked up by its spec, not sent), since the call may run in a worker process."""
    bundle = loaded_bundle(spec)
    return train_chunk(bundle.model, bundle.tokenizer, pairs, config, sae=bundle.sae, state=state,
                       max_seconds=max_seconds)


class Run:
    """One training run in a background thread; its metrics can be read at any time."""

    def __init__(self, run_id: str, name: str, method: Method, config: TrainConfig, task: Task, bundle: Bundle):
        self.id, self.name, self.method, self.config, self.task, self.bundle = run_id, name, method, config, task, bundle
        self.status = "queued"
        self.error: str | None = None
        self.trainer: Trainer | None = None
        self._computed: SteeringVector | None = None  # CAA / SAS
        self.created = time.time()
        self._running_since: float | None = None
        self._finished_at: float | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.chunk_seconds: float | None = None  # set: train in chunks (see chunk_seconds())
        self._chunk: ChunkResult | None = None  # chunked runs: the last chunk's result
        self._chunk_history: list[StepMetrics] = []  # and every chunk's metrics so far

    # -- control --

    def start(self, limiter: JobLimiter) -> None:
        # The thread runs in a copy of the caller's context, so that GPU calls made from it
        # (ZeroGPU) are made on behalf of the request (the user's quota) that started the run.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._work, limiter),
                                        name=f"yapo-run-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the run to end after its current step (or not to start, when queued)."""
        self._cancel.set()
        if self.trainer is not None:
            self.trainer.stop()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.active

    def _work(self, limiter: JobLimiter) -> None:
        if not limiter.acquire(self._cancel):
            self.status = "stopped"
            return
        try:
            self.status = "preparing"
            b = self.bundle
            if not self.method.trained:
                self._compute(b)
                return
            if self.chunk_seconds:
                self._train_in_chunks(b)
                return
            with b.lock:  # tokenising and caching activations run the model
                self.trainer = Trainer(b.model, b.tokenizer, self.task.train, self.config, sae=b.sae)
            if self._cancel.is_set():
                self.trainer.stop()
            self.status, self._running_since = "running", time.time()
            steps = iter(self.trainer)
            while True:
                with b.lock:  # one step at a time, so generation can interleave between steps
                    if next(steps, None) is None:
                        break
            self.status = "stopped" if self._cancel.is_set() else "finished"
        except YapoError as exc:
            self.status, self.error = "failed", str(exc)
        except Exception as exc:  # unexpected: keep the app alive, log the traceback for the operator
            log.exception("training run %s failed", self.id)
            self.status, self.error = "failed", f"unexpected error ({type(exc).__name__}: {exc}); see the server log."
        finally:
            self._finished_at = time.time()
            limiter.release()

    def _train_in_chunks(self, b: "Bundle") -> None:
        """Training as a series of short calls (:func:`train_chunk_on_gpu`), each continuing from
        the state the last one returned; Stop takes effect between chunks."""
        self.status, self._running_since = "running", time.time()
        while not self._cancel.is_set():
            # In-process, a chunk uses the shared model like a step does: under its lock (for the
            # whole chunk). On ZeroGPU it runs in a worker process on that process's own copy.
            with contextlib.nullcontext() if zero_gpu_active() else b.lock:
                chunk = train_chunk_on_gpu(b.spec, self.task.train, self.config,
                                           self._chunk.state if self._chunk else None, self.chunk_seconds)
            # History first: readers take the step from _chunk, so they never see a step ahead of
            # its metrics.
            self._chunk_history = self._chunk_history + chunk.history
            self._chunk = chunk
            if chunk.error:
                raise TrainingError(chunk.error)
            if chunk.finished:
                break
        self.status = "stopped" if self._cancel.is_set() else "finished"

    def _compute(self, b: "Bundle") -> None:
        """CAA / SAS: one pass over the training pairs, no steps."""
        from .baselines import train_caa, train_sas

        self.status, self._running_since = "running", time.time()
        with b.lock:
            if self.method.key == "caa":
                layer = self.config.layer if self.config.layer is not None else b.layer
                self._computed = train_caa(b.model, b.tokenizer, self.task.train, layer)
            else:
                self._computed = train_sas(b.model, b.tokenizer, self.task.train, b.sae)
        self.status = "stopped" if self._cancel.is_set() else "finished"

    # -- reading --

    @property
    def active(self) -> bool:
        return self.status in ("queued", "preparing", "running")

    @property
    def history(self) -> list[StepMetrics]:
        if self._chunk is not None:
            return list(self._chunk_history)
        return list(self.trainer.history) if self.trainer is not None else []

    @property
    def step(self) -> int:
        if self._chunk is not None:
            return self._chunk.state.step
        return self.trainer.step if self.trainer is not None else 0

    @property
    def total_steps(self) -> int | None:
        if self._chunk is not None:
            return self._chunk.total_steps
        return self.trainer.total_steps if self.trainer is not None else None

    @property
    def vector(self) -> SteeringVector | None:
        """The last good vector (also while training runs), or None before the first step."""
        if self._computed is not None:
            return self._computed
        chunk = self._chunk
        if chunk is not None:
            return chunk.vector(self.config, self.bundle.model, self.bundle.sae) if chunk.state.step else None
        if self.trainer is None or self.trainer.step == 0:
            return None
        return self.trainer.vector

    def elapsed(self) -> float:
        if self._running_since is None:
            return 0.0
        return (self._finished_at or time.time()) - self._running_since

    def eta(self) -> float | None:
        """Seconds left at the pace so far (None before the first step or when done)."""
        total, step = self.total_steps, self.step
        if not self.status == "running" or not step or total is None:
            return None
        return self.elapsed() / step * (total - step)

    def describe(self) -> str:
        """One line of status: state, step, ETA, the last metrics or the error."""
        text = f"{self.name}: {self.status}"
        if self.total_steps:
            text += f", step {self.step}/{self.total_steps}"
        eta = self.eta()
        if eta is not None:
            text += f", about {format_seconds(eta)} left"
        if self._computed is not None:
            text += f" · computed in one pass, L0 {self._computed.l0()}, norm {self._computed.norm():.3g}"
        history = self.history
        if history:
            m = history[-1]
            text += f" · loss {m.loss:.4f}, reward acc {m.reward_accuracy:.2f}, L0 {m.l0}"
        if self.error:
            text += f" · {self.error}"
        return text


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# --- the session -------------------------------------------------------------------------------


@dataclass
class VectorEntry:
    """A vector the session can use: from a run, or loaded from a file, with the bundle it fits."""

    label: str
    vector: SteeringVector
    bundle: Bundle
    task: Task | None
    source: str  # "run" or "file"


@dataclass
class ExportResult:
    safetensors: Path
    gguf: Path | None
    gguf_error: str | None
    dropped_fraction: float | None
    layer: int
    multiplier: float


class Session:
    """What one user has loaded and made; every heavy call takes the model's lock."""

    def __init__(self, store: ModelStore | None = None, limiter: JobLimiter | None = None,
                 catalog: Catalog | None = None, max_runs: int = 12):
        self.store = store or ModelStore()
        self.limiter = limiter or JobLimiter()
        self.catalog = catalog
        self.max_runs = max_runs
        self.bundle: Bundle | None = None
        self.preset: Preset | None = None
        self.task: Task | None = None
        self.method: Method = METHODS["yapo"]
        self.runs: dict[str, Run] = {}
        self.files: dict[str, VectorEntry] = {}
        self._counter = 0
        self._workdir: Path | None = None
        self.train_fields_for: str | None = None  # preset whose defaults the Train page last showed

    # -- setup --

    def load_preset(self, preset: Preset, **custom) -> Bundle:
        """Load a preset's model and SAE (custom presets take ``model``, ``sae_release``,
        ``sae_id``, ``sae_path``, ``layer``). The task and earlier runs stay: runs keep the model
        they were trained with, so their vectors remain usable."""
        spec = spec_for(preset, **custom)
        self.bundle = self.store.get(spec, label=preset.label if not preset.custom else spec.describe())
        self.preset = preset
        return self.bundle

    def set_method(self, key: str) -> Method:
        if key not in METHODS:
            raise SettingsError(f"method {key!r} is unknown; choose one of {list(METHODS)}.")
        self.method = METHODS[key]
        return self.method

    def load_task(self, spec: TaskSpec) -> Task:
        default_rejected = self.preset.dcl_rejected_model if self.preset else None
        self.task = load_task(spec, self.catalog.tasks if self.catalog else {}, default_rejected)
        return self.task

    def require_ready(self) -> Bundle:
        if self.bundle is None:
            raise SettingsError("load a model on the Setup page first.")
        if self.task is None:
            raise SettingsError("load a task on the Setup page first.")
        return self.bundle

    # -- runs --

    def training_defaults(self) -> dict:
        """The TrainConfig fields the loaded preset recommends over the public runs' defaults
        (the demo world's are :data:`yapo_core.demo.TRAINING`); empty when there are none."""
        if self.preset is None:
            return {}
        if self.preset.demo:
            from .demo import TRAINING

            return dict(TRAINING)
        return dict(self.preset.train or {})

    def default_config(self, **overrides) -> TrainConfig:
        return TrainConfig(kind=self.method.kind, **{**self.training_defaults(), **overrides})

    def start_run(self, config: TrainConfig | None = None, name: str | None = None) -> Run:
        """Start training the session's method on its task, in the background."""
        bundle = self.require_ready()
        config = config or self.default_config()
        if config.kind != self.method.kind:
            raise SettingsError(f"{self.method.label} trains a {self.method.kind} vector, but the settings say {config.kind!r}.")
        if config.kind == "sparse" and bundle.sae is None:
            raise SettingsError(f"{self.method.label} needs an SAE; this model was loaded without one. "
                                "Use a dense method (BiPO, CAA) or load an SAE.")
        if config.kind == "dense" and bundle.sae is None and config.layer is None:
            config = replace(config, layer=bundle.layer)
        if sum(r.active for r in self.runs.values()) >= 2:
            raise SettingsError("two runs are already going in this session; stop one or wait for it.")
        if len(self.runs) + len(self.files) >= self.max_runs:
            raise SettingsError(f"this session keeps at most {self.max_runs} vectors; remove one first (Train page).")
        self._counter += 1
        run_id = f"run{self._counter}"
        name = name or f"{self._counter}. {self.method.label.split()[0]} · {self.task.label}"
        run = Run(run_id, name, self.method, config, self.task, bundle)
        run.chunk_seconds = chunk_seconds()
        self.runs[run_id] = run
        run.start(self.limiter)
        return run

    def stop_all(self) -> int:
        active = [r for r in self.runs.values() if r.active]
        for r in active:
            r.stop()
        return len(active)

    def delete(self, label: str) -> None:
        """Forget a run (stopping it) or a loaded vector."""
        for run_id, run in list(self.runs.items()):
            if run.name == label:
                run.stop()
                del self.runs[run_id]
                return
        if self.files.pop(label, None) is None:
            raise SettingsError(f"no vector named {label!r} in this session.")

    # -- vectors --

    def vectors(self) -> dict[str, VectorEntry]:
        """Every usable vector, runs first (a run's vector is its last good one, also mid-training)."""
        out = {}
        for run in self.runs.values():
            vec = run.vector
            if vec is not None:
                out[run.name] = VectorEntry(run.name, vec, run.bundle, run.task, "run")
        out.update(self.files)
        return out

    def entry(self, label: str | None) -> VectorEntry:
        entries = self.vectors()
        if not label or label not in entries:
            raise SettingsError("choose a vector: train one on the Train page or load a file on the Export page.")
        return entries[label]

    def load_vector_file(self, path: str | os.PathLike) -> VectorEntry:
        """Load a ``.safetensors`` vector, checked against the current model and SAE."""
        from .export import load_vector

        if self.bundle is None:
            raise SettingsError("load the model the vector was made for on the Setup page first.")
        if len(self.runs) + len(self.files) >= self.max_runs:
            raise SettingsError(f"this session keeps at most {self.max_runs} vectors; remove one first (Train page).")
        path = check_upload(path, (".safetensors",), "vector file")
        b = self.bundle
        vector = load_vector(path, b.model, b.sae, allow_other_model=False)
        if vector.kind == "sparse" and b.sae is None:
            raise VectorFileError("this is a sparse vector, but the model was loaded without an SAE.")
        label = f"file · {path.name}"
        n = 2
        while label in self.files:
            label, n = f"file · {path.name} ({n})", n + 1
        entry = VectorEntry(label, vector, b, self.task, "file")
        self.files[label] = entry
        return entry

    # -- using vectors --

    def test_prompts(self, label: str | None = None, n: int = 50) -> list[str]:
        """Prompts of the test split of the vector's task (or the session's task)."""
        task = self.entry(label).task if label else self.task
        task = task or self.task
        return [p.prompt for p in spread(task.test.pairs, n)] if task else []

    def generate_stream(self, label: str, prompt: str, multipliers: Sequence[float], max_new_tokens: int = 64,
                        do_sample: bool = False, temperature: float = 1.0, seed: int = 0,
                        steer_positions: str = "all") -> Iterator[dict[float, str]]:
        """Answers to ``prompt`` at each multiplier, streamed; one batched call, same settings and seed.
        ``steer_positions``: ``"all"`` (the method) or ``"prompt"`` (see :func:`~yapo_core.generation.generate`)."""
        from .streaming import stream_generate

        if not prompt or not prompt.strip():
            raise SettingsError("enter a prompt, or pick one from the test split.")
        if not 1 <= max_new_tokens <= 512:
            raise SettingsError(f"max new tokens must be between 1 and 512, not {max_new_tokens}.")
        e = self.entry(label)
        b = e.bundle
        for partial in stream_generate(b.model, b.tokenizer, prompt.strip(), e.vector, multipliers, lock=b.lock,
                                       sae=b.sae, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                       temperature=temperature, seed=seed, steer_positions=steer_positions):
            yield partial[0]

    def sweep(self, label: str, multipliers: Sequence[float], max_pairs: int = 64) -> list[tuple[float, float]]:
        """Held-out preference accuracy of a vector at each multiplier, on its task's test split."""
        from .evaluation import preference_accuracy

        e = self.entry(label)
        if e.task is None or not len(e.task.test):
            raise SettingsError("this vector has no task with a test split; load a task first.")
        pairs = spread(e.task.test.pairs, max_pairs)
        b = e.bundle
        with b.lock:
            return [(float(m), preference_accuracy(b.model, b.tokenizer, pairs, e.vector, float(m), sae=b.sae))
                    for m in multipliers]

    EVAL_METRICS = {
        "preference": "held-out preference accuracy",
        "mcq": "MCQ accuracy (answer-letter likelihood)",
        "behaviour": "behaviour rate (A/B: picks the behaviour's option)",
        "generation": "generation accuracy (the greedy answer contains the chosen one)",
        "generation_prompt": "generation accuracy, steering the prompt tokens only",
    }

    def evaluate(self, labels: Sequence[str], metric: str, multipliers: Sequence[float],
                 max_items: int = 64) -> list[tuple[str, list[tuple[float, float]]]]:
        """One curve per vector: ``metric`` on its task's test split at each multiplier.

        ``mcq`` needs test pairs whose chosen answer is an option letter (Deep-Culture-Lense MCQ,
        the demo world's MCQ tasks); ``behaviour`` needs BiPO-style A/B pairs; ``generation``
        (open answers) counts greedy answers that contain the chosen one; ``generation_prompt``
        does the same with only the prompt tokens steered (``steer_positions="prompt"``).
        """
        from . import evaluation as ev

        if metric not in self.EVAL_METRICS:
            raise SettingsError(f"metric {metric!r} is unknown; use one of {sorted(self.EVAL_METRICS)}.")
        if not labels:
            raise SettingsError("choose at least one vector to evaluate.")
        curves = []
        for label in labels:
            e = self.entry(label)
            if e.task is None or not len(e.task.test):
                raise SettingsError(f"{label}: this vector has no task with a test split; load a task first.")
            pairs = spread(e.task.test.pairs, max_items)
            b = e.bundle
            if metric == "preference":
                fn = lambda m: ev.preference_accuracy(b.model, b.tokenizer, pairs, e.vector, m, sae=b.sae)  # noqa: E731
            elif metric in ("generation", "generation_prompt"):
                where = "prompt" if metric == "generation_prompt" else "all"
                fn = lambda m: ev.generation_accuracy(b.model, b.tokenizer, [p.prompt for p in pairs],  # noqa: E731
                                                      [p.chosen for p in pairs], e.vector, m, sae=b.sae,
                                                      steer_positions=where)
            else:
                try:
                    items = ev.mcq_items_from_pairs(pairs, "AB" if metric == "behaviour" else None)
                except DataError as exc:
                    raise SettingsError(f"{label}: {exc} Use the preference metric for open answers.") from None
                fn = lambda m: ev.mcq_accuracy(b.model, b.tokenizer, items, e.vector, m, sae=b.sae)  # noqa: E731
            with b.lock:
                curves.append((label, list(ev.sweep(fn, multipliers).items())))
        return curves

    def capability(self, labels: Sequence[str], multiplier: float = 1.0, n: int = 48) -> list[dict]:
        """General ability with and without each vector: the demo world's general questions
        (greedy answers) for the demo model; a small MMLU subset (needs the Hub) for others."""
        from . import evaluation as ev

        rows = []
        for label in labels:
            e = self.entry(label)
            b = e.bundle
            general = self._demo_general_questions(b)
            with b.lock:
                if general is not None:
                    prompts, answers = general[0][:n], general[1][:n]
                    measure = lambda: ev.generation_accuracy(b.model, b.tokenizer, prompts, answers, max_new_tokens=8)  # noqa: E731
                    what = f"demo general questions ({len(prompts)})"
                else:
                    items = ev.load_mmlu_subset(n)
                    measure = lambda: ev.mcq_accuracy(b.model, b.tokenizer, items)  # noqa: E731
                    what = f"MMLU subset ({len(items)})"
                result = ev.capability_change(measure, b.model, e.vector, multiplier, b.sae)
            rows.append({"vector": label, "measure": what, "multiplier": multiplier, **result})
        return rows

    @staticmethod
    def _demo_general_questions(bundle: "Bundle"):
        from .demo import list_demo_tasks, load_demo_world

        world = load_demo_world(size=demo_size())
        if world is None or Path(bundle.spec.model).resolve() != Path(world.model_dir).resolve():
            return None
        general = next(t for t in list_demo_tasks(world) if t["kind"] == "general")
        import pandas as pd

        table = pd.read_json(general["paths"]["questions"], lines=True)
        return list(table["prompt"]), list(table["answer"])

    def features(self, label: str, k: int = 10, n_texts: int = 32, lens_k: int = 8):
        """The feature report of a vector, with activations on its task's test pairs."""
        from .features import dialogue_texts, feature_report

        e = self.entry(label)
        b = e.bundle
        if b.sae is None:
            raise SettingsError("feature cards need an SAE; this model was loaded without one.")
        task = e.task or self.task
        pairs = (task.test.pairs + task.train.pairs)[:n_texts] if task else []
        with b.lock:
            texts = dialogue_texts(b.tokenizer, pairs)
            return feature_report(e.vector, b.model, b.tokenizer, b.sae, texts, k=k, lens_k=lens_k)

    def export(self, label: str, multiplier: float = 1.0) -> ExportResult:
        """Write the vector as ``.safetensors`` and as a llama.cpp GGUF control vector."""
        from .export import export_gguf, save_vector

        e = self.entry(label)
        b = e.bundle
        stem = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()[:80] or "vector"
        folder = Path(tempfile.mkdtemp(prefix="export-", dir=self.workdir()))
        st = save_vector(e.vector, folder / f"{stem}.safetensors", sae=b.sae)
        gguf, gguf_error, dropped = None, None, None
        try:
            info = export_gguf(e.vector, folder / f"{stem}.m{multiplier:+g}.gguf", b.model, b.sae, multiplier)
            gguf, dropped = Path(info["path"]), float(info["dropped_fraction"])
        except YapoError as exc:
            gguf_error = str(exc)
        return ExportResult(st, gguf, gguf_error, dropped, e.vector.layer, float(multiplier))

    # -- lifetime --

    def workdir(self) -> Path:
        """A private folder for this session's files (exports), removed by :meth:`close`."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="yapo-session-"))
        return self._workdir

    def close(self) -> None:
        """Stop this session's runs and remove its files (the app calls it when the tab is gone)."""
        self.stop_all()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


__all__ = [
    "Bundle", "Catalog", "ExportResult", "JobLimiter", "LoadSpec", "METHODS", "Method", "ModelStore", "Preset",
    "Preview", "Run", "Session", "Task", "TaskSpec", "VectorEntry",
    "demo_task_names", "demo_world_ready", "ensure_demo_world", "load_catalog", "load_task", "preview_file",
]
