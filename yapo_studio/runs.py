"""Training runs in the background: one thread per run, a limiter on how many compute at once,
and chunked training for ZeroGPU Spaces (a chain of short GPU calls, each continuing from the state
the last one returned)."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections import deque

from yapo_core.chunked import ChunkResult, train_chunk
from yapo_core.errors import SettingsError, TrainingError, YapoError
from yapo_core.methods import Method, make_vector
from yapo_core.steering import SteeringVector
from yapo_core.training import StepMetrics, TrainConfig, Trainer, TrainState

from .settings import current
from .store import Bundle, LoadSpec, loaded_bundle
from .tasks import Task
from .zero_gpu import gpu, on_zero_gpu, zero_gpu_active

log = logging.getLogger(__name__)


class JobLimiter:
    """At most ``slots`` heavy background jobs (training runs) compute at once, process-wide; the
    others wait in the order they asked, so no user's run waits behind runs asked for later."""

    def __init__(self, slots: int = 1):
        if slots < 1:
            raise SettingsError(f"the number of concurrent jobs must be at least 1, not {slots}.")
        self.slots = slots
        self._free = slots
        self._line: deque[threading.Event] = deque()  # the waiting jobs, first come first
        self._changed = threading.Condition()

    def acquire(self, cancelled: threading.Event, poll: float = 0.25) -> bool:
        """Wait for a slot, in turn; False when ``cancelled`` is set first (``cancelled`` is also
        the job's place in the line: :meth:`ahead`)."""
        with self._changed:
            self._line.append(cancelled)
            try:
                while not cancelled.is_set():
                    if self._free and self._line[0] is cancelled:
                        self._free -= 1
                        return True
                    self._changed.wait(poll)
                return False
            finally:
                self._line.remove(cancelled)
                self._changed.notify_all()

    def release(self) -> None:
        with self._changed:
            if self._free >= self.slots:
                raise RuntimeError("JobLimiter released more often than acquired")
            self._free += 1
            self._changed.notify_all()

    def full(self) -> bool:
        """Whether a job asking now would wait."""
        with self._changed:
            return not self._free or bool(self._line)

    def ahead(self, job: threading.Event) -> int | None:
        """How many jobs wait before ``job`` (None when it does not wait)."""
        with self._changed:
            line = list(self._line)
        return line.index(job) if job in line else None


@contextlib.contextmanager
def training_slot(limiter: JobLimiter, stop: threading.Event, what: str, on_progress=None):
    """Hold one of ``limiter``'s slots for a job that trains outside a :class:`Run` (a method
    comparison), in turn with the runs; ``stop`` ends the wait."""
    if limiter.full() and on_progress is not None:
        on_progress("waiting for the training runs ahead of it")
    if not limiter.acquire(stop):
        raise SettingsError(f"{what} was stopped.")
    try:
        yield
    finally:
        limiter.release()


def one_step_at_a_time(lock, stop: threading.Event, what: str):
    """A guard (:func:`yapo_core.comparison.compare_methods`' ``guard``) that holds the shared model's
    ``lock`` for one step, so other users' requests go on between steps, and ends the work once
    ``stop`` is set."""
    @contextlib.contextmanager
    def one_step():
        if stop.is_set():
            raise SettingsError(f"{what} was stopped.")
        with lock:
            yield

    return one_step


# The settings a run's name shows when they differ from the page's defaults, in this order, with
# the short names the Train page's fields go by.
_NAMED_SETTINGS = (("lr", "lr"), ("max_steps", "steps"), ("epochs", "epochs"), ("batch_size", "batch"),
                   ("warmup_steps", "warm-up"), ("beta", "β"), ("mcq_rejected", "rejected"), ("seed", "seed"),
                   ("weight_decay", "decay"), ("grad_clip", "clip"), ("max_length", "max length"))


