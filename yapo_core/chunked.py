"""Training as a chain of short, pure calls (:func:`train_chunk`): each runs some steps of a run
from the state the last one returned, so that a run can hold a GPU briefly per call and continue
in another process (ZeroGPU's ``spaces.GPU`` workers). Chained chunks give the same vector as one
uninterrupted :class:`~.training.Trainer` run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from torch import nn

from .errors import TrainingError
from .steering import SteeringVector
from .training import StepMetrics, TrainConfig, Trainer, TrainState, trained_vector


@dataclass
class ChunkResult:
    """What :func:`train_chunk` hands back: the state to continue from and the chunk's metrics."""

    state: TrainState
    history: list[StepMetrics]
    total_steps: int
    finished: bool  # the run reached its last step (or was stopped for a non-finite value)
    error: str | None = None  # why it stopped early (a TrainingError's message); state is the last good one
    data_report: str = ""  # how the pairs tokenised (EncodeReport.describe())
    notes: list[str] = field(default_factory=list)  # what the run's settings do that a user may not mean

    def vector(self, config: TrainConfig, model: nn.Module, sae: nn.Module | None = None) -> SteeringVector:
        """The chunk's last good vector, built where the model and SAE are (e.g. the main process)."""
        return trained_vector(self.state.tensors["v"], config, self.state.meta["hook_name"], model, sae,
                              self.state.step, self.data_report)


def train_chunk(
    model: nn.Module,
    tokenizer,
    pairs,
    config: TrainConfig,
    sae: nn.Module | None = None,
    state: TrainState | None = None,
    max_steps: int | None = None,
    max_seconds: float | None = None,
) -> ChunkResult:
    """Run up to ``max_steps`` steps (or until ``max_seconds`` have passed since the call began,
    at least one step) of a run, from ``state`` or the start.

    A pure function of its arguments: chaining chunks gives the same vector as one uninterrupted
    :class:`Trainer` run, which is what lets training run as a series of short calls that each
    hold a GPU briefly and may run in another process (ZeroGPU's ``spaces.GPU`` workers). Each
    call re-tokenises and, with the fast engine, re-caches the activations of ``pairs``.
    """
    started = time.perf_counter()  # the budget includes tokenising and caching
    trainer = Trainer(model, tokenizer, pairs, config, sae=sae)
    if state is not None:
        trainer.load_state(state)
    done, error = 0, None
    try:
        while trainer.step < trainer.total_steps:
            if (max_steps is not None and done >= max_steps) or (
                max_seconds is not None and done and time.perf_counter() - started >= max_seconds
            ):
                break
            trainer.run_step()
            done += 1
    except TrainingError as exc:
        error = str(exc)
    return ChunkResult(trainer.state(), trainer.history, trainer.total_steps,
                       finished=error is not None or trainer.step >= trainer.total_steps, error=error,
                       data_report=trainer.data_report.describe(), notes=list(trainer.notes))
