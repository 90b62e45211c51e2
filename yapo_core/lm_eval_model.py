"""A steered model for lm-evaluation-harness, so its benchmarks (the paper's MMLU check) run on a
model with a steering vector applied exactly as the method applies it.

    yapo lm-eval --model yapo --tasks mmlu \\
        --model_args pretrained=google/gemma-2-2b-it,vector=vector.safetensors,multiplier=1

``yapo lm-eval`` is lm-eval's own command line with this model registered as ``yapo``. Its
``model_args`` are those of lm-eval's ``hf`` model plus ``vector`` (a ``.safetensors`` file from
:func:`~yapo_core.export.save_vector`), ``multiplier`` (default 1), ``sae_path`` or
``sae_release`` + ``sae_id`` (default: the SAE the vector names) and ``allow_other_model``.
Every forward pass and every generation runs inside :meth:`SteeringVector.apply` (sparse vectors
through the SAE, dense ones added; every token), so the hook always comes off. Needs the
``lm_eval`` package (``pip install -e ".[eval]"``).
"""

from __future__ import annotations

import contextlib
import sys

from . import checks
from .errors import SettingsError, YapoError

try:
    from lm_eval.api.registry import register_model
    from lm_eval.models.huggingface import HFLM
except ImportError as exc:  # pragma: no cover - the optional dependency is missing
    raise ImportError("yapo_core.lm_eval_model needs lm-evaluation-harness: pip install -e \".[eval]\"") from exc


def _flag(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


@register_model("yapo")
class SteeredLM(HFLM):
    """lm-eval's Hugging Face model with a YaPO/BiPO/CAA/SAS vector applied at ``multiplier``."""

    def __init__(self, pretrained, vector: str | None = None, multiplier: float | str = 1.0,
                 sae_path: str | None = None, sae_release: str | None = None, sae_id: str | None = None,
                 allow_other_model: bool | str = False, **kwargs):
        from .errors import ModelLoadError
        from .hub import explain_hub_error, require_hub
        from .models import is_local_source

        local = not isinstance(pretrained, str) or is_local_source(pretrained)
        if not local:
            require_hub("model", pretrained, ModelLoadError)
        try:
            super().__init__(pretrained=pretrained, **kwargs)
        except OSError as exc:  # transformers' "couldn't connect", "not a valid model identifier", gated, ...
            if local:
                raise ModelLoadError(f"model folder {pretrained!r} could not be loaded: {exc}") from exc
            raise ModelLoadError(explain_hub_error("model", pretrained, exc)) from exc
        (self.multiplier,) = checks.multipliers([multiplier], "multiplier")
        self.vector = self.sae = None
        if vector:
            from .export import load_vector
            from .saes import load_sae_for

            self.sae = load_sae_for(load_vector(vector), sae_release, sae_id, sae_path, self.model,
                                    how="pass sae_path= or sae_release= and sae_id= in model_args")
            self.vector = load_vector(vector, model=self.model, sae=self.sae,
                                      allow_other_model=_flag(allow_other_model))

    def steered(self):
        """The context every model call runs in: the vector on, at the multiplier (none at 0)."""
        if self.vector is None or self.multiplier == 0:
            return contextlib.nullcontext()
        return self.vector.apply(self.model, self.multiplier, sae=self.sae)

    def _model_call(self, *args, **kwargs):
        with self.steered():
            return super()._model_call(*args, **kwargs)

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
        """lm-eval's generation, steered, and capped where lm-eval caps it (``max_gen_toks``): it gives
        ``max_length``, which a model's own ``generation_config.max_new_tokens`` would override."""
        if self.model.generation_config.max_new_tokens is not None and "max_new_tokens" not in generation_kwargs:
            generation_kwargs["max_new_tokens"] = max(1, max_length - context.shape[1])  # the same cap, as the model reads it
            max_length = None
        with self.steered():
            return super()._model_generate(context, max_length, stop, **generation_kwargs)


def lm_eval_capability(model, tokenizer, tasks: list[str], include_path: str | None = None, limit: int | None = None,
                       batch_size: int = 8):
    """A capability measure for :func:`~yapo_core.comparison.compare_methods`: lm-eval's ``tasks``
    (e.g. ``["mmlu"]``; local task YAML files from ``include_path``) on the already loaded model,
    the mean over tasks of each task's main metric (``acc``, else ``exact_match``, else its first).
    It runs whatever steering is on the model: the comparison puts each vector on around the call."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    if not tasks:
        raise SettingsError("give at least one lm-eval task, e.g. mmlu.")
    harness = SteeredLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)  # no vector: lm-eval's own
    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise SettingsError(f"lm-eval task(s) {unknown} are unknown" + (f" (with include_path {include_path!r})"
                                                                       if include_path else "") + ".")
    try:  # load the tasks' data now, before any training, so that an unreachable dataset fails at once
        manager.load(list(tasks))
    except Exception as exc:
        raise SettingsError(f"the data of lm-eval task(s) {tasks} could not be loaded: {exc}") from exc

    def measure() -> float:
        results = lm_eval.simple_evaluate(model=harness, tasks=list(tasks), task_manager=manager, limit=limit)["results"]
        return sum(_main_metric(results[t]) for t in tasks) / len(tasks)

    return measure


def _main_metric(scores: dict) -> float:
    numbers = {k: v for k, v in scores.items() if isinstance(v, (int, float)) and "stderr" not in k}
    for prefix in ("acc,", "exact_match,"):
        for key, value in numbers.items():
            if key.startswith(prefix):
                return float(value)
    return float(next(iter(numbers.values())))


def main(argv: list[str] | None = None) -> int:
    """lm-eval's command line, with the ``yapo`` model registered."""
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    setup_logging()
    if argv is not None:
        sys.argv = ["yapo lm-eval", *argv]
    parser = HarnessCLI()
    args = parser.parse_args()
    try:
        parser.execute(args)
    except YapoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:  # most often a task's dataset, neither cached nor reachable
        print(f"error: lm-eval could not reach what it needs: {exc}. A task's data that is not in the local Hugging "
              "Face cache needs the Hub (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE unset, and a network): run it once "
              "online, or give local tasks with --include_path.", file=sys.stderr)
        return 2
    except ValueError as exc:  # a task lm-eval does not know ("Tasks not found: ..."), a malformed argument
        if "not found" not in str(exc).lower() and "task" not in str(exc).lower():
            raise
        print(f"error: {exc}. 'yapo lm-eval ls tasks' lists the tasks lm-eval knows; local ones come with "
              "--include_path.", file=sys.stderr)
        return 2
    return 0
