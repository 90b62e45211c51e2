"""The demo world: where a built world lives, its typed tasks, and the build that makes it.

A build (:func:`build_demo_world`) runs the stages in order, deterministically from a seed:
the corpus (:mod:`.corpus`), the tokenizer and language model (:mod:`.build_lm`), the SAE
(:mod:`.build_sae`) and the task files (:mod:`.build_tasks`). A finished build is marked by a
completion file written last, and reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers
from tqdm.auto import tqdm

from .. import checks
from .._cpu import MKL_PINNED, X86_64, mkl_branch, native_requested
from ..data import PairSet, load_pairs
from ..errors import SettingsError, YapoError
from ..hooks import HookPoint
from . import corpus
from .build_lm import train_lm, train_tokenizer
from .build_tasks import write_tasks
from .config import BUILD_SIZES, BUILD_THREADS, DEMO_MODEL_NAME, FORMAT_VERSION, BuildSize, build_size, is_recipe
from .staging import COMPLETE_MARKER, build_running, no_transformers_bars, one_build_at_a_time, replace_world

CAPABILITY_TOKENS = 8
"""New tokens a general question's answer is read from (the answers are one or two words)."""


@dataclass(frozen=True)
class DemoTask:
    """One task of a demo world and its files.

    Culture tasks of all countries share one table per split (as in Deep-Culture-Lense); a task's
    rows are selected by ``country``. The default culture's non-localized rows mostly have
    ``rejected == chosen`` (the model already answers that way), which ``is_default`` flags.
    """

    name: str
    kind: str  # "culture", "behaviour" or "general"
    format: str  # "deep-culture-lense", "bipo" or "general"
    paths: dict[str, Path]
    country: str | None = None
    is_default: bool = False

    @property
    def trainable(self) -> bool:
        return self.kind in ("culture", "behaviour")

    def pairs(self, split: str = "train", form: str = "mcq", localization: str = "nolocalized",
              limit: int | None = None) -> PairSet:
        """Preference pairs of ``split`` through the public loader (:func:`yapo_core.load_pairs`).

        Culture: the ``form`` (``mcq`` or ``open_ended``) and ``localization`` rows of this
        country. Behaviour: ``train``/``test`` open answers, or ``test_infer`` A/B questions.
        """
        if self.kind == "culture":
            return load_pairs(self.paths[split], schema="dcl", country=self.country, localization=localization,
                              form=form, limit=limit)
        if self.kind == "behaviour":
            return load_pairs(self.paths[split], schema="bipo_ab" if split == "test_infer" else "bipo", limit=limit)
        raise YapoError(f"demo task {self.name!r} holds general questions, not preference pairs.")


TASK_KINDS: dict[str, str] = {**{f"culture-{country}": "culture" for country in corpus.COUNTRY_KEYS},
                              **{behaviour.key: "behaviour" for behaviour in corpus.BEHAVIOURS}, "general": "general"}
"""Every demo task's name and kind (``culture``, ``behaviour``, ``general``), known before any build."""


