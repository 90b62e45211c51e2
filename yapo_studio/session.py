"""One user's workspace: a loaded model + SAE, a task, training runs in the background, vectors.

The app keeps one :class:`Session` per browser session (never in a module global), so two users
never see each other's runs; a script can use the same object. Shared across sessions, and
passed in by whoever creates them:

- :class:`~.store.ModelStore`: loaded models are reused between sessions;
- :class:`~.runs.JobLimiter`: bounds how many training runs compute at once; later runs wait, "queued".

Everything here is a thin layer over :mod:`yapo_core`: a script or notebook can call the same
functions directly.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

from yapo_core import checks, replies
from yapo_core import evaluation as ev
from yapo_core.comparison import ComparisonResult, compare_methods
from yapo_core.demo import TRAINING, caveats, settings_by_method, training_settings
from yapo_core.errors import SettingsError, VectorFileError, YapoError
from yapo_core.export import export_gguf, load_vector, save_vector
from yapo_core.features import dialogue_texts, feature_report
from yapo_core.generation import stream_generate
from yapo_core.methods import METHODS, Method, get_method
from yapo_core.steering import SteeringVector
from yapo_core.training import TrainConfig

from .catalog import Catalog, Preset, check_public_sources, spec_for
from .runs import JobLimiter, Run, chunk_seconds, one_step_at_a_time, settings_changed, training_slot
from .settings import current
from .store import Bundle, ModelStore
from .tasks import Task, TaskSpec, check_upload, evenly_spaced, load_task
from .zero_gpu import zero_gpu_active


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


def _scored_pairs(task, metric: str, max_items: int) -> list:
    """The pairs :meth:`Session.evaluate` scores ``metric`` on: at most ``max_items``, evenly spaced,
    from the split the metric needs."""
    return evenly_spaced(task.pairs_for(metric).pairs, max_items)


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
        self._comparisons: set[threading.Event] = set()  # the stop of each method comparison going on
        self.files: dict[str, VectorEntry] = {}
        self._counter = 0
        self._added: dict[str, int] = {}  # every label given, removed vectors' too (never given again), and its
        # place in the order they came: vectors() lists them so, and a page tells a new vector by its label
        self._workdir: Path | None = None
        self.task_spec: TaskSpec | None = None  # what the loaded task was asked as (a page that comes back shows it)

    # -- setup --

    def load_preset(self, preset: Preset, **custom) -> Bundle:
        """Load a preset's model and SAE (custom presets take ``model``, ``sae_release``,
        ``sae_id``, ``sae_path``, ``layer``). The task and earlier runs stay: runs keep the model
        they were trained with, so their vectors remain usable."""
        if preset.custom:
            check_public_sources(self.catalog, **custom)
        spec = spec_for(preset, **custom)
        self.bundle = self.store.get(spec, label=preset.label if not preset.custom else spec.describe())
        self.preset = preset
        return self.bundle

    def set_method(self, key: str) -> Method:
        self.method = get_method(key)
        return self.method

    def method_caveat(self, *methods: str) -> str:
        """What a user must know about ``methods`` (by key; the session's method when none) on the
        loaded task, each distinct note once; "" without a task or a note."""
        if self.task is None:
            return ""
        return caveats.notes_for(self.task.method_caveats, methods or (self.method.key,))

    def load_task(self, spec: TaskSpec) -> Task:
        default_rejected = self.preset.dcl_rejected_model if self.preset else None
        self.task = load_task(spec, self.catalog.tasks if self.catalog else {}, default_rejected)
        self.task_spec = spec
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
        (the demo world's depend on the loaded task's kind and answers: :func:`yapo_core.demo.training_settings`);
        empty when there are none."""
        if self.preset is None:
            return {}
        if self.preset.demo:
            return training_settings(self.task.train, self.method.kind) if self.task is not None else dict(TRAINING)
        return dict(self.preset.train or {})

    def default_config(self, **overrides) -> TrainConfig:
        return TrainConfig(kind=self.method.kind, **{**self.training_defaults(), **overrides})

    def start_run(self, config: TrainConfig | None = None, name: str | None = None) -> Run:
        """Start training the session's method on its task, in the background."""
        bundle = self.require_ready()
        config = config or self.default_config()
        if not isinstance(config, TrainConfig):
            raise SettingsError(f"the run's settings must be a TrainConfig, not a {type(config).__name__}.")
        if config.kind != self.method.kind:
            raise SettingsError(f"{self.method.label} trains a {self.method.kind} vector, but the settings say {config.kind!r}.")
        if config.kind == "sparse" and bundle.sae is None:
            raise SettingsError(f"{self.method.label} needs an SAE; this model was loaded without one. "
                                "Use a dense method (BiPO, CAA) or load an SAE.")
        if config.kind == "dense" and bundle.sae is None and config.layer is None:
            config = replace(config, layer=bundle.layer)
        config = replace(config, max_steps=self._within_step_cap(config.max_steps))
        twin = next((r for r in self.run_list() if r.active and r.method.key == self.method.key and r.task is self.task
                     and r.bundle is bundle and r.config == config), None)
        if twin is not None:  # a second click on Start: the same vector again (training is deterministic)
            raise SettingsError(f"“{twin.name}” is already training this method on this task with these settings, "
                                "which give the same vector; wait for it, or change a setting (the seed, say).")
        if sum(r.active for r in self.run_list()) >= 2:
            raise SettingsError("two runs are already going in this session; stop one or wait for it.")
        if len(self.runs) + len(self.files) >= self.max_runs:
            raise SettingsError(f"this session keeps at most {self.max_runs} vectors; remove one first (Train page).")
        self._counter += 1
        run_id = f"run{self._counter}"
        defaults = self.default_config(layer=config.layer)  # named as run: a step limit by the app's cap
        defaults = replace(defaults, max_steps=min((n for n in (defaults.max_steps, current().max_steps) if n), default=None))
        name = name or f"{self._counter}. {self.method.label.split()[0]} · {self.task.label}" + settings_changed(config, defaults)
        run = Run(run_id, name, self.method, config, self.task, bundle)
        run.chunk_seconds = chunk_seconds()
        self.runs[run_id] = run
        self._added[name] = len(self._added)
        run.start(self.limiter)
        return run

    def run_list(self) -> list[Run]:
        """The runs, oldest first, as a copy: a page's timer reads them while another event of the
        same tab adds or removes one, and a live view of the dict would fail mid-loop."""
        return list(self.runs.values())

    def stop_all(self) -> int:
        """Stop every active run of this session and its method comparison; how many runs were stopped."""
        for comparison in list(self._comparisons):
            comparison.set()
        active = [r for r in self.run_list() if r.active]
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
        """Every usable vector, oldest first, trained and loaded alike (a run's vector is its last
        good one, also mid-training)."""
        out = dict(self.files)
        for run in self.run_list():
            vec = run.vector
            if vec is not None:
                out[run.name] = VectorEntry(run.name, vec, run.bundle, run.task, "run")
        return dict(sorted(out.items(), key=lambda item: self._added.get(item[0], -1)))

    def entry(self, label: str | None) -> VectorEntry:
        entries = self.vectors()
        if not label or label not in entries:
            raise SettingsError("choose a vector: train one on the Train page or load a file on the Export page.")
        return entries[label]

    def load_vector_file(self, path: str | os.PathLike) -> VectorEntry:
        """Load a ``.safetensors`` vector, checked against the current model and SAE."""
        if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
            raise SettingsError("upload a .safetensors vector file first.")
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
        while label in self._added:
            label, n = f"file · {path.name} ({n})", n + 1
        entry = VectorEntry(label, vector, b, self.task, "file")
        self.files[label] = entry
        self._added[label] = len(self._added)
        return entry

    # -- using vectors --

    def task_for(self, label: str | None) -> Task | None:
        """The task of the vector ``label`` (a file's: the session's task), or without one the session's."""
        return (self.entry(label).task if label else None) or self.task

    def test_pairs(self, label: str | None = None, n: int = 50) -> list:
        """``n`` pairs, evenly spaced, of the test split of :meth:`task_for` ``label``."""
        task = self.task_for(label)
        return list(evenly_spaced(task.test.pairs, n)) if task else []

    def generate_stream(self, label: str, prompt: str, multipliers: Sequence[float], max_new_tokens: int = 64,
                        do_sample: bool = False, temperature: float = 1.0, seed: int = 0,
                        steer_positions: str = "all") -> Iterator[dict[float, str]]:
        """Answers to ``prompt`` at each multiplier, streamed; one batched call, same settings and seed.
        ``steer_positions``: ``"all"`` (the method) or ``"prompt"`` (see :func:`~yapo_core.generation.generate`)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise SettingsError("enter a prompt, or pick one from the test split.")
        checks.whole("max new tokens", max_new_tokens, 1)
        limits = current()
        if not 1 <= max_new_tokens <= limits.max_new_tokens:
            raise SettingsError(f"max new tokens must be between 1 and {limits.max_new_tokens}, not {max_new_tokens} "
                                "(YAPO_MAX_NEW_TOKENS sets the limit).")
        if len(prompt) > limits.max_prompt_chars:
            raise SettingsError(f"the prompt has {len(prompt):,} characters; this app takes at most "
                                f"{limits.max_prompt_chars:,} (YAPO_MAX_PROMPT_CHARS sets the limit).")
        e = self.entry(label)
        b = e.bundle
        for partial in stream_generate(b.model, b.tokenizer, prompt.strip(), e.vector, multipliers, lock=b.lock,
                                       sae=b.sae, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                       temperature=temperature, seed=seed, steer_positions=steer_positions):
            yield partial[0]

    def fluency_problem(self, label: str, reply: str, unsteered: str, max_new_tokens: int) -> str | None:
        """Why the steered ``reply`` from :meth:`generate_stream` does not read like text while the
        ``unsteered`` answer to the same prompt does, or None (:func:`yapo_core.replies.steering_derails`)."""
        return replies.steering_derails(self.entry(label).bundle.tokenizer, reply, unsteered, max_new_tokens)

    def evaluate(self, labels: Sequence[str], metric: str, multipliers: Sequence[float], max_items: int = 64,
                 steer_positions: str = "all") -> list[tuple[str, list[tuple[float, float]]]]:
        """One curve per vector: ``metric`` (a key of :data:`yapo_core.evaluation.METRICS`) on at most
        ``max_items`` pairs of its task's test split, at each multiplier. ``steer_positions`` applies to
        the generating metrics: ``"all"`` (the method) or ``"prompt"`` (:func:`~yapo_core.generation.generate`)."""
        ev.get_metric(metric)
        checks.whole("max_items", max_items, 1)
        if not labels:
            raise SettingsError("choose at least one vector to evaluate.")
        curves = []
        for label in labels:
            e = self.entry(label)
            if e.task is None or not len(e.task.test):
                raise SettingsError(f"{label}: this vector has no task with a test split; load a task first.")
            pairs = _scored_pairs(e.task, metric, max_items)
            b = e.bundle
            curve = ev.evaluate_metric(metric, b.model, b.tokenizer, pairs, e.vector, multipliers, sae=b.sae,
                                       steer_positions=steer_positions, guard=lambda: b.lock)  # a multiplier at a time
            curves.append((label, list(curve.items())))
        return curves

    def letter_baselines(self, labels: Sequence[str], metric: str, max_items: int = 64) -> list[tuple[str, float]]:
        """For an MCQ metric, one ``(label, accuracy)`` per task of these vectors: the accuracy of
        answering one letter everywhere on the pairs :meth:`evaluate` scores (see
        :func:`yapo_core.evaluation.one_letter_baseline`); none for the other metrics."""
        out = {}
        for label in labels:
            task = self.entry(label).task
            if task is None or task.label in out or not len(task.test):
                continue
            found = ev.one_letter_baseline(metric, _scored_pairs(task, metric, max_items))
            if found is not None:
                out[task.label] = (f"{ev.one_letter_label(found[0])} · {task.label}", found[1])
        return list(out.values())

    def compare(self, metric: str, multipliers: Sequence[float], methods: Sequence[str] = tuple(METHODS),
                max_steps: int | None = None, max_items: int = 64, on_progress=None) -> ComparisonResult:
        """YaPO, BiPO, CAA and SAS (or ``methods``) on the loaded task, as
        :func:`yapo_core.comparison.compare_methods` does it: each trained or computed on the
        training pairs less a validation split, its multiplier chosen on that split, ``metric``
        measured on the task's split for it, with the capability change on the demo world."""
        bundle = self.require_ready()
        if bundle.sae is None:
            raise SettingsError("comparing the methods needs an SAE (YaPO and SAS work in its latents); load one.")
        test = evenly_spaced(self.task.pairs_for(metric).pairs, checks.whole("max_items", max_items, 1))
        config = asdict(self.default_config(**({"max_steps": max_steps} if max_steps else {})))
        config.pop("kind")
        config["max_steps"] = self._within_step_cap(config["max_steps"])
        if config["max_steps"]:  # the step count ends the runs, not the epochs (the fitting split has fewer
            config["epochs"] = config["max_steps"]  # pairs per epoch); an epoch has at least one step
        own = {}  # a method whose kind has other demo defaults (the dense rate for open answers)
        if self.preset is not None and self.preset.demo:
            own = settings_by_method(self.task.train, methods, self.method.kind,
                                     keep=("max_steps",) if max_steps else ())
        demo = ev.demo_capability(bundle.model, bundle.tokenizer)
        capability = demo[0] if demo is not None else None
        stop = threading.Event()  # set by Stop on Train (stop_all) and when the page is gone (close)
        self._comparisons.add(stop)
        # it trains, so it takes a training slot in turn with the runs, and holds the model a step at a time;
        # on ZeroGPU it is a GPU call of its own, in a worker process that no slot, lock or Stop of this one reaches
        gpu_call = zero_gpu_active()
        try:
            with contextlib.nullcontext() if gpu_call else training_slot(self.limiter, stop, "the method comparison",
                                                                          on_progress):
                return compare_methods(bundle.model, bundle.tokenizer, bundle.sae, self.task.train.pairs, test,
                                       capability, methods, multipliers, config, task=self.task.label,
                                       on_progress=on_progress, metric=metric,
                                       guard=contextlib.nullcontext if gpu_call else one_step_at_a_time(
                                           bundle.lock, stop, "the method comparison"),
                                       method_configs={k: v for k, v in own.items() if v})
        finally:
            self._comparisons.discard(stop)

    def metrics_for(self, labels: Sequence[str]) -> dict[str, str]:
        """The metrics that can score every one of these vectors' tasks, each with the split it is
        measured on (e.g. ``{"preference": "test", "behaviour": "test_infer"}``); where the tasks
        measure a metric on different splits, each vector on its own, both are named
        (``"test_infer / test"``)."""
        found: dict[str, list[str]] | None = None
        for label in labels:
            task = self.entry(label).task
            here = task.metrics() if task is not None else {}
            found = ({k: [v] for k, v in here.items()} if found is None else
                     {k: v + [here[k]] * (here[k] not in v) for k, v in found.items() if k in here})
        return {k: " / ".join(v) for k, v in (found or {}).items()}

    def capability(self, labels: Sequence[str], multiplier: float = 1.0, n: int = 48) -> list[dict]:
        """General ability with and without each vector: the demo world's general questions
        (greedy answers, all of them) for the demo model; ``n`` MMLU questions (needs the Hub)
        for others."""
        if not labels:
            raise SettingsError("choose at least one vector to check.")
        rows = []
        measures: dict[int, tuple] = {}  # per model: its measure (MMLU fetched once, not under the lock) and,
        unsteered: dict[int, float] = {}  # once taken, the measure without a vector
        for label in labels:
            e = self.entry(label)
            b = e.bundle
            if id(b.model) not in measures:
                measures[id(b.model)] = ev.capability_measure(b.model, b.tokenizer, n)
            measure, what = measures[id(b.model)]
            with b.lock:
                result = ev.capability_change(measure, b.model, e.vector, multiplier, b.sae,
                                              unsteered=unsteered.get(id(b.model)))
            unsteered[id(b.model)] = result["unsteered"]
            rows.append({"vector": label, "measure": what, "multiplier": multiplier, **result})
        return rows

    @staticmethod
    def _within_step_cap(max_steps: int | None) -> int | None:
        """``max_steps`` under the app's limit (``YAPO_MAX_STEPS``): refused above it, the limit
        itself when not given; unchanged when there is no limit."""
        cap = current().max_steps
        if cap is None:
            return max_steps
        if max_steps is not None and max_steps > cap:
            raise SettingsError(f"max steps {max_steps} is above this app's limit of {cap} per run "
                                "(YAPO_MAX_STEPS sets it); lower it, or run the app yourself.")
        return max_steps or cap

    def features(self, label: str, k: int = 10, n_texts: int = 32, lens_k: int = 8):
        """The feature report of a vector, with activations on its task's test pairs."""
        for name, value in (("k", k), ("n_texts", n_texts), ("lens_k", lens_k)):
            checks.whole(name, value, 1)
        e = self.entry(label)
        b = e.bundle
        if b.sae is None:
            raise SettingsError("feature cards need an SAE; this model was loaded without one.")
        task = self.task_for(label)
        pairs = (task.test.pairs + task.train.pairs)[:n_texts] if task else []
        with b.lock:
            texts = dialogue_texts(b.tokenizer, pairs)
            return feature_report(e.vector, b.model, b.tokenizer, b.sae, texts, k=k, lens_k=lens_k)

    def export(self, label: str, multiplier: float = 1.0) -> ExportResult:
        """Write the vector as ``.safetensors`` and as a llama.cpp GGUF control vector."""
        (multiplier,) = checks.multipliers([multiplier], "multiplier")
        e = self.entry(label)
        b = e.bundle
        # a loaded file's name, not its label ("file · morocco.safetensors (2)" exports as morocco-2.safetensors)
        name = label.removeprefix("file · ").replace(".safetensors", "") if e.source == "file" else label
        stem = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:80] or "vector"
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
