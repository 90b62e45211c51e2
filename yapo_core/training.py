"""Training sparse (YaPO) and dense (BiPO) vectors with the bi-directional preference objective.

For a batch, ``d ∈ {−1, +1}`` is drawn and, with the vector applied at multiplier ``d``::

    r(y) = log π_{v,d}(y | x) − log π_0(y | x)
    loss = −log σ(d · β · (r(y_w) − r(y_l)))

``π_0`` is the unsteered model itself (the "reference-free" of the YaPO paper means no second
model copy, not no reference term; its published curves start at ln 2, as this does). Only the
vector is trained; it and its optimiser state stay in fp32 whatever the model's dtype.

:class:`Trainer` is an iterator of per-step :class:`StepMetrics` (for live plots), can be
stopped, checkpoints and resumes. The straightforward and the fast objective (:mod:`.objectives`) share it.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from ._version import __version__
from .architectures import capped_length, context_length, hidden_size
from .data import PairSet, PreferencePair
from .encoding import EncodedPair, EncodeReport, encode_pairs
from .errors import SettingsError, TrainingError
from .export import FORMAT, load_vector, open_safetensors
from .hooks import block_output
from .logprobs import pad_token_id
from .models import model_device, model_id
from .objectives import make_objective, preference_loss
from .options import against_every_option
from .saes import SAESource, check_sae_fits, provenance, sae_source
from .steering import TRAINED_METHOD, SteeringVector
from .train_config import TrainConfig

__all__ = ["TrainConfig", "Trainer", "TrainState", "StepMetrics", "train_vector", "trained_vector", "warmup_cosine"]


@dataclass
class StepMetrics:
    """What one optimisation step reports; rewards are ``β · r(y)`` as in DPO."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    reward_accuracy: float  # share of pairs where d·(r(y_w) − r(y_l)) > 0
    margin: float  # mean of d·β·(r(y_w) − r(y_l))
    chosen_reward: float
    rejected_reward: float
    vector_norm: float
    l0: int  # non-zero entries of the vector
    lr: float
    multiplier: float  # the d drawn for this step
    step_time: float  # seconds

    def as_dict(self) -> dict:
        return asdict(self)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def schedule_notes(config: TrainConfig, total_steps: int, n_pairs: int) -> list[str]:
    """What a run's settings do that a user may not mean: a warm-up longer than the run (the rate
    never reaches ``lr``), a batch larger than the pairs (every step takes all of them)."""
    notes = []
    if config.warmup_steps > total_steps:  # at warm-up = steps, the last step reaches lr
        peak = config.lr * total_steps / config.warmup_steps
        notes.append(f"warmup_steps={config.warmup_steps} is longer than the run of {total_steps} step"
                     f"{'s' * (total_steps != 1)}: the learning rate rises to {peak:.3g} at most and never reaches "
                     f"{config.lr:g}; use fewer warm-up steps.")
    if config.batch_size > n_pairs:
        notes.append(f"batch_size={config.batch_size} is more than the {n_pairs} training pair"
                     f"{'s' * (n_pairs != 1)} (as trained: after any expansion against every option and any pair "
                     "left out as too long): every step takes all of them.")
    return notes


