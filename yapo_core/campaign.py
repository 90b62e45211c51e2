"""The paper's table: the method comparison over many Deep-Culture-Lense countries, resumable.

:func:`compare_countries` runs :func:`~yapo_core.comparison.compare_methods` for each country's
MCQ task (train split for training and choosing multipliers, test split for the report), stores
each (country, method) result as soon as it is measured (``<out>/<country>/partial.json``, then
``comparison.json`` when the country is done), skips what is stored when run again, and goes on
past a country that fails (the message is kept in the summary). :func:`summary_table` averages
each method's test accuracy at its validation-chosen multiplier over the countries, beside the
YaPO paper's published averages where the model is the paper's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from torch import nn

from .comparison import ComparisonResult, MethodResult, compare_methods
from .data import PreferencePair
from .errors import SettingsError, YapoError
from .methods import METHODS
from .models import model_id

PAPER_AVERAGE_MCQ = {
    "google/gemma-2-2b-it": {"unsteered": 26.98, "bipo": 30.38, "sas": 37.70, "caa": 39.10, "yapo": 42.64},
}
"""Average MCQ accuracy (%) over the Deep-Culture-Lense countries published in the YaPO paper
(arXiv 2601.08441), per model; shown beside a re-implementation's figures, never in their place."""


@dataclass
class CampaignResult:
    model: str
    countries: dict[str, ComparisonResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def averages(self) -> dict[str, float]:
        """Per method (and ``unsteered``), the mean over countries of the test accuracy at the
        multiplier chosen on validation, in %."""
        if not self.countries:
            return {}
        out = {"unsteered": 100 * sum(r.baseline_accuracy for r in self.countries.values()) / len(self.countries)}
        for key in METHODS:
            rows = [next(m for m in r.results if m.method == key) for r in self.countries.values()
                    if any(m.method == key for m in r.results)]
            if len(rows) == len(self.countries):
                out[key] = 100 * sum(m.accuracy[m.chosen_multiplier] for m in rows) / len(rows)
        return out

    def summary_table(self) -> str:
        paper = PAPER_AVERAGE_MCQ.get(self.model, {})
        lines = [f"Average MCQ accuracy (%) over {len(self.countries)} countries; model `{self.model}`; each method "
                 "at the multiplier chosen on a validation split. This project's figures are a re-implementation; the "
                 "paper's column is copied from arXiv 2601.08441.", "",
                 "| method | this run | the paper |", "|---|---|---|"]
        for key, value in self.averages().items():
            label = "unsteered" if key == "unsteered" else METHODS[key].label
            lines.append(f"| {label} | {value:.2f} | {paper[key]:.2f} |" if key in paper else f"| {label} | {value:.2f} | — |")
        for country, why in self.failed.items():
            lines.append(f"\n{country}: not measured ({why})")
        return "\n".join(lines)


_NOT_SETTINGS = ("capability", "on_progress", "on_result", "progress", "done")


def _settings_of(model: nn.Module, compare_kw: dict, extra: Mapping[str, object] | None) -> dict:
    """What a campaign's results depend on, as JSON values."""
    kept = {k: v for k, v in compare_kw.items() if k not in _NOT_SETTINGS}
    kept["capability"] = compare_kw.get("capability") is not None
    return json.loads(json.dumps({"model": model_id(model), **kept, **(extra or {})}, default=str, sort_keys=True))


def _check_settings(out: Path, settings: dict) -> None:
    """Refuse ``settings`` other than those of the results ``out`` holds, which would mix results
    measured two ways in one table; a folder without results takes any (see :func:`_keep_settings`)."""
    path = out / "settings.json"
    has_results = any(out.glob("*/comparison.json")) or any(out.glob("*/partial.json"))
    if not (path.is_file() and has_results):
        return
    before = json.loads(path.read_text())
    changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
    if changed:
        shown = "; ".join(f"{k}: {before.get(k)!r} there, {settings.get(k)!r} now" for k in changed)
        raise SettingsError(f"{str(out)!r} holds results measured with other settings ({shown}); choose another "
                            "output folder, or delete that one to measure again.")


def _keep_settings(out: Path, settings: dict) -> None:
    """Write ``settings`` beside the results they produced (once the first one is stored)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")


def compare_countries(
    model: nn.Module,
    tokenizer,
    sae: nn.Module,
    load_split: Callable[[str, str], Sequence[PreferencePair]],
    countries: Sequence[str],
    out: str | Path,
    on_progress: Callable[[str], None] | None = None,
    settings: Mapping[str, object] | None = None,
    **compare_kw,
) -> CampaignResult:
    """The comparison for each of ``countries``; ``load_split(country, split)`` gives its
    ``train``/``test`` pairs. Results are stored under ``out`` as they come, and reused only by a
    run of the same settings: the model, ``compare_kw`` (methods, multipliers, training...) and
    ``settings`` (what ``load_split`` selects, e.g. the localization), kept in ``out/settings.json``."""
    say = on_progress or (lambda msg: None)
    out = Path(out)
    measured_with = _settings_of(model, compare_kw, settings)
    _check_settings(out, measured_with)
    result = CampaignResult(model_id(model))
    for i, country in enumerate(countries, 1):
        folder = out / country
        final = folder / "comparison.json"
        if final.is_file():
            say(f"[{i}/{len(countries)}] {country}: measured before, kept")
            result.countries[country] = ComparisonResult.load(final)
            continue
        partial_path = folder / "partial.json"
        done = [MethodResult.from_json(r) for r in json.loads(partial_path.read_text())] if partial_path.is_file() else []
        say(f"[{i}/{len(countries)}] {country}" + (f" (resuming after {', '.join(r.method for r in done)})" if done else ""))
        try:
            train, test = load_split(country, "train"), load_split(country, "test")
            folder.mkdir(parents=True, exist_ok=True)
            stored = list(done)

            def keep(r: MethodResult) -> None:  # each (country, method) result on disk as soon as it exists
                stored.append(r)
                _keep_settings(out, measured_with)
                partial_path.write_text(json.dumps([d.to_json() for d in stored], indent=1))

            comparison = compare_methods(model, tokenizer, sae, list(train), list(test), task=f"culture-{country}",
                                         on_progress=lambda msg: say(f"  {country} · {msg}"), done=done,
                                         on_result=keep, **compare_kw)
        except YapoError as exc:
            result.failed[country] = str(exc)
            say(f"  {country}: {exc}")
            continue
        comparison.save(folder)
        partial_path.unlink(missing_ok=True)
        result.countries[country] = comparison
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(result.summary_table() + "\n")
    (out / "summary.json").write_text(json.dumps({"model": result.model, "averages": result.averages(),
                                                  "paper": PAPER_AVERAGE_MCQ.get(result.model),
                                                  "failed": result.failed}, indent=2) + "\n")
    return result

