"""Tasks: what a session trains and measures on. A task comes from a preset's catalogue (Deep-Culture-Lense
by country, BiPO's behaviours), the demo world, or an uploaded file (size- and type-checked, with a
preview); each is split into training and test pairs."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import urlparse

from yapo_core import hub
from yapo_core.data import PairSet, detect_schema, load_pairs
from yapo_core.demo import build_demo_world_isolated, caveats, demo_world_building, load_demo_world
from yapo_core.errors import DataError, SettingsError
from yapo_core.evaluation import METRICS, get_metric, metric_splits
from yapo_core.replies import demo_behaviour, demo_culture, reply_verdict
from yapo_core.tables import SUFFIXES as DATA_SUFFIXES
from yapo_core.tables import read_table

from .settings import current


def evenly_spaced(items: Sequence, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced and in order: a test split is often grouped (by
    country, by localization), so its first ``n`` rows would not represent it."""
    items = list(items)
    if len(items) <= n:
        return items
    return [items[i * len(items) // n] for i in range(n)]


_DEMO_LOCK = threading.Lock()


def demo_size() -> str:
    """Which demo world the app uses: ``$YAPO_DEMO_SIZE`` (``full``, the default, built in about
    4 to 21 minutes on 2 cores on first use; or ``mini``, the seconds-scale test world)."""
    return current().demo_size


def ensure_demo_world(progress: bool = True):
    """The demo world, built on first use (one build at a time per process), in a process of its
    own: the app's other sessions touch torch's random generator and threads meanwhile, which would
    make the build another model than the stored one (:mod:`yapo_core.demo.isolated`)."""
    size = demo_size()
    world = load_demo_world(size=size)
    if world is not None:
        return world
    with _DEMO_LOCK:
        return build_demo_world_isolated(size=size, progress=progress)


def demo_world_ready() -> bool:
    """Whether the demo world of :func:`demo_size` is built (loading it is then a matter of seconds)."""
    return load_demo_world(size=demo_size()) is not None


def demo_world_state() -> str:
    """``ready`` (built: loading it takes seconds), ``building`` (a build runs now, in this process or
    another: one started before a page reload, in another tab, or by ``yapo demo build``) or ``absent``."""
    if demo_world_ready():
        return "ready"
    return "building" if demo_world_building(size=demo_size()) else "absent"


def demo_task_kinds() -> dict[str, str]:
    """The demo world's trainable tasks by name (a culture per country, the behaviours), each with its
    kind, ``culture`` or ``behaviour``; empty until the world is built."""
    world = load_demo_world(size=demo_size())
    return {t.name: t.kind for t in world.tasks() if t.trainable} if world else {}


def demo_task_label(name: str, kind: str) -> str:
    """``culture · egypt`` or ``behaviour · power-seeking``: how a page lists a demo task."""
    return f"{kind} · {name.removeprefix('culture-') if kind == 'culture' else name}"


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


MIN_TRAIN_PAIRS = 8
"""Fewer training pairs than this in an uploaded file get a note on Setup."""


@dataclass
class Task:
    """Training pairs, the test split, and further test splits that some metrics need (BiPO's
    ``test_infer`` A/B questions beside its open-ended ``test`` answers)."""

    label: str
    train: PairSet
    test: PairSet
    extra: dict[str, PairSet] = field(default_factory=dict)
    caveat: str = ""  # what a user must know before training on it (shown on the Setup page)
    file_notes: list[str] = field(default_factory=list)  # what the loader noticed in an uploaded file, before its split
    method_caveats: dict[str, str] = field(default_factory=dict)  # the same for one method (by key) only

    def test_pair(self, prompt: str | None):
        """The first pair of the test split that asks ``prompt``, or None (a prompt the user typed)."""
        return next((p for p in self.test.pairs if p.prompt == prompt), None) if prompt else None

    def verdicts(self, prompt: str, answers: Mapping[float, str]) -> dict[float, tuple[str | None, str]]:
        """For each of ``answers`` (by multiplier) to ``prompt``, which answer of its test pair
        (:meth:`test_pair`) it gives, as the metrics read it (:func:`yapo_core.replies.reply_verdict`);
        empty when ``prompt`` asks no test pair."""
        pair = self.test_pair(prompt)
        if pair is None:
            return {}
        behaviour, culture = demo_behaviour(self.test.pairs), demo_culture(self.test.pairs) is not None
        return {m: reply_verdict(pair, reply, behaviour, culture) for m, reply in answers.items()}

    def caveat_for(self, method: str) -> str:
        """What a user must know before making a ``method`` vector for this task: the task's caveat,
        then the method's own (a baseline that does not move this task, say)."""
        return " ".join(c for c in (self.caveat, self.method_caveats.get(method, "")) if c)

    def describe(self) -> str:
        extra = "".join(f" + {len(p)} {name}" for name, p in self.extra.items())
        return f"{self.label}: {len(self.train)} train / {len(self.test)} test{extra} pairs"

    def notes(self) -> list[str]:
        """What the loader noticed in each split (rows skipped, pairs that teach nothing), by split."""
        return [f"the file: {note}" for note in self.file_notes] + [
            f"{split} split: {note}" for split, pairs in (("train", self.train), ("test", self.test),
                                                         *self.extra.items()) for note in pairs.notes]

    def splits(self) -> dict[str, PairSet]:
        return {"test": self.test, **self.extra}

    def metrics(self) -> dict[str, str]:
        """Each metric that can score this task, with the split it is measured on; not MCQ accuracy
        where the behaviour rate is measured on the same A/B questions (the same figure twice)."""
        found = metric_splits({name: pairs.pairs for name, pairs in self.splits().items()})
        if "behaviour" in found and found.get("mcq") == found["behaviour"]:
            del found["mcq"]
        return found

    def pairs_for(self, metric: str) -> PairSet:
        """The split ``metric`` is measured on, or an error naming the metrics that apply."""
        split = self.metrics().get(get_metric(metric).key)
        if split is None:
            usable = ", ".join(METRICS[k].label for k in self.metrics())
            raise SettingsError(f"the {METRICS[metric].label} cannot score {self.label}: it needs "
                                f"{METRICS[metric].needs}. Metrics for this task: {usable}.")
        return self.splits()[split]


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
    limit = current().max_upload_bytes  # YAPO_MAX_UPLOAD_MB, the same limit the app gives Gradio
    if size > limit:
        raise DataError(f"{path.name!r} is {size / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB.")
    if path.suffix.lower() == ".parquet":  # compressed: its size on disk says little of its size in memory
        rows, unpacked = _parquet_size(path)
        most_rows = current().max_upload_rows
        if rows is not None and rows > most_rows:
            raise DataError(f"{path.name!r} has {rows:,} rows; this app reads at most {most_rows:,} "
                            "(YAPO_MAX_UPLOAD_ROWS). Upload fewer rows.")
        if unpacked is not None and unpacked > PARQUET_EXPANSION * limit:
            raise DataError(f"{path.name!r} holds {unpacked / 2**20:.0f} MB of data once uncompressed; this app reads at "
                            f"most {PARQUET_EXPANSION * limit / 2**20:.0f} MB from a Parquet file. Upload fewer rows.")
    return path


PARQUET_EXPANSION = 4
"""How much larger than the upload limit a Parquet file's data may be once uncompressed (text
compresses about 3 to 5 times; a file that expands far more would fill the server's memory)."""


def _parquet_size(path: Path) -> tuple[int | None, int | None]:
    """A Parquet file's rows and the size of its data uncompressed, from its footer, before a row is
    read (None, None when unreadable: the reader then says what is wrong)."""
    try:
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        return meta.num_rows, sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    except Exception:  # noqa: BLE001 - any unreadable footer is reported by the table reader
        return None, None


@dataclass
class Preview:
    """The first rows of an uploaded table, its columns and the schema guessed from them."""

    rows: object  # a pandas DataFrame
    columns: list[str]
    n_rows: int
    schema: str | None
    message: str


def preview_file(path: str | os.PathLike, n: int = 5) -> Preview:
    """Read an uploaded CSV/TSV/JSONL/JSON/Parquet file and guess its schema (for column mapping)."""
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
    local = current().bipo_dir
    if local:
        path = Path(local).expanduser() / behaviour / f"{split}.csv"
        if not path.is_file():
            raise DataError(f"YAPO_BIPO_DIR is set but {str(path)!r} does not exist.")
        return str(path)
    url = catalog_tasks.get("behaviour", {}).get(
        "url", "https://raw.githubusercontent.com/CaoYuanpu/BiPO/main/data/{behaviour}/{split}.csv"
    )
    return url.format(behaviour=behaviour, split=split)


SPOKEN = {"nolocalized": "non-localized", "localized": "localized", "both": "both", "mcq": "MCQ",
          "open_ended": "open-ended"}
"""How a task's label and the Setup page say the data's own values (Deep-Culture-Lense's
``localization_status`` and answer form)."""


def spoken(value: str) -> str:
    """``value`` as a task's label says it (:data:`SPOKEN`), or as it is."""
    return SPOKEN.get(value, value)


def load_task(spec: TaskSpec, catalog_tasks: dict | None = None, rejected_model: str | None = None) -> Task:
    """Train and test pairs for ``spec`` (``rejected_model`` is the preset's default for culture data)."""
    catalog_tasks = catalog_tasks or {}
    if spec.source == "demo":
        return _demo_task(spec)
    if spec.source == "culture":
        dataset = catalog_tasks.get("culture", {}).get("dataset", "MBZUAI-Paris/Deep-Culture-Lense")
        kw = dict(country=spec.country, localization=spec.localization, form=spec.form,
                  rejected_model=spec.rejected_model or rejected_model, limit=spec.limit)
        train = load_pairs(dataset, split="train", **kw)
        test = load_pairs(dataset, split="test", **kw)
        label = f"culture · {spec.country or 'all countries'} · {spoken(spec.localization)} · {spoken(spec.form)}"
        return Task(label, train, test)
    if spec.source == "behaviour":
        behaviours = catalog_tasks.get("behaviour", {}).get("behaviours", ["power-seeking", "wealth-seeking", "hallucination", "jailbreak"])
        if spec.name not in behaviours:
            raise DataError(f"behaviour {spec.name!r} is unknown; choose one of {behaviours}.")
        train_src, test_src = (_behaviour_source(catalog_tasks, spec.name, s) for s in ("train", "test"))
        if train_src.startswith("http") and (hub.datasets_offline() or not hub.host_reachable(train_src)):
            why = " (HF_DATASETS_OFFLINE is set)" if hub.datasets_offline() else ""
            raise DataError(
                f"BiPO's data is read from {urlparse(train_src).hostname}, which cannot be reached{why}. "
                "Set YAPO_BIPO_DIR to a local copy of its data/ folder, or upload the CSV as a file task."
            )
        train = load_pairs(train_src, schema="bipo", limit=spec.limit)
        test = load_pairs(test_src, schema="bipo", limit=spec.limit)
        ab = load_pairs(_behaviour_source(catalog_tasks, spec.name, "test_infer"), schema="bipo_ab", limit=spec.limit)
        return Task(f"behaviour · {spec.name}", train, test, {"test_infer": ab})
    if spec.source == "file":
        if not spec.path:
            raise DataError("upload a CSV, TSV, JSONL, JSON or Parquet file first.")
        path = check_upload(spec.path, DATA_SUFFIXES, "data file")
        pairs = load_pairs(str(path), schema=spec.schema, columns=spec.columns or None, limit=spec.limit)
        useful = sum(p.chosen != p.rejected for p in pairs)
        if useful < 2:
            raise DataError(f"{path.name!r} has {useful} usable pair(s) (read, with chosen and rejected answers that "
                            "differ); at least 2 are needed (train + test).")
        train, test = pairs.split(spec.test_fraction, seed=0)
        notes, train.notes = list(train.notes), []  # the whole file's, said as such
        if len(train) < MIN_TRAIN_PAIRS:
            notes.append(f"only {len(train)} training pair(s) after {len(test)} held out for testing: a vector learns "
                         "little from so few, and the test accuracy moves in large steps (the public runs train on "
                         "hundreds).")
        return Task(f"file · {path.name}", train, test, file_notes=notes)
    raise SettingsError(f"task source {spec.source!r} is unknown; use demo, culture, behaviour or file.")


def _demo_task(spec: TaskSpec) -> Task:
    world = ensure_demo_world()
    trainable = [t for t in world.tasks() if t.trainable]
    task = next((t for t in trainable if t.name == spec.name), None)
    if task is None:
        raise DataError(f"demo task {spec.name!r} is unknown; the demo world has {[t.name for t in trainable]}.")
    kw = dict(form=spec.form, localization=spec.localization, limit=spec.limit)
    train, test = task.pairs("train", **kw), task.pairs("test", **kw)
    notes = dict(caveat=caveats.task_caveat(task.kind), method_caveats=caveats.method_caveats(task.kind, spec.form))
    if task.kind == "culture":
        return Task(f"demo culture · {task.country} · {spoken(spec.localization)} · {spoken(spec.form)}", train, test, **notes)
    return Task(f"demo behaviour · {task.name}", train, test, {"test_infer": task.pairs("test_infer", limit=spec.limit)},
                **notes)