class Trainer:
    """Trains one steering vector; iterate over it to run steps and get :class:`StepMetrics`.

    ``pairs`` are :class:`PreferencePair` objects (a :class:`PairSet` or a list); they are
    tokenised with the chat template and over-long ones are cut (see ``data_report``).
    Already tokenised :class:`~.data.EncodedPair` objects are used as they are.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        pairs: PairSet | Sequence[PreferencePair],
        config: TrainConfig | None = None,
        sae: nn.Module | None = None,
        progress: bool = False,
    ):
        self.model, self.tokenizer, self.sae = model, tokenizer, sae
        self.config = config = config or TrainConfig()
        if not isinstance(config, TrainConfig):
            raise SettingsError(f"config must be a TrainConfig (e.g. TrainConfig(lr=1e-3)), not a {type(config).__name__}.")
        if sae is not None and not isinstance(sae, nn.Module):
            raise SettingsError(f"sae must be a loaded SAE (yapo_core.load_sae(...)), not a {type(sae).__name__}.")
        if config.kind == "sparse":
            if sae is None:
                raise SettingsError("a sparse (YaPO) vector needs an SAE: pass sae=.")
            self.point = check_sae_fits(model, sae, config.layer)
            width = sae.cfg.d_sae
        else:
            if config.layer is None and sae is None:
                raise SettingsError("a dense (BiPO) vector needs layer= (or an SAE to take it from).")
            self.point = (
                check_sae_fits(model, sae, config.layer) if sae is not None
                else block_output(model, config.layer)
            )
            width = hidden_size(model)
        pairs = list(pairs)
        strangers = [p for p in pairs if not isinstance(p, (PreferencePair, EncodedPair))]
        if strangers:
            raise SettingsError(f"pairs must be PreferencePair objects (yapo_core.load_pairs gives them), not "
                                f"{type(strangers[0]).__name__} like {strangers[0]!r:.60}.")
        if config.mcq_rejected == "every_option":
            if any(not isinstance(p, PreferencePair) for p in pairs):
                raise SettingsError("mcq_rejected='every_option' needs the pairs as text (PreferencePair), "
                                    "not already tokenised; pass the pairs, or use mcq_rejected='given'.")
            pairs = against_every_option(pairs)
        if pairs and all(isinstance(p, PreferencePair) and p.chosen == p.rejected for p in pairs):
            raise TrainingError("every pair's chosen answer is its rejected answer, so there is nothing to learn (the "
                                "vector would fit rounding noise); check the data's columns.")
        if pairs and all(isinstance(p, EncodedPair) for p in pairs):  # already tokenised
            self.encoded, self.data_report = pairs, EncodeReport(len(pairs), 0, 0)
        else:
            self.encoded, self.data_report = encode_pairs(tokenizer, pairs, capped_length(model, config.max_length))
        if not self.encoded:
            context = context_length(model)
            raise TrainingError(
                f"no training pairs left after tokenisation ({self.data_report.describe()}); "
                + (f"the model's context is {context} tokens: use shorter pairs."
                   if context is not None and context <= config.max_length else f"raise max_length (now {config.max_length}).")
            )
        self.v = torch.zeros(width, dtype=torch.float32, device=model_device(model), requires_grad=True)
        self.optimizer = torch.optim.AdamW([self.v], lr=config.lr, weight_decay=config.weight_decay)
        self.steps_per_epoch = math.ceil(len(self.encoded) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, config.warmup_steps, self.total_steps)
        )
        self.notes = schedule_notes(config, self.total_steps, len(self.encoded))
        self.order_rng = torch.Generator().manual_seed(config.seed)
        self.sign_rng = torch.Generator().manual_seed(config.seed + 1)
        self.step = 0
        self.history: list[StepMetrics] = []
        self._stop = False
        self._last_good = self.v.detach().clone()
        self._made_for: dict[str, str] | None = None  # the provenance, once the vector is first asked for
        self.pad_id = pad_token_id(tokenizer, model)
        if config.cache_dir is None and config.cache_in_memory is False:
            raise SettingsError("cache_in_memory=False needs cache_dir= (a folder for the cache).")
        self.objective = make_objective(config.engine, config.kind, model, sae, self.point, config.cache_dir,
                                        config.cache_in_memory, progress,
                                        max(len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in self.encoded))
        self._epoch_orders: dict[int, list[int]] = {}
        self.objective.prepare(self.encoded, self.pad_id)

    # -- running -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the iterator to end after the current step (safe to call from another thread)."""
        self._stop = True

    def _epoch_order(self, epoch: int) -> list[int]:
        while len(self._epoch_orders) <= epoch:
            e = len(self._epoch_orders)
            self._epoch_orders[e] = torch.randperm(len(self.encoded), generator=self.order_rng).tolist()
        return self._epoch_orders[epoch]

    def batch_for_step(self, step: int) -> list[EncodedPair]:
        epoch, k = divmod(step, self.steps_per_epoch)
        order = self._epoch_order(epoch)
        return [self.encoded[i] for i in order[k * self.config.batch_size : (k + 1) * self.config.batch_size]]

    def draw_direction(self) -> float:
        return 1.0 if torch.rand((), generator=self.sign_rng).item() < 0.5 else -1.0

    def __iter__(self) -> Iterator[StepMetrics]:
        """Train step by step. A ``stop()`` asked before or during an iteration ends it; once it has
        ended, the request is spent, so iterating again resumes from the step it reached."""
        try:
            while self.step < self.total_steps and not self._stop:
                yield self.run_step()
        finally:
            self._stop = False

    def run_step(self) -> StepMetrics:
        cfg = self.config
        start = time.perf_counter()
        pairs = self.batch_for_step(self.step)
        self._sign_state = self.sign_rng.get_state()  # a failed step gives its draw back (see _fail)
        direction = self.draw_direction()
        self.optimizer.zero_grad(set_to_none=True)
        steered, reference = self.objective.logprobs(pairs, self.v, direction)
        loss, metrics = preference_loss(steered, reference, direction, cfg.beta)
        if not torch.isfinite(loss):
            self._fail(f"the loss became {float(loss.detach())} at step {self.step + 1}")
        loss.backward()
        if self.v.grad is None or not torch.isfinite(self.v.grad).all():
            self._fail(f"the gradient became non-finite at step {self.step + 1}")
        torch.nn.utils.clip_grad_norm_([self.v], cfg.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        before = copy.deepcopy(self.optimizer.state_dict()), self.scheduler.state_dict()  # a few vector-sized tensors
        self.optimizer.step()
        self.scheduler.step()
        if not torch.isfinite(self.v).all():  # the step is undone whole: vector, AdamW moments and schedule
            self.optimizer.load_state_dict(before[0])
            self.scheduler.load_state_dict(before[1])
            self._fail(f"the vector became non-finite at step {self.step + 1}")
        self._last_good = self.v.detach().clone()
        self.step += 1
        values = self._last_good
        record = StepMetrics(
            step=self.step,
            total_steps=self.total_steps,
            epoch=(self.step - 1) // self.steps_per_epoch,
            loss=float(loss.detach()),
            vector_norm=float(values.norm()),
            l0=int((values != 0).sum()),
            lr=lr,
            multiplier=direction,
            step_time=time.perf_counter() - start,
            **metrics,
        )
        self.history.append(record)
        if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
            self.save_checkpoint(Path(cfg.checkpoint_dir) / f"step-{self.step:06d}.safetensors")
        return record

    def _fail(self, why: str):
        with torch.no_grad():
            self.v.copy_(self._last_good)
        self.sign_rng.set_state(self._sign_state)  # the step's direction is drawn again when it is retried
        raise TrainingError(
            f"training stopped: {why}. The last good vector (step {self.step}) is kept in "
            "trainer.vector; lower the learning rate or use fp32."
        )

    def run(self, progress: bool = False) -> SteeringVector:
        """Run to the end (or until stopped); returns the trained vector."""
        iterator = iter(self)
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc=f"training {self.config.kind}")
            for m in iterator:
                bar.update(1)
                bar.set_postfix(loss=f"{m.loss:.4f}", acc=f"{m.reward_accuracy:.2f}")
            bar.close()
        else:
            for _ in iterator:
                pass
        return self.vector

    # -- results -------------------------------------------------------------------------------

    @property
    def vector(self) -> SteeringVector:
        """The last good vector, with its provenance and training settings. The provenance (the
        frozen model's and SAE's fingerprints) is taken once per run, not on every look at it."""
        if self._made_for is None:
            self._made_for = provenance(self.model, self.sae if self.config.kind == "sparse" else None)
        return trained_vector(self._last_good, self.config, self.point.hook_name, self.model, self.sae, self.step,
                              self.data_report.describe(), self._made_for)

    # -- checkpoints ---------------------------------------------------------------------------

    def state(self) -> "TrainState":
        """Everything needed to continue this run elsewhere: vector, AdamW moments, step and RNG
        states, as CPU tensors and strings (what a checkpoint file holds; picklable)."""
        state = self.optimizer.state.get(self.v, {})
        tensors = {
            "v": self._last_good.detach().cpu().contiguous(),
            "order_rng": self.order_rng.get_state(),
            "sign_rng": self.sign_rng.get_state(),
        }
        for key in ("exp_avg", "exp_avg_sq"):  # copies: the optimizer updates its own in place at every step
            if key in state:
                tensors[key] = state[key].detach().cpu().clone().contiguous()
        meta = {
            "config": self.config.to_json(),
            "step": str(self.step),
            "adam_step": str(float(state["step"])) if "step" in state else "0",
            "epoch_orders": json.dumps(self._epoch_orders),
            "hook_name": self.point.hook_name,
            "width": str(self.v.numel()),
        }
        return TrainState(tensors, meta)

    def load_state(self, state: "TrainState", source: str = "the state") -> None:
        """Continue from :meth:`state` (or a checkpoint) taken from a trainer with the same setup."""
        tensors, meta = state.tensors, state.meta
        if meta.get("hook_name") != self.point.hook_name or int(meta.get("width", -1)) != self.v.numel():
            raise TrainingError(
                f"{source} is for {meta.get('hook_name')} width {meta.get('width')}, "
                f"not {self.point.hook_name} width {self.v.numel()}."
            )
        device = self.v.device
        with torch.no_grad():
            self.v.copy_(tensors["v"].to(device))
        self._last_good = self.v.detach().clone()
        self.step = int(meta["step"])
        if "exp_avg" in tensors:
            self.optimizer.state[self.v] = {
                "step": torch.tensor(float(meta["adam_step"])),
                "exp_avg": tensors["exp_avg"].to(device),
                "exp_avg_sq": tensors["exp_avg_sq"].to(device),
            }
        self.scheduler.last_epoch = self.step  # the schedule resumes where it stopped
        for group, base_lr, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas):
            group["lr"] = base_lr * factor(self.step)
        self.order_rng.set_state(tensors["order_rng"])
        self.sign_rng.set_state(tensors["sign_rng"])
        self._epoch_orders = {int(k): v for k, v in json.loads(meta["epoch_orders"]).items()}

    def save_checkpoint(self, path: str | Path) -> Path:
        """Vector, AdamW moments, step and RNG states in one safetensors file (no pickle)."""
        from safetensors import SafetensorError
        from safetensors.torch import save_file

        path = Path(path)
        state = self.state()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(state.tensors, str(path), metadata=state.meta)
        except (OSError, SafetensorError) as exc:  # SafetensorError: a full disk
            raise TrainingError(f"could not write the checkpoint {str(path)!r} ({exc}); choose a folder that can be "
                                f"written. The vector of step {self.step} is kept.") from None
        return path

    def load_checkpoint(self, path: str | Path, allow_other_model: bool = False) -> str:
        """Continue from a checkpoint written by :meth:`save_checkpoint` for the same setup, or start
        from the values of a vector file written by :func:`~.export.save_vector` (checked against
        this model and SAE; a vector file holds no optimizer state, so AdamW starts afresh and the
        step count at 0; ``allow_other_model`` starts from one trained on another model). Returns what
        was loaded, in words."""
        tensors, meta = open_safetensors(path)
        name = f"{Path(path).name!r}"
        if meta.get("format") == FORMAT:
            if meta.get("kind") not in (None, self.config.kind):  # before the checks of a kind this run cannot load
                raise TrainingError(f"{name} is a {meta['kind']} vector; this run trains a {self.config.kind} one, so it "
                                    f"cannot start from it: train a {meta['kind']} vector to continue it, or start from "
                                    "another file.")
            return self.start_from(load_vector(path, self.model, self.sae, allow_other_model=allow_other_model), name)
        missing = [k for k in ("v", "order_rng", "sign_rng") if k not in tensors]
        missing += [k for k in ("step", "epoch_orders", "hook_name", "width") if k not in meta]
        if missing:
            raise TrainingError(
                f"{name} is neither a training checkpoint (it lacks {', '.join(missing)}) nor a steering "
                "vector; resume from the file that Trainer.save_checkpoint or `yapo train --checkpoint` writes."
            )
        self.load_state(TrainState(tensors, meta), source=f"checkpoint {name}")
        return f"resumed {name} at step {self.step}"

    def start_from(self, vector: SteeringVector, name: str = "the vector") -> str:
        """Start training from ``vector``'s values (same kind, hook and width as this trainer's)."""
        if (vector.kind, vector.hook_name, vector.width) != (self.config.kind, self.point.hook_name, self.v.numel()):
            raise TrainingError(
                f"{name} is a {vector.kind} vector for {vector.hook_name} (width {vector.width}); this run trains a "
                f"{self.config.kind} vector for {self.point.hook_name} (width {self.v.numel()}); to continue it, train "
                f"a {vector.kind} vector at that hook, or start from another file."
            )
        with torch.no_grad():
            self.v.copy_(vector.values.to(self.v.device))
        self._last_good = self.v.detach().clone()
        return f"started from the values of {name} (no optimizer state in a vector file: AdamW starts afresh)"