def _tasks_of(world: "DemoWorld") -> list[DemoTask]:
    culture = world.tasks_dir / "culture"
    tasks = [
        DemoTask(f"culture-{country}", "culture", "deep-culture-lense",
                 {"train": culture / "train.jsonl", "test": culture / "test.jsonl"},
                 country=country, is_default=country == corpus.DEFAULT_COUNTRY)
        for country in corpus.COUNTRY_KEYS
    ]
    for behaviour in corpus.BEHAVIOURS:
        folder = world.tasks_dir / "behaviour" / behaviour.key
        tasks.append(DemoTask(behaviour.key, "behaviour", "bipo",
                              {split: folder / f"{split}.jsonl" for split in ("train", "test", "test_infer")}))
    general = world.tasks_dir / "general"
    tasks.append(DemoTask("general", "general", "general",
                          {"questions": general / "questions.jsonl", "text": general / "text.jsonl"}))
    return tasks


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class DemoWorld:
    """Where a built demo world lives, and what its build measured (``stats.json``)."""

    root: Path
    model_dir: Path
    sae_dir: Path
    layer: int
    tasks_dir: Path
    stats: dict = field(default_factory=dict)

    @property
    def hook_name(self) -> str:
        return HookPoint.block_output(self.layer).hook_name

    def tasks(self, kind: str | None = None) -> list[DemoTask]:
        """The world's tasks (one culture task per country, one per behaviour, general), or
        those of one ``kind``."""
        return [t for t in _tasks_of(self) if kind is None or t.kind == kind]

    def task(self, name: str) -> DemoTask:
        """The task called ``name`` (``culture-egypt``, ``power-seeking``, ``general``)."""
        for t in _tasks_of(self):
            if t.name == name:
                return t
        raise YapoError(f"demo task {name!r} is unknown; the demo world has {', '.join(t.name for t in _tasks_of(self))}.")

    def culture(self, country: str) -> DemoTask:
        """The culture task of ``country``."""
        if country not in corpus.COUNTRY_KEYS:
            raise YapoError(f"country {country!r} is not in the demo world; use one of {', '.join(corpus.COUNTRY_KEYS)}.")
        return self.task(f"culture-{country}")

    def general_questions(self, n: int | None = None) -> tuple[list[str], list[str]]:
        """The general questions (arithmetic, facts) and their answers, for capability checks."""
        rows = _read_jsonl(self.task("general").paths["questions"])[:n]
        return [r["prompt"] for r in rows], [r["answer"] for r in rows]

    def capability_measure(self, model, tokenizer) -> Callable[[], float]:
        """The demo world's capability measure: the share of all its general questions (sums,
        colours, opposites, days, number words) that ``model`` answers right, greedily, within
        :data:`CAPABILITY_TOKENS` tokens; unsteered, the build's ``general questions accuracy``.
        Call it inside a steering context to measure the steered model. The app, ``yapo compare``, ``yapo eval --capability``
        and ``scripts/evaluate_demo_world.py`` all measure with it."""
        from ..replies import generation_accuracy  # replies reads the demo package too

        prompts, answers = self.general_questions()
        return lambda: generation_accuracy(model, tokenizer, prompts, answers, max_new_tokens=CAPABILITY_TOKENS)


def default_cache_dir(seed: int = 0, size: str = "full") -> Path:
    """``$YAPO_CACHE_DIR`` (default ``~/.cache/yapo-studio``) ``/demo/v<format>-seed<seed>``.

    The mini world gets a ``-mini`` suffix so that a test build never replaces the real one.
    """
    base = Path(os.environ.get("YAPO_CACHE_DIR") or Path.home() / ".cache" / "yapo-studio").expanduser()
    return base / "demo" / (f"v{FORMAT_VERSION}-seed{seed}" + ("" if size == "full" else f"-{size}"))


def _world_at(root: Path, layer: int, stats: dict | None = None) -> DemoWorld:
    return DemoWorld(
        root=root,
        model_dir=root / "model",
        sae_dir=root / "sae",
        layer=layer,
        tasks_dir=root / "tasks",
        stats=stats or {},
    )


