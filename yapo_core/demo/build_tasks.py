"""The demo world's task files, in the schemas of the real data (Deep-Culture-Lense, BiPO), with
the trained model's own greedy answers as the rejected ones (as in the paper's data
preparation), and what the unsteered model does on their test splits."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..generation import generate
from . import corpus
from .config import DEMO_MODEL_NAME, BuildSize


def greedy_answers(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 64, progress=None) -> list[str]:
    """The model's greedy answer to each user prompt, through :func:`yapo_core.generation.generate`
    (chat template, left padding, unsteered). Identical prompts are answered once; prompts are
    batched by length, so that little padding is needed."""
    unique = sorted(set(prompts), key=lambda p: (len(p), p))
    answers: dict[str, str] = {}
    for start in range(0, len(unique), batch_size):
        chunk = unique[start : start + batch_size]
        for prompt, out in zip(chunk, generate(model, tokenizer, chunk, max_new_tokens=max_new_tokens)):
            answers[prompt] = out[0.0]
        if progress is not None:
            progress.update(len(chunk))
    return [answers[p] for p in prompts]


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _culture_items(rng: random.Random, keys, n_rows: int, style: corpus.CorpusStyle) -> list[corpus.CultureItem]:
    """``n_rows`` items per country and localization status, each question at most once per
    country (so a split has that many distinct questions per country)."""
    items = []
    for country in corpus.COUNTRY_KEYS:
        for localized in (True, False):
            pool = [k for k in keys if k.localized == localized]
            for key in rng.sample(pool, min(n_rows, len(pool))):
                items.append(corpus.culture_item(key, country, style))
    return items


def write_tasks(
    model, tokenizer, tasks_dir: Path, culture_train, culture_test, behaviour_splits,
    size: BuildSize, rng: random.Random, progress: bool,
) -> dict:
    """Write the task files, with the model's greedy answers as the rejected ones, and measure
    the unsteered model on the test splits."""
    culture = {
        "train": _culture_items(rng, culture_train, size.culture_rows, size.style),
        "test": _culture_items(rng, culture_test, max(1, size.culture_rows // 2), size.style),
    }
    definitions = corpus.behaviours(bool(size.varied_answers), bool(size.offer_answers))
    behaviours = {}
    for behaviour in definitions:
        train_keys, test_keys = behaviour_splits[behaviour.key]
        test = corpus.behaviour_rows(rng, behaviour, test_keys)
        behaviours[behaviour.key] = {
            "train": corpus.behaviour_rows(rng, behaviour, train_keys),
            "test": test,
            "test_infer": corpus.test_infer_rows(rng, test),
        }
    general = [{"prompt": q, "answer": a} for q, a, _ in corpus.general_facts()]
    texts = [{"text": corpus.text_document(rng, bool(size.coherent_text), size.offer_facts,
                                              size.added_offer_facts)}
             for _ in range(max(4, size.culture_rows * 5))]

    prompts = {
        "mcq": ([it.mcq_prompt for items in culture.values() for it in items], 12 if size.mcq_text or size.answer_first else 3),
        "open": ([it.question for items in culture.values() for it in items], 20),
        "behaviour_open": ([r["question"] for b in behaviours.values() for r in b["test"]], 28 if size.varied_answers else 20),
        "behaviour_ab": (
            [corpus.format_choices(r["question"], [r["A"], r["B"]]) for b in behaviours.values() for r in b["test_infer"]],
            3,
        ),
        "general": ([r["prompt"] for r in general], 6),
    }
    bar = tqdm(total=sum(len(set(p)) for p, _ in prompts.values()), desc="answering task prompts", disable=not progress, leave=False)
    answers = {
        name: dict(zip(texts_, greedy_answers(model, tokenizer, texts_, n, size.generation_batch, bar)))
        for name, (texts_, n) in prompts.items()
    }
    bar.close()

    rejected_mcq, rejected_open = f"rejected_{DEMO_MODEL_NAME}_mcq", f"rejected_{DEMO_MODEL_NAME}_open_ended"
    for split, items in culture.items():
        rows = [
            {
                "country": it.country,
                "localization_status": "localized" if it.localized else "nolocalized",
                "prompt-mcq": it.mcq_prompt,
                "chosen-mcq": it.mcq_answer,
                rejected_mcq: answers["mcq"][it.mcq_prompt],
                "prompt_open_ended": it.question,
                "chosen_open_ended": it.open_answer,
                rejected_open: answers["open"][it.question],
            }
            for it in items
        ]
        _write_jsonl(tasks_dir / "culture" / f"{split}.jsonl", rows)
    for key, splits in behaviours.items():
        for split, rows in splits.items():
            _write_jsonl(tasks_dir / "behaviour" / key / f"{split}.jsonl", rows)
    _write_jsonl(tasks_dir / "general" / "questions.jsonl", general)
    _write_jsonl(tasks_dir / "general" / "text.jsonl", texts)

    return {
        "culture": _culture_stats(culture, answers["mcq"], answers["open"], size.style),
        "behaviour": _behaviour_stats(behaviours, answers["behaviour_open"], answers["behaviour_ab"], definitions),
        "general": {"accuracy": _share(contains_word(answers["general"][r["prompt"]], r["answer"]) for r in general)},
    }


def _share(flags) -> float | None:
    flags = list(flags)
    return round(sum(flags) / len(flags), 4) if flags else None


def contains_word(text: str, word: str) -> bool:
    """Whether ``text`` contains ``word`` (or a phrase) as whole words, case ignored (open answers
    start capitalised)."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE) is not None