def settings_changed(config: TrainConfig, defaults: TrainConfig, most: int = 3) -> str:
    """`` · lr 0.02, steps 300``: what sets a run apart from one at the defaults, so that two runs of
    one method on one task are told apart by more than their number."""
    def shown(value) -> str:
        return "all" if value is None else f"{value:g}" if isinstance(value, float) else str(value)  # None: no limit

    parts = [f"{short} {shown(getattr(config, field))}"
             for field, short in _NAMED_SETTINGS if getattr(config, field) != getattr(defaults, field)]
    if len(parts) > most:
        parts = parts[:most] + ["…"]
    return f" · {', '.join(parts)}" if parts else ""


CHUNK_SECONDS = 45.0
"""On ZeroGPU, training runs as a series of GPU calls of this many seconds of steps each."""


CHUNK_MARGIN_SECONDS = 60
"""What a ZeroGPU call may run past its chunk's seconds: the last step and the result's transfer
(the chunk's clock includes re-tokenising and re-caching the pairs)."""


def chunk_seconds() -> float | None:
    """Seconds per training chunk: set on ZeroGPU Spaces (or by ``YAPO_TRAIN_CHUNK_SECONDS``),
    None (one uninterrupted run in a background thread) elsewhere."""
    seconds = current().train_chunk_seconds
    if seconds is not None:
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
        self._limiter: JobLimiter | None = None
        self._thread: threading.Thread | None = None
        self.chunk_seconds: float | None = None  # set: train in chunks (see chunk_seconds())
        self._chunk: ChunkResult | None = None  # chunked runs: the last chunk's result
        self._chunk_history: list[StepMetrics] = []  # and every chunk's metrics so far

    # -- control --

    def start(self, limiter: JobLimiter) -> None:
        # The thread runs in a copy of the caller's context, so that GPU calls made from it
        # (ZeroGPU) are made on behalf of the request (the user's quota) that started the run.
        self._limiter = limiter
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
            if self._cancel.is_set():  # stopped as it got its slot
                self.status = "stopped"
                return
            if not self.method.trained:
                self._compute(b)
                return
            if self.chunk_seconds:
                self._train_in_chunks(b)
                return
            with b.lock:  # tokenising and caching activations run the model
                self.trainer = self.method.trainer(b.model, b.tokenizer, self.task.train, b.sae, self.config)
            if self._cancel.is_set():  # stopped while it prepared
                self.status = "stopped"
                return
            self.status, self._running_since = "running", time.time()
            steps = iter(self.trainer)
            exclusive = self.trainer.objective.exclusive
            while True:
                # Requests that came first go first: the step waits for them. A step that needs
                # the model to itself holds the lock while it runs; a fast-engine step does not,
                # so a request that arrives meanwhile starts at once (see FairLock, this_thread_only).
                # A stop is read before each step, also one pressed while the step waited for the lock.
                with b.lock:
                    if self._cancel.is_set() or (exclusive and next(steps, None) is None):
                        break
                if not exclusive and (self._cancel.is_set() or next(steps, None) is None):
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
        self.status, self._running_since = "running", time.time()
        # with an SAE, at its own hook point (which may be the input of block 0, the output of no block)
        layer = self.config.layer if self.config.layer is not None else None if b.sae is not None else b.layer
        with b.lock:
            self._computed = make_vector(self.method, b.model, b.tokenizer, self.task.train, sae=b.sae, layer=layer)
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
    def notes(self) -> list[str]:
        """What the run's settings do that the user may not mean (:func:`yapo_core.training.schedule_notes`)."""
        if self._chunk is not None:  # trained in chunks, each with a Trainer of its own
            return list(self._chunk.notes)
        return list(getattr(self.trainer, "notes", []))

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
        ahead = self._limiter.ahead(self._cancel) if self.status == "queued" and self._limiter is not None else None
        if ahead is not None:  # waiting: for a run computing (another user's, or this tab's own), or for those before it
            text += f" (waiting for {'a run to finish' if not ahead else f'{ahead} run(s) ahead of it'})"
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