def _read_complete(root: Path) -> dict | None:
    marker = root / COMPLETE_MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_demo_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the model folder of a finished demo world (any seed, size or knobs)."""
    folder = Path(path).expanduser()
    return folder.name == "model" and _read_complete(folder.parent) is not None


def world_of_model(path: str | os.PathLike) -> DemoWorld | None:
    """The demo world whose model folder ``path`` is (any seed, size or knobs), or None."""
    if not is_demo_model(path):
        return None
    root = Path(path).expanduser().parent
    stats_path = root / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    return _world_at(root, _read_complete(root)["layer"], stats)


def load_demo_world(cache_dir: str | os.PathLike | None = None, seed: int = 0, size: str = "full",
                    knobs: Mapping[str, float] | None = None) -> DemoWorld | None:
    """The finished world at ``cache_dir`` (or the default folder) built with these research
    ``knobs`` (none: the default world's recipe, ``config.RECIPE_KNOBS``) on the CPU kernels torch uses now, or None when
    there is none (a world built on other kernels is another model: ``yapo_core._cpu``)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(seed, size)
    marker = _read_complete(root)
    if marker is None or marker.get("format_version") != FORMAT_VERSION:
        return None
    if marker.get("seed") != seed or marker.get("size") != size:
        return None
    stats = json.loads((root / "stats.json").read_text())
    if stats.get("knobs", {}) != build_size(size, knobs).knobs:
        return None
    built_on = stats.get("machine", {})
    if built_on.get("torch_cpu_capability", torch.backends.cpu.get_cpu_capability()) != \
            torch.backends.cpu.get_cpu_capability() or built_on.get("mkl_branch", "auto") != mkl_branch():
        return None
    return _world_at(root, marker["layer"], stats)


def demo_world_building(cache_dir: str | os.PathLike | None = None, seed: int = 0, size: str = "full") -> bool:
    """Whether a build of the world at ``cache_dir`` (or the default folder) runs now, in any process."""
    return build_running(Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(seed, size))


def build_demo_world(
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    size: str = "full",
    force: bool = False,
    progress: bool = True,
    knobs: Mapping[str, float] | None = None,
) -> DemoWorld:
    """Build the demo world into ``cache_dir`` (default :func:`default_cache_dir`), or reuse it.

    A world is reused when its completion marker names the same format version, seed and size,
    and its stats the same research ``knobs`` (:data:`~.config.RESEARCH_KNOBS`, set on top of the
    recipe's :data:`~.config.RECIPE_KNOBS`; a variant world needs its own ``cache_dir``). Otherwise (or with ``force``) it is built in a sibling temporary
    folder and moved into place at the end, so an interrupted build never leaves a half-written
    world that looks finished. ``size="mini"`` is a seconds-scale build of the same pipeline, for tests.
    """
    sized = build_size(size, knobs)
    checks.whole("seed", seed, 0, 2**32 - 1)  # numpy's limit
    checks.folder("cache_dir", cache_dir)
    if not is_recipe(sized, size) and cache_dir is None:
        raise SettingsError(f"a world built with research knobs ({sized.knobs}) other than the default world's "
                            f"({BUILD_SIZES[size].knobs}) needs its own cache_dir, so that it does not replace "
                            "the default world.")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(seed, size)
    if not force and (world := load_demo_world(root, seed, size, knobs)) is not None:
        return world
    if cache_dir is None:  # a build: the folder it goes to must take files, named as the user sets it
        checks.folder("YAPO_CACHE_DIR", root.parent.parent)  # default_cache_dir's base: $YAPO_CACHE_DIR or its default
    with one_build_at_a_time(root):  # another process's build of this world: wait for it and take it
        if not force and (world := load_demo_world(root, seed, size, knobs)) is not None:
            return world
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
        checks.made_as_usual(staging)  # the world is read by whoever shares the cache, as a folder made by mkdir
        try:
            world = _build(staging, seed, sized, size, progress)
            replace_world(staging, root)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return _world_at(root, world.layer, world.stats)


@contextmanager
def _deterministic(seed: int):
    """Seed every generator the build touches and fix the thread count; restore threads after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def kernel_warning(capability: str, machine: str, mkl: str = MKL_PINNED) -> str | None:
    """What to tell a user whose build runs on other kernels than the stored worlds' (torch's and
    MKL's AVX2 ones on x86-64; ``yapo_core._cpu``), or None."""
    if machine.lower() not in X86_64 or capability == "DEFAULT" or (capability == "AVX2" and mkl == MKL_PINNED):
        return None  # no AVX2 (DEFAULT): no pin can apply, and no stored world to match
    kernels = " and ".join(([f"torch's {capability} kernels"] if capability != "AVX2" else [])
                           + ([f"MKL's {mkl} code path"] if mkl != MKL_PINNED else []))
    return (f"this demo world is built with {kernels}, which round differently from the AVX2 ones the stored "
            "worlds and their figures were built with, so it is another model. To rebuild the stored world, "
            "import yapo_core before torch runs anything, or set ATEN_CPU_CAPABILITY=avx2 and MKL_CBWR=AVX2 "
            "(YAPO_CPU_KERNELS=native asks for this on purpose).")


def _build(root: Path, seed: int, size: BuildSize, size_name: str, progress: bool) -> DemoWorld:
    note = kernel_warning(torch.backends.cpu.get_cpu_capability(), platform.machine(), mkl_branch())
    if note and not native_requested():
        warnings.warn(note, stacklevel=3)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    world = _world_at(root, size.layer)
    stages = tqdm(total=6, desc="demo world", disable=not progress, unit="stage")

    def stage(name: str) -> None:
        timings[name] = max(0.0, round(time.perf_counter() - started - sum(timings.values()), 2))  # never -0.0
        stages.set_postfix_str(name)
        stages.update(1)

    with _deterministic(seed):
        rng = random.Random(seed)
        culture_train, culture_test = corpus.split_question_keys(random.Random(rng.random()))
        behaviour_splits = {
            b.key: corpus.split_behaviour_keys(random.Random(rng.random()), b) for b in corpus.BEHAVIOURS
        }
        behaviour_train = [k for train, _ in behaviour_splits.values() for k in train]
        mix = size.mix
        examples = corpus.corpus_stream(
            random.Random(rng.random()), size.lm_training_examples, culture_train, behaviour_train, mix, size.style
        )
        stage("corpus")

        tokenizer = train_tokenizer(examples, size.vocab_size)
        stage("tokenizer")

        model = train_lm(tokenizer, examples, size, random.Random(rng.random()), progress)
        world.model_dir.mkdir(parents=True)
        with contextlib.nullcontext() if progress else no_transformers_bars():
            model.save_pretrained(world.model_dir)
        tokenizer.save_pretrained(world.model_dir)
        stage("model")

        activation_texts = corpus.corpus_stream(
            random.Random(rng.random()), size.sae_activation_sequences, culture_train, behaviour_train, mix, size.style
        )
        from .build_sae import train_sae  # sae-lens is imported by a build only, not by importing the demo package

        sae_stats = train_sae(model, tokenizer, activation_texts, size, world.hook_name, world.sae_dir, progress)
        stage("sae")

        task_stats = write_tasks(
            model, tokenizer, world.tasks_dir, culture_train, culture_test, behaviour_splits,
            size, random.Random(rng.random()), progress,
        )
        stage("tasks")

    stats = {
        "name": DEMO_MODEL_NAME,
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "size": size_name,
        "layer": size.layer,
        **({"knobs": size.knobs} if size.knobs else {}),  # the recipe's and a variant's (config.RESEARCH_KNOBS)
        "hook_name": world.hook_name,
        "model": {
            "architecture": "LlamaForCausalLM",
            "parameters": sum(p.numel() for p in model.parameters()),
            "hidden_size": size.hidden_size,
            "num_layers": size.num_layers,
            "vocab_size": len(tokenizer),
            "training_examples": size.lm_training_examples,
            "final_train_loss": round(model.demo_final_loss, 4),
        },
        "sae": sae_stats,
        **task_stats,
        "default_country": corpus.DEFAULT_COUNTRY,
        "countries": list(corpus.COUNTRY_KEYS),
        "versions": _versions(),
        "machine": _machine(),
    }
    stage("stats")
    stages.close()
    stats["build_seconds"] = round(time.perf_counter() - started, 1)
    stats["stage_seconds"] = timings
    stats["file_bytes"] = _file_sizes(root)
    (root / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    marker = {"format_version": FORMAT_VERSION, "seed": seed, "size": size_name, "layer": size.layer}
    (root / COMPLETE_MARKER).write_text(json.dumps(marker) + "\n")
    world.stats = stats
    return world


def _machine() -> dict[str, str | int]:
    """What the build's float results depend on besides the versions: the CPU, and the vector
    instructions torch's kernels and MKL's matrix products use on it (they round differently;
    docs/results.md)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    return {"cpu": cpu, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "mkl_branch": mkl_branch(),
            "build_threads": BUILD_THREADS}


def _versions() -> dict[str, str]:
    import sae_lens

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sae_lens": sae_lens.__version__,
        "tokenizers": tokenizers.__version__,
    }


def _file_sizes(root: Path) -> dict[str, int]:
    sizes = {}
    for part in ("model", "sae", "tasks"):
        sizes[part] = sum(p.stat().st_size for p in (root / part).rglob("*") if p.is_file())
    sizes["total"] = sum(sizes.values())
    return sizes
