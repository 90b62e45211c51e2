"""What every page shares: the app-wide context, the per-user session, and error handling.

Pages call :mod:`yapo_core` only. Errors the library raises on purpose (:class:`YapoError`) are
shown to the user with their own message, leaving the page as it was; anything else is logged with
its traceback for the operator and shown as a short message, never as a traceback.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from yapo_core.errors import ADVICE, SettingsError, YapoError
from yapo_core.evaluation import parse_multipliers as core_parse_multipliers
from yapo_studio.catalog import Catalog, load_catalog
from yapo_studio.runs import JobLimiter
from yapo_studio.session import Session
from yapo_studio.settings import PAGE_MULTIPLIER_RANGE, PAGE_MULTIPLIERS, current
from yapo_studio.store import ModelStore

log = logging.getLogger("yapo_studio")

ROOT = Path(__file__).resolve().parents[1]
HEAVY = "heavy"
"""Concurrency group of every event that runs the model (loading, features, generation, sweeps,
export); the queue lets at most ``AppContext.heavy_jobs`` of them run at once, across users."""


@dataclass
class AppContext:
    """Shared by all sessions of one app: presets, loaded models, and the limits on heavy work."""

    catalog: Catalog
    store: ModelStore
    limiter: JobLimiter
    heavy_jobs: int
    max_upload_mb: int
    _open: dict[str, tuple[str, Session]] = field(default_factory=dict, repr=False)  # page -> (token, session)
    _parked: dict[str, tuple[Session, threading.Timer]] = field(default_factory=dict, repr=False)  # token -> ...
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_env(cls) -> "AppContext":
        """``YAPO_PRESETS`` (presets file), ``YAPO_TRAINING_JOBS`` (runs computing at once, 1),
        ``YAPO_HEAVY_JOBS`` (other model calls at once, 2), ``YAPO_MAX_UPLOAD_MB`` (50),
        ``YAPO_KEEP_MODELS`` (models kept loaded when unused, 1)."""
        try:
            settings = current()
        except SettingsError as exc:  # at start-up: say what to fix and stop
            raise SystemExit(str(exc)) from None
        return cls(
            catalog=load_catalog(settings.presets_file),
            store=ModelStore(keep=settings.keep_models),
            limiter=JobLimiter(settings.training_jobs),
            heavy_jobs=settings.heavy_jobs,
            max_upload_mb=settings.max_upload_mb,
        )

    def new_session(self) -> Session:
        return Session(self.store, self.limiter, self.catalog)

    def open_session(self, token: str | None, request: gr.Request) -> tuple[Session, str]:
        """The session of a page load, and the token the browser keeps for it (``gr.BrowserState``).
        A page that comes back with a session's token (a reload, Gradio's own reload after a network
        drop, the same app in a second tab) gets that session back, runs and all, while it is kept
        (:meth:`end_session`); any other gets a fresh one."""
        with self._lock:
            parked = self._parked.pop(token, None) if token else None
            if parked is not None:
                session, timer = parked
                timer.cancel()
            else:
                session = next((s for t, s in self._open.values() if t == token), None) if token else None
            if session is None:
                session, token = self.new_session(), secrets.token_urlsafe(16)
            self._open[request.session_hash] = (token, session)
        return session, token

    def end_session(self, request: gr.Request) -> None:
        """A page was closed, reloaded or lost its connection: its session is kept for
        ``YAPO_SESSION_GRACE_S`` seconds (120) for the page to come back, then its runs are stopped
        and its files removed, as nobody can see them any more (Gradio itself drops the state only
        an hour later). Another page still open on the session keeps it."""
        with self._lock:
            token, session = self._open.pop(request.session_hash, (None, None))
            if session is None or any(s is session for _, s in self._open.values()):
                return
            grace = current().session_grace_s
            if grace > 0:
                timer = threading.Timer(grace, self._expire, (token,))
                timer.daemon = True
                self._parked[token] = (session, timer)
                timer.start()
                return
        close_session(session)

    def _expire(self, token: str) -> None:
        with self._lock:
            session, _ = self._parked.pop(token, (None, None))
        close_session(session)

    def state_deleted(self, session: Session | None) -> None:
        """Gradio drops a page's state (an hour after it closed): close its session unless a page
        holds it again or it waits for one (:meth:`end_session`)."""
        with self._lock:
            held = any(s is session for _, s in self._open.values()) or any(
                s is session for s, _ in self._parked.values())
        if not held:
            close_session(session)


def close_session(session: Session | None) -> None:
    """Stop a session's runs and remove its files (also gr.State's delete callback)."""
    if session is not None:
        session.close()


def need(session: Session | None) -> Session:
    if session is None:
        raise gr.Error("Your session is not ready yet: reload the page.")
    return session


def in_app_terms(message: str) -> str:
    """A library error's ``message`` with its advice as the app's controls give it (the column
    fields for ``columns=``; no Python keyword the page has no field for; a local folder as the
    Custom preset's, none in a public app), and an uploaded file named as the user named it."""
    import re

    from gradio.utils import get_upload_folder

    for advice in ADVICE:
        if advice.app is not None:
            message = message.replace(advice.library, advice.app)
    # an uploaded file by its own name, not the server's temporary path to it
    message = re.sub(re.escape(get_upload_folder().rstrip("/")) + r"/(?:[^/'\s]+/)*", "", message)
    if current().public:  # a public app loads no local folder: no advice to give one
        message = re.sub(r",? or (?:pass |give )?(?:an existing |a )local folder", "", message)
    elif message.startswith("dataset 'cais/mmlu'"):  # the capability check's questions: no upload replaces them
        message = re.sub(r",? or (?:pass |give )(?:an existing |a )local folder", "", message)
    elif message.startswith("dataset "):  # the app takes a task's rows as an uploaded file, not a folder
        message = re.sub(r"or (?:pass |give )(?:an existing |a )local folder", "or upload its rows as a file on Setup",
                         message)
    else:  # only the Custom preset takes a folder
        message = re.sub(r"or (?:pass |give )(an existing |a )local folder",
                         r"or choose the Custom preset on Setup and give \1local folder", message)
    # a training setting the library names as a parameter ("lr=-0.1 must be ..."): by its field on Train
    message = re.sub(r"^([a-z_]+)=", lambda m: f"{TRAIN_FIELDS[m[1]]} = " if m[1] in TRAIN_FIELDS else m[0], message)
    return re.sub(r"\buse layer=(\d+)", r"use layer \1", message)


TRAIN_FIELDS = {"lr": "Learning rate", "warmup_steps": "Warm-up steps", "epochs": "Epochs", "max_steps": "Max steps",
                "batch_size": "Batch size", "beta": "β", "grad_clip": "Gradient clipping",
                "weight_decay": "Weight decay", "seed": "Seed", "max_length": "Max length (tokens)"}
"""The Train page's field for each :class:`~yapo_core.training.TrainConfig` setting it offers."""


def number(value, name: str, cast=float, least: float | None = None, meaning: str = ""):
    """A hyper-parameter field's value; an emptied field, or one below ``least``, is an error that
    names the field. (The fields set no ``minimum``: Gradio's own check names no field and leaves
    the page's outputs in an error state.)"""
    if value is None:
        raise SettingsError(f"{name} is empty; enter a number.")
    out = cast(value)
    if least is not None and out < least:
        raise SettingsError(f"{name} is {out:g}; enter {least:g}{meaning} or more.")
    return out


def _to_gradio(exc: BaseException) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, YapoError):
        return gr.Error(html.escape(in_app_terms(str(exc))), duration=None)
    log.exception("unexpected error in a page callback")
    return gr.Error(html.escape(f"Unexpected error ({type(exc).__name__}: {exc}). Details are in the server log."),
                    duration=None)