def trained_vector(values: torch.Tensor, config: TrainConfig, hook_name: str, model: nn.Module,
                   sae: nn.Module | None, step: int, data_report: str = "",
                   made_for: dict[str, str] | None = None) -> SteeringVector:
    """A trained vector with its provenance and training settings (see :attr:`Trainer.vector`);
    ``made_for``: the provenance, when the caller has it already."""
    return SteeringVector(
        kind=config.kind,
        values=values.detach().cpu().clone(),
        hook_name=hook_name,
        method=TRAINED_METHOD[config.kind],
        model_id=model_id(model),
        sae_source=sae_source(sae) if sae is not None else SAESource(),
        default_multiplier=1.0,
        metadata={"training": config.to_json(), "steps": str(step), "library_version": __version__,
                  **(made_for if made_for is not None else provenance(model, sae if config.kind == "sparse" else None)),
                  **({"data_report": data_report} if data_report else {})},
        sae=sae if config.kind == "sparse" else None,
    )


@dataclass
class TrainState:
    """A run's resumable state (see :meth:`Trainer.state`): CPU tensors and string metadata."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, str]

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def train_vector(
    model: nn.Module,
    tokenizer,
    pairs,
    sae: nn.Module | None = None,
    progress: bool = False,
    resume_from: str | Path | None = None,
    **config,
) -> SteeringVector:
    """Train a vector to the end and return it; keyword arguments are :class:`TrainConfig` fields."""
    trainer = Trainer(model, tokenizer, pairs, TrainConfig(**config), sae=sae, progress=progress)
    if resume_from is not None:
        trainer.load_checkpoint(resume_from)
    return trainer.run(progress=progress)