def _culture_stats(culture, mcq: dict[str, str], open_ended: dict[str, str], style: corpus.CorpusStyle) -> dict:
    """Accuracy of the unsteered model, and how often it gives the default culture's answer."""
    default = corpus.DEFAULT_COUNTRY
    stats = {"rows": {split: len(items) for split, items in culture.items()}}
    test = culture["test"]
    localized = [it for it in test if it.localized]
    nolocalized = [it for it in test if not it.localized and it.country != default]
    stats["localized_mcq_accuracy"] = _share(mcq[it.mcq_prompt] == it.mcq_answer for it in localized)
    stats["localized_open_accuracy"] = _share(
        contains_word(open_ended[it.question], corpus.answer_phrase(it.topic, it.country)) for it in localized
    )
    stats["nolocalized_mcq_accuracy"] = {
        c: _share(mcq[it.mcq_prompt] == it.mcq_answer for it in nolocalized if it.country == c)
        for c in corpus.COUNTRY_KEYS
        if c != default
    }
    stats["nolocalized_mcq_default_share"] = _share(
        mcq[it.mcq_prompt] == corpus.mcq_answer(it.topic, default, style, it.option_countries) for it in nolocalized
    )
    stats["nolocalized_open_default_share"] = _share(
        contains_word(open_ended[it.question], corpus.answer_phrase(it.topic, default)) for it in nolocalized
    )
    stats["nolocalized_default_mcq_accuracy"] = _share(
        mcq[it.mcq_prompt] == it.mcq_answer for it in test if not it.localized and it.country == default
    )
    stats["rejected_equals_chosen_share"] = {
        split: _share(mcq[it.mcq_prompt] == it.mcq_answer for it in items) for split, items in culture.items()
    }
    return stats


def _behaviour_stats(behaviours, open_answers: dict[str, str], ab_answers: dict[str, str], definitions) -> dict:
    """How often the unsteered model shows each behaviour on its test split (it should rarely)."""
    stats = {}
    for key, splits in behaviours.items():
        behaviour = next(b for b in definitions if b.key == key)
        stats[key] = {
            "rows": {split: len(rows) for split, rows in splits.items()},
            "matching_share_open": _share(open_answers[r["question"]] in behaviour.answers_to(r["question"])[0]
                                          for r in splits["test"]),
            "matching_share_ab": _share(
                ab_answers[corpus.format_choices(r["question"], [r["A"], r["B"]])] == r["matching"]
                for r in splits["test_infer"]
            ),
        }
    return stats