def user_errors(fn=None, *, cleared=None):
    """Show errors of a callback (plain or generator) to the user.

    A user's error (a :class:`YapoError`, or a ``gr.Error`` the page raises: bad input, a missing
    step) is a message that stays until closed, and the callback's outputs are left as they were
    (``gr.skip()``), or set to ``cleared()`` where what they show would otherwise pass for the
    failed request's result (a previous vector's features, a previous export's files); a
    ``cleared`` that takes parameters gets the callback's arguments. A raised
    error would cover each output with an "Error" badge, hiding the very controls the user needs to
    fix the input. Anything else is a defect: logged with its traceback and raised as a short error.
    Use as ``@user_errors`` or ``@user_errors(cleared=...)``."""
    if fn is None:
        return functools.partial(user_errors, cleared=cleared)
    after_error = cleared or gr.skip
    takes_args = bool(inspect.signature(after_error).parameters) if cleared else False

    def outputs_after_error(args, kwargs):
        return after_error(*args, **kwargs) if takes_args else after_error()

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except (YapoError, gr.Error) as exc:
                tell(exc)
                yield outputs_after_error(args, kwargs)
            except Exception as exc:
                raise _to_gradio(exc) from exc

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (YapoError, gr.Error) as exc:
            tell(exc)
            return outputs_after_error(args, kwargs)
        except Exception as exc:
            raise _to_gradio(exc) from exc

    return wrapper


def tell(exc: YapoError | gr.Error) -> None:
    """A user's error as a message that stays until closed (outside a request, a Python warning)."""
    gr.Warning(_to_gradio(exc).message, duration=None)


@dataclass
class VectorPicker:
    """A page's vector dropdown and the labels it listed last, so that opening the page selects
    a vector added since (the run just trained, the file just loaded) rather than the one picked
    before it existed."""

    dropdown: gr.Dropdown
    listed: gr.State

    @classmethod
    def build(cls, elem_id: str, scale: int) -> VectorPicker:
        return cls(gr.Dropdown([], label="Vector", elem_id=elem_id, scale=scale), gr.State([]))


def vector_labels(session: Session | None, listed: list[str] | None = None) -> tuple[list[str], list[str]]:
    """The session's vectors, oldest first, and those among them added since ``listed`` (the
    labels a page last showed; none when it has shown none yet)."""
    labels = list(session.vectors()) if session is not None else []
    return labels, [label for label in labels if label not in listed] if listed else []


def vector_options(session: Session | None, labels: list[str]) -> list[tuple[str, str]]:
    """``labels`` as a vector list's (shown, value) choices: a run's vector that is not its finished
    one says so (a run stopped at its first step is a vector too, of one step)."""
    runs = {run.name: run for run in session.run_list()} if hasattr(session, "run_list") else {}
    out = []
    for label in labels:
        run, note = runs.get(label), ""
        if run is not None and run.method.trained and run.status != "finished":
            of = f" of {run.total_steps}" if run.total_steps else ""
            note = {"stopped": f" (stopped at step {run.step}{of})",
                    "failed": f" (failed; its last good vector, step {run.step}{of})"}.get(
                run.status, f" (training: its vector at step {run.step}{of} when listed)")
        out.append((label + note, label))
    return out


def vector_choices(session: Session | None, value: str | None = None,
                   listed: list[str] | None = None) -> tuple[dict, list[str]]:
    """A dropdown update listing the session's vectors, and the labels listed: the newest of the
    vectors added since ``listed`` (the labels the dropdown last showed), else ``value`` while it
    exists, else the newest vector."""
    labels, added = vector_labels(session, listed)
    if added:
        value = added[-1]
    elif value not in labels:
        value = labels[-1] if labels else None
    return gr.update(choices=vector_options(session, labels), value=value), labels


def esc(text) -> str:
    return html.escape(str(text))


def caveat_text(caveat: str) -> str:
    """A caveat as a warning paragraph to append to a status line (nothing when there is none)."""
    return f"\n\n⚠ {esc(caveat)}" if caveat else ""


STEER_LABELS = {"all": "every token (the method)", "prompt": "prompt tokens only"}  # one per STEER_POSITIONS


def parse_multipliers(text: str) -> list[float]:
    """The page's multipliers: :func:`yapo_core.evaluation.parse_multipliers`, at most
    :data:`~yapo_studio.settings.PAGE_MULTIPLIERS`, within ±:data:`~yapo_studio.settings.PAGE_MULTIPLIER_RANGE`
    (a grid or sweep of more runs the shared model for too long)."""
    values = core_parse_multipliers(text)
    if len(values) > PAGE_MULTIPLIERS or any(abs(m) > PAGE_MULTIPLIER_RANGE for m in values):
        raise SettingsError(f"give 1 to {PAGE_MULTIPLIERS} multipliers between −{PAGE_MULTIPLIER_RANGE:g} and "
                            f"{PAGE_MULTIPLIER_RANGE:g}.")
    return values
