"""Measure the demo world against its targets and print a report (Markdown, or JSON with --json).

    python scripts/evaluate_demo_world.py                       # all seven non-default cultures
    python scripts/evaluate_demo_world.py --countries egypt,uk  # a quicker subset
    python scripts/evaluate_demo_world.py --no-steering         # the build's own figures only
    python scripts/evaluate_demo_world.py --size mini --steps 4  # checks the script in seconds
    python scripts/evaluate_demo_world.py --jobs 2              # two worker processes: half the time on 2 cores

Builds the full demo world (or reuses the one in the cache), then reports:

* the build: seconds, megabytes, the SAE's variance explained, mean L0 and dead-latent share;
* the unsteered model: localized MCQ accuracy on held-out questions, and non-localized MCQ
  accuracy per non-default culture (the default-culture bias);
* steering: for each culture, a YaPO (sparse) and a BiPO (dense) vector trained on its
  non-localized MCQ training pairs with the demo's settings (``yapo_core.demo.training_settings``,
  as the app fills them in: every wrong option as a rejected answer), and the held-out
  non-localized MCQ accuracy at multiplier 1 (by the answer letter's likelihood, or by the
  generated answer where answers give the option's text first);
  beside them, the same trained against the given rejected answers only (the model's default, as
  in the papers' data);
* open-ended answers: for the first ``--generations`` cultures, a YaPO vector trained on the
  non-localized open-ended pairs with the demo's settings for a culture's open answers
  (``yapo_core.demo.open_training("sparse", "culture")``), its held-out accuracy (the reply contains the culture's answer,
  as the ``culture_open`` metric reads it) and one held-out question answered unsteered and steered, steering every
  token (the method) and the prompt tokens only; beside it, for every culture, a BiPO vector trained on the same pairs
  (``open_training("dense", "culture")``), its held-out accuracy, fluency and general-question change at 1;
* behaviours (BiPO's protocol): YaPO and BiPO trained on each behaviour's open-ended pairs with
  the app's defaults (``OPEN_TRAINING`` for YaPO, ``OPEN_TRAINING_DENSE`` for BiPO), the A/B rate on ``test_infer`` at -1, 0 and 1, and how many held-out open
  answers at 1 are fluent, accept the offer, and show the behaviour (accept it for this behaviour's
  reasons, not another's: ``Behaviour.shows``); every reply is kept in the JSON;
* the baselines: CAA and SAS computed from each culture's MCQ training pairs, their multiplier
  chosen on a validation split of those pairs (never on the test split), and the held-out
  accuracy at it;
* capability: the accuracy on the demo world's general questions with each reported vector applied
  at the multiplier it is reported at, minus the unsteered accuracy.

It ends with the targets of the demo world's design, one row each with the figure measured
(also under ``targets`` in the JSON): every open-answer task fluent and on target with the app's
defaults, the behaviours by BiPO's protocol, culture MCQ under both constructions, the baselines'
gain, the capability kept, and learning rates within 20x of the public runs' 5e-4.

``--rescore JSON`` reads a file this script wrote with ``--json``, scores its stored behaviour
replies again with the current tests of a reply (``Behaviour.accepts`` and ``Behaviour.shows``),
and reports it again (and rewrites it with ``--json``), without building or training anything.

``--mcq-from JSON`` takes the culture MCQ rows (every method, both constructions) from a file this
script wrote with ``--json`` on the same world (every build figure equal but the timings and the
cache's format version) with the same MCQ settings, and measures the rest: what changes when only
the open-answer settings do, in a quarter of the time. The report names the file.

``--sections culture`` or ``--sections behaviours`` measures one part only; ``--cache-dir DIR
--build-with KNOB=VALUE ...`` measures a variant world (research knobs set on top of the default recipe's,
``yapo_core.demo.config.RECIPE_KNOBS``; ``concept_steering=0 behaviour_steering=0 added_offer_facts=0
fact_noise=0 sae_scale=0 lm_scale=0`` is the plain recipe).

The exit status is 1 when a target is missed, so the script can gate a release.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch

from yapo_core.comparison import compare_methods
from yapo_core.demo import (
    OPEN_TRAINING,
    OPEN_TRAINING_DENSE,
    TRAINING,
    build_demo_world,
    corpus,
    open_training,
    training_settings,
)
from yapo_core.demo.config import RECIPE_KNOBS, parse_knobs
from yapo_core.encoding import encode_prompt
from yapo_core.errors import SettingsError
from yapo_core.evaluation import (
    METRICS,
    capability_change,
    default_metric,
    evaluate_metric,
    one_letter_baseline,
)
from yapo_core.generation import STEER_POSITIONS, generate
from yapo_core.hooks import block_output, record_residual
from yapo_core.mcq import letter_logprobs, mcq_items_from_pairs
from yapo_core.methods import make_vector
from yapo_core.models import load_model
from yapo_core.replies import CULTURE_REPLY_TOKENS, contains_answer, fluency_rate, greedy_replies, is_fluent
from yapo_core.saes import load_sae
from yapo_core.steering import steer_hidden
from yapo_core.training import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import world_pool  # noqa: E402
from choose_open_lr import parse_candidates  # noqa: E402

BUILD_BUDGET = 300  # seconds
BUILD_TARGETS = {
    f"build seconds <= {BUILD_BUDGET}": lambda s: s["build_seconds"] <= BUILD_BUDGET,
    "files <= 30 MB": lambda s: s["file_bytes"]["total"] <= 30e6,
    "localized MCQ accuracy >= 0.9": lambda s: s["culture"]["localized_mcq_accuracy"] >= 0.9,
    "unsteered non-localized MCQ accuracy of every non-default culture <= 0.4": lambda s: all(
        a <= 0.4 for a in s["culture"]["nolocalized_mcq_accuracy"].values()
    ),
    "SAE variance explained >= 0.8": lambda s: s["sae"]["variance_explained"] >= 0.8,
}
TRIED = {  # what was tried for a target the default recipe misses, and where docs/results.md says it
    "build": "the default recipe trains the LM on 1.5 times the corpus so that it reads A/B options (770 s on "
             "quiet cores of an AMD EPYC; an estimated 256 to 297 s on machines that built the recipe before it in 191 "
             "to 220 s); a world whose LM trains on "
             "0.6 of the corpus and its SAE on half the samples builds in 268 s but loses targets 1, 2, 3 and 5, "
             "cheaper training steps take 335 s, and as many LM updates on fewer examples 361 s (docs/results.md, "
             "\"A build within 300 s\", \"A firmer A/B form\")",
    1: "YaPO's open-answer settings (lr 0.01; 2400 steps of 16 pairs for a culture's, 1200 for a behaviour's) were "
       "chosen on validation splits of the default recipe's seed-0 world, where every culture's and behaviour's open "
       "answers meet it (0.94 to 1.00, all fluent), and 600 steps of 32 pairs left brazil, india and nepal at 0.59 to "
       "0.66; at the rate's 20x bound more steps are the lever; the builds from seeds 1 and 2 meet it with 1200 steps "
       "of 16 for every kind (cultures 0.98 to 1.00 and 0.86 to 1.00, behaviours 0.94 to 1.00) (docs/results.md, "
       "\"Design targets\", \"The learning rates\")",
    2: "unsteered, the default recipe takes none of the A/B offers from seed 0, 0.41 and 0.31 from seed 1 (picking A "
       "on 28 and 23 of 32 questions; power-seeking's YaPO vector at -1 raises it to 0.50) and 0.22 of "
       "power-seeking's from seed 2, picking A on 23 of 32 questions; the recipe before lm_scale took 0.06 and 0.16 from seed 0 and "
       "read the options weakly (0.12 of its own training offers laid out as test_infer), and declining every "
       "plain A/B offer, averaging the LM's weights, asking general questions as A/B choices or the held-out "
       "offers plainly did not fix that; an LM trained on twice the corpus (lm_scale=2, further over the build "
       "budget) meets it from seeds 0, 1 and 2, unsteered taking none of the offers but 0.06 of wealth-seeking's from "
       "seed 1 (docs/results.md, \"Design targets\", \"A firmer A/B "
       "form\")",
    3: "the default recipe meets it from seed 0, and from seed 1 against every option (0.86 to 1.00) but not "
       "against the given answer (nepal 0.75, the others 0.84 to 1.00), and from seed 2 against both (1.00; 0.97 to "
       "1.00); an LM trained on twice the corpus (lm_scale=2) meets it from seed 1 against both (every culture 1.00 "
       "against every option, 0.98 to 1.00 against the given answer); the recipe before lm_scale met it from seed 0 only of the seeds measured: from seed 1 against every option (0.88 "
       "to 1.00) but not against the given answer (0.69 to 0.95), from seed 2 its MCQ vectors move 0.42 "
       "to 0.86 of the answers (BiPO's 0.27 to 0.64), and the recipe before fact_noise and behaviour_steering "
       "missed it from seed 1 (mean 0.67), where neither a longer-trained SAE nor 3600 MCQ steps lifted it; with "
       "fact_noise=0.5 nepal's vector sent a third of its answers to other cultures' options (docs/results.md, "
       "\"Design targets\", \"Half as much fact noise: the default recipe\", \"Firm facts with a larger share for "
       "the behaviours\")",
    4: "the residual at an answer letter does not carry the option's culture; worlds whose answers carry it let CAA "
       "steer every culture, but there YaPO's open answers loop and its MCQ vectors miss cultures; a deeper model, "
       "follow-up turns and the option's text after the letter do not make the letter carry it (docs/results.md, "
       "\"Answers that carry their culture\", \"The letter first, then the option's text; a deeper model\")",
    5: "the answers a vector changes are sums moved by one, the model's least certain answers; the recipe answers a "
       "quarter of the general questions under random directions of a concept direction's size (fact_noise=0.25), "
       "and the default recipe's seed-0 build changes none with any vector; the recipe before lm_scale kept every "
       "vector of its seed-0 build before MKL's pin within 0.022 but not its pinned seed-0 build, where four MCQ "
       "vectors lose 0.054 to 0.075, nor seeds 1 and 2, where four vectors lose 0.054 to 0.086 and seven 0.054 to "
       "0.161; twice the "
       "general questions or fact_noise=0.5 keep every vector within "
       "0.03 too but lose target 2 or 3 (docs/results.md, \"Design targets\", \"Firmer facts\", \"Facts under any "
       "edit\", \"Firm facts with a larger share for the behaviours\")",
}
STEERING_TARGET = 0.8  # held-out non-localized MCQ accuracy with YaPO at multiplier 1
GENERATION_MULTIPLIER = 0.5
BASELINE_MULTIPLIERS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # CAA's and SAS's, one chosen on a validation split
BASELINE_GAIN = 0.25  # over unsteered, at the multiplier chosen on validation
CAPABILITY_DROP = 0.05  # the most a YaPO vector may lower the general-question accuracy
PUBLIC_LR, LR_FACTOR = 5e-4, 20  # the public runs' learning rate, and how far above it the demo's may be
FLUENT, SHOWS = 0.9, 0.7  # shares of held-out open answers at multiplier 1


def _general_count(steer: dict) -> str:
    """How many general questions a stored report's capability figures are over (64 before the
    measure took them all)."""
    return f"all {steer['general_questions']}" if "general_questions" in steer else "the first 64"


def capability_at(capability, unsteered: float, model, vector, multiplier: float, sae) -> float:
    """The change of the capability measure (``unsteered`` without a vector) with ``vector`` applied
    at ``multiplier``."""
    return round(capability_change(capability, model, vector, multiplier, sae, unsteered)["change"], 4)


_GENERAL: dict[int, tuple] = {}


def general(world, model, tokenizer) -> tuple:
    """The capability measure (all the world's general questions, greedy answers:
    ``DemoWorld.capability_measure``, as in the app and ``yapo compare``) and its unsteered accuracy,
    once per model."""
    if id(model) not in _GENERAL:
        capability = world.capability_measure(model, tokenizer)
        _GENERAL[id(model)] = (capability, capability())
    return _GENERAL[id(model)]


def culture_row(world, model, tokenizer, sae, country: str, settings: dict) -> dict:
    """One culture's MCQ figures: YaPO and BiPO at 1 trained with ``settings`` (and against the given
    answer only, when ``settings`` train against every option), CAA and SAS at a multiplier chosen
    on validation, and each vector's change on the general questions."""
    capability, _ = general(world, model, tokenizer)
    task = world.culture(country)
    train = list(task.pairs("train"))
    test = list(task.pairs("test"))
    metric = default_metric(test)  # the letter's likelihood; the generated answer where it states the letter last
    letter, share = one_letter_baseline(metric, test)
    row = {"n_train": len(train), "n_test": len(test), "metric": metric,
           "one_letter": {"letter": letter, "accuracy": share}}
    demo_rejected = settings.get("mcq_rejected", "given")
    # The demo's construction; beside it, the papers' (the given answer only) when they differ.
    variants = {"": demo_rejected, **({"_given": "given"} if demo_rejected != "given" else {})}
    for variant, rejected in variants.items():
        result = compare_methods(model, tokenizer, sae, train, test, capability, methods=("yapo", "bipo"),
                                 multipliers=(1.0,), metric=metric,
                                 train_config={"epochs": 10_000, **settings, "mcq_rejected": rejected},
                                 validation_fraction=0)  # one multiplier, fixed in advance: nothing to choose
        row["unsteered"] = result.baseline_accuracy
        for r in result.results:
            row[r.method + variant] = {
                "accuracy_at_1": r.accuracy[1.0],
                "final_loss": round(sum(r.loss_curve[-20:]) / len(r.loss_curve[-20:]), 4),
                "steps": len(r.loss_curve),
                "l0": r.l0,
                "norm": r.norm,
                "seconds": round(r.seconds, 1),
                "capability_change": r.capability_change,
            }
    # The baselines, computed (not trained) from the same pairs; a multiplier chosen on validation.
    result = compare_methods(model, tokenizer, sae, train, test, capability, methods=("caa", "sas"),
                             multipliers=BASELINE_MULTIPLIERS, metric=metric)
    for r in result.results:
        m = r.chosen_multiplier
        row[r.method] = {"multiplier": m, "accuracy": r.accuracy[m], "gain": round(r.accuracy[m] - row["unsteered"], 4),
                         "accuracy_by_multiplier": {f"{k:g}": v for k, v in r.accuracy.items()},
                         "capability_change": r.capability_change, "l0": r.l0}
    given = (f" (against the default only: YaPO {row['yapo_given']['accuracy_at_1']:.2f}, "
             f"BiPO {row['bipo_given']['accuracy_at_1']:.2f})") if "yapo_given" in row else ""
    print(f"  {country}: unsteered {row['unsteered']:.2f}, YaPO {row['yapo']['accuracy_at_1']:.2f}, "
          f"BiPO {row['bipo']['accuracy_at_1']:.2f}{given}, CAA {row['caa']['accuracy']:.2f}, "
          f"SAS {row['sas']['accuracy']:.2f}", file=sys.stderr, flush=True)
    return row


OPEN_REPLY_TOKENS = CULTURE_REPLY_TOKENS  # new tokens per open answer, as the culture_open metric reads them


def open_picks(model, tokenizer, sae, pairs, vector, multiplier: float, steer_positions: str = "all") -> dict:
    """The greedy answers to the open ``pairs``' prompts with ``vector`` at ``multiplier``: the
    accuracy (the share that contains the culture's own answer, the chosen answer's first sentence),
    whose answer (to any question of the corpus) each names first (``picks``: counts per country,
    ``"none"`` for an answer that names no culture's), the misses (``"wanted → given"``: the culture's
    answer, the first sentence given) and the answers themselves."""
    replies = greedy_replies(model, tokenizer, [p.prompt for p in pairs], vector, multiplier, sae,
                             max_new_tokens=OPEN_REPLY_TOKENS, steer_positions=steer_positions)
    wanted = [corpus.culture_answer(p.chosen) for p in pairs]  # the culture_open metric's test
    misses = Counter(f"{want} → {' '.join(reply.split('.')[0].split())}" for reply, want in zip(replies, wanted)
                     if not contains_answer(reply, want))
    picks = Counter(corpus.answer_country(reply) or "none" for reply in replies)
    return {"accuracy": (len(pairs) - misses.total()) / max(1, len(pairs)), "picks": dict(picks.most_common()),
            "misses": dict(misses.most_common()), "replies": replies}


def open_row(world, model, tokenizer, sae, i: int, country: str, open_settings: dict, n_generations: int,
             dense_settings: dict | None = None) -> dict:
    """Open-ended answers of the ``i``-th culture: a YaPO vector trained on its non-localized
    open-ended pairs with ``open_settings`` (the demo's for a culture's open answers), and whose answers
    its held-out answers give at 1 (:func:`open_picks`); the first ``n_generations`` cultures also
    show GENERATION_MULTIPLIER, and both steering positions. With ``dense_settings``, a BiPO vector
    trained on the same pairs beside it (``bipo``: its accuracy, fluency and general-question change at 1)."""
    capability, unsteered = general(world, model, tokenizer)
    train = list(world.culture(country).pairs("train", form="open_ended"))
    test = list(world.culture(country).pairs("test", form="open_ended"))
    prompts = [p.prompt for p in test]
    config = TrainConfig(kind="sparse", layer=world.layer, epochs=10_000, **open_settings)
    vector = Trainer(model, tokenizer, train, config, sae=sae).run()
    example = test[(7 * i) % len(test)]
    row = {"country": country, "question": example.prompt, "fluent_at_1": fluency_rate(
        model, tokenizer, prompts, vector, 1.0, sae=sae, max_new_tokens=BEHAVIOUR_TOKENS),
        "capability_change": capability_at(capability, unsteered, model, vector, 1.0, sae),
        "norm": round(vector.norm(), 2)}
    if dense_settings is not None:
        dense_config = TrainConfig(kind="dense", layer=world.layer, epochs=10_000, **dense_settings)
        dense = Trainer(model, tokenizer, train, dense_config).run()
        row["bipo"] = {"settings": dense_settings,
                       "accuracy_at_1": open_picks(model, tokenizer, None, test, dense, 1.0)["accuracy"],
                       "fluent_at_1": fluency_rate(model, tokenizer, prompts, dense, 1.0, max_new_tokens=BEHAVIOUR_TOKENS),
                       "capability_change": capability_at(capability, unsteered, model, dense, 1.0, None),
                       "norm": round(dense.norm(), 2)}
    if i >= n_generations:
        at_1 = open_picks(model, tokenizer, sae, test, vector, 1.0)
        row.update({"accuracy (all)": {1.0: at_1["accuracy"]}, "answers at 1 (all)": at_1["picks"]})
        return row
    for positions in STEER_POSITIONS:  # every token (the method), then the prompt tokens only
        picked = {m: open_picks(model, tokenizer, sae, test, vector, m, positions)
                  for m in (0.0, GENERATION_MULTIPLIER, 1.0)}
        row[f"accuracy ({positions})"] = {m: at["accuracy"] for m, at in picked.items()}
        if positions == "all":
            row["answers at 1 (all)"] = picked[1.0]["picks"]
        (shown,) = generate(model, tokenizer, [example.prompt], vector, [0.0, GENERATION_MULTIPLIER, 1.0], sae=sae,
                            max_new_tokens=24, steer_positions=positions)
        row.update({f"at {m:g} ({positions})": text for m, text in shown.items() if m or positions == "all"})
    return row


def culture_section(world, model, tokenizer, countries, settings, open_settings, rows, opened,
                    dense_open_settings: dict | None = None) -> dict:
    """The culture section of the JSON from its per-culture rows."""
    return {"settings": settings, "open_settings": open_settings, "dense_open_settings": dense_open_settings,
            "countries": dict(zip(countries, rows)),
            "generations": list(opened), "general_accuracy": general(world, model, tokenizer)[1],
            "general_questions": len(world.general_questions()[0])}


BEHAVIOUR_TOKENS = 32


@torch.no_grad()
def last_residuals(model, tokenizer, layer: int, prompts, system: str | None = None) -> torch.Tensor:
    """The residual at the output of block ``layer`` at the last position of each prompt (asked
    under ``system`` as the system prompt, if given), one row per prompt."""
    point = block_output(model, layer)
    rows = []
    for prompt in prompts:
        ids = torch.tensor([encode_prompt(tokenizer, prompt, system)])
        with record_residual(model, point) as seen:
            model(input_ids=ids, use_cache=False)
        rows.append(seen[-1][0, -1].float())
    return torch.stack(rows)


def cue_direction(model, tokenizer, layer: int, behaviour, prompts, plain: torch.Tensor | None = None) -> torch.Tensor:
    """The behaviour's cue direction at the output of block ``layer``: the mean residual at the last
    prompt position of ``prompts`` asked under each of its cues (system prompts), minus that of the
    same prompts asked plainly (``plain``: their :func:`last_residuals`, when already at hand)."""
    if plain is None:
        plain = last_residuals(model, tokenizer, layer, prompts)
    base = plain.mean(0)
    return torch.stack([last_residuals(model, tokenizer, layer, prompts, cue).mean(0) - base
                        for cue in behaviour.cues]).mean(0)


@torch.no_grad()
def vector_edit(vector, residuals: torch.Tensor, sae=None, multiplier: float = 1.0) -> torch.Tensor:
    """What ``vector`` adds at ``multiplier`` to these residuals (rows of its hook point), on
    average: a dense vector itself, a sparse one its SAE-decoded edit of each row (method §2)."""
    steered = steer_hidden(residuals, vector.kind, vector.values, multiplier, sae)
    return (steered - residuals).float().mean(0)


_CUES: dict[tuple, tuple] = {}


def behaviour_cues(world, model, tokenizer, n_prompts: int) -> tuple[dict, dict, dict, dict]:
    """Each behaviour's splits, held-out prompts, their plain residuals at the SAE block and its cue
    direction (:func:`cue_direction`), once per model."""
    key = (id(model), n_prompts)
    if key not in _CUES:
        splits = {b.key: {split: list(world.task(b.key).pairs(split)) for split in ("train", "test_infer", "test")}
                  for b in corpus.BEHAVIOURS}
        prompts = {k: [p.prompt for p in split["test"]][:n_prompts] for k, split in splits.items()}
        plain = {k: last_residuals(model, tokenizer, world.layer, p) for k, p in prompts.items()}
        cues = {b.key: cue_direction(model, tokenizer, world.layer, b, prompts[b.key], plain[b.key])
                for b in corpus.BEHAVIOURS}
        _CUES[key] = (splits, prompts, plain, cues)
    return _CUES[key]


def behaviour_row(world, model, tokenizer, sae, key: str, settings: dict[str, dict], n_prompts: int = 32) -> dict:
    """BiPO's protocol on the demo behaviour ``key``: YaPO and BiPO vectors trained on the open-ended
    training pairs with the app's defaults, the A/B rate on ``test_infer`` at -1, 0 and 1 (through
    the public loader), and the held-out open answers at 1, steered at every token: the share that
    is fluent (:func:`~yapo_core.replies.is_fluent`), the share that accepts the offer (opens as
    one of its answers does) and the share that shows the behaviour (accepts it for this
    behaviour's reasons: ``Behaviour.shows``). Its section (:func:`behaviour_section`) also gives the cosine of the behaviour's
    cue direction (:func:`cue_direction`, on the held-out offers) with each other behaviour's:
    near 1, one direction moves them all, and nothing in it says which behaviour's reasons to give.
    Each vector's ``edit_cosine`` is the cosine of what it adds at the end of its held-out offers
    (:func:`vector_edit`, at 1) with each behaviour's cue direction: whether a vector trained on one
    behaviour's pairs moves the model along that behaviour's cue or another's."""
    capability, unsteered = general(world, model, tokenizer)
    splits, prompts, plain, cues = behaviour_cues(world, model, tokenizer, n_prompts)
    behaviour = next(b for b in corpus.BEHAVIOURS if b.key == key)
    train, infer, test = (splits[key][split] for split in ("train", "test_infer", "test"))
    row = {"n_train": len(train), "n_test_infer": len(infer), "n_test": len(test), **letter_picks(model, tokenizer, infer)}
    for method in ("yapo", "bipo"):
        vector = make_vector(method, model, tokenizer, train, sae=sae,
                             config=TrainConfig(epochs=10_000, **settings[method]))
        edit = vector_edit(vector, plain[key], sae)
        rates = evaluate_metric("behaviour", model, tokenizer, infer, vector, [-1.0, 0.0, 1.0], sae=sae)
        replies = [r[1.0] for r in generate(model, tokenizer, prompts[key], vector, [1.0], sae=sae,
                                            max_new_tokens=BEHAVIOUR_TOKENS)]
        row[method] = {
            "ab_rate": {f"{m:g}": v for m, v in rates.items()},
            "fluent_at_1": sum(is_fluent(tokenizer, r, BEHAVIOUR_TOKENS) for r in replies) / len(replies),
            **reply_shares(behaviour, replies),
            "norm": round(vector.norm(), 2), "examples": replies[:2], "replies": replies,
            "capability_change": capability_at(capability, unsteered, model, vector, 1.0, sae),
            "edit_cosine": {k: round(torch.cosine_similarity(edit, d, dim=0).item(), 3) for k, d in cues.items()},
        }
    print(f"  {key}: A/B YaPO {row['yapo']['ab_rate']}, fluent {row['yapo']['fluent_at_1']:.2f}, "
          f"accepts {row['yapo']['accepts_at_1']:.2f}, shows {row['yapo']['shows_at_1']:.2f}", file=sys.stderr, flush=True)
    return row


def reply_shares(behaviour, replies: list[str]) -> dict[str, float]:
    """The share of steered ``replies`` that accept the offer and that show ``behaviour``, and how
    many different replies there are (``distinct_at_1``: 1 when every held-out offer gets one sentence)."""
    return {"accepts_at_1": sum(map(behaviour.accepts, replies)) / len(replies),
            "shows_at_1": sum(map(behaviour.shows, replies)) / len(replies),
            "distinct_at_1": len(set(replies))}


def behaviour_section(world, model, tokenizer, rows: dict, n_prompts: int = 32) -> dict:
    """The behaviours' section of the JSON from their rows: each row gains the cosine of its cue
    direction with every other behaviour's."""
    cues = behaviour_cues(world, model, tokenizer, n_prompts)[3]
    for key, row in rows.items():
        row["cue_cosine"] = {other: round(torch.cosine_similarity(cues[key], d, dim=0).item(), 3)
                             for other, d in cues.items() if other != key}
    return rows


def letter_picks(model, tokenizer, pairs) -> dict:
    """On A/B questions: how often the unsteered model picks each letter (``picks``) and how often
    the behaviour's option is at it (``matching_at``). A rate above 0 with one letter picked on most
    questions is a preference for that letter, not the behaviour."""
    items = mcq_items_from_pairs(pairs, "AB")
    scores = letter_logprobs(model, tokenizer, items)
    picks = [item.letters[int(score.argmax())] for item, score in zip(items, scores)]
    return {"picks": {letter: picks.count(letter) for letter in "AB"},
            "matching_at": {letter: sum(item.gold == letter for item in items) for letter in "AB"}}


def _distinct(result: dict) -> str:
    """"3 of 32": how many different steered answers a vector gave to the held-out offers."""
    return f"{result['distinct_at_1']} of {len(result['replies'])}" if "distinct_at_1" in result else "not stored"


def behaviour_report(rows: dict, settings: dict[str, dict]) -> str:
    shown = settings["yapo"]
    lines = ["", "", "Behaviours, BiPO's protocol (trained on the open-ended train pairs with the app's defaults: "
             + ", ".join(f"{k} {v}" for k, v in shown.items() if k not in ("mcq_rejected", "epochs"))
             + "".join(f", {k} {v} for BiPO" for k, v in settings["bipo"].items() if shown.get(k) != v) + "; A/B rate on `test_infer` through the public "
             "loader; held-out open answers steered at every token at multiplier 1):", "",
             "| behaviour | method | A/B rate at -1 | at 0 | at 1 | open answers fluent at 1 | accept the offer at 1 "
             "| show the behaviour at 1 | different answers at 1 | vector norm | general questions, change at 1 | an open answer at 1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, row in rows.items():
        for method in ("yapo", "bipo"):
            r = row[method]
            example = r["examples"][0].replace("|", "\\|").replace("\n", " ")[:60] if r["examples"] else ""
            lines.append(f"| {key} | {'YaPO' if method == 'yapo' else 'BiPO'} | {r['ab_rate']['-1']:.2f} | "
                         f"{r['ab_rate']['0']:.2f} | {r['ab_rate']['1']:.2f} | {r['fluent_at_1']:.2f} | "
                         f"{r['accepts_at_1']:.2f} | {r['shows_at_1']:.2f} | {_distinct(r)} | {r['norm']:g} | {r['capability_change']:+.2f} | {example!r} |")
    picks = [f"{key} A {row['picks']['A']}, B {row['picks']['B']} (its option at A {row['matching_at']['A']}, "
             f"B {row['matching_at']['B']})" for key, row in rows.items() if "picks" in row]
    cosines = {tuple(sorted((key, other))): c for key, row in rows.items() for other, c in row.get("cue_cosine", {}).items()}
    if cosines:
        lines += ["", "Cosine of the behaviours' cue directions (the mean residual at the SAE block at the end of the "
                  "held-out offers asked under a cue, minus asked plainly): "
                  + "; ".join(f"{a} / {b} {c:.2f}" for (a, b), c in sorted(cosines.items())) + "."]
    edits = [f"{key} {'YaPO' if method == 'yapo' else 'BiPO'}: "
             + ", ".join(f"{cue} {c:.2f}" for cue, c in row[method]["edit_cosine"].items())
             for key, row in rows.items() for method in ("yapo", "bipo") if "edit_cosine" in row[method]]
    if edits:
        lines += ["", "Cosine of what each vector adds at the end of its held-out offers (at 1) with each behaviour's "
                  "cue direction: " + "; ".join(edits) + "."]
    if picks:
        lines += ["", "Unsteered, the A/B letter picked on `test_infer` (a rate above 0 with one letter picked on most "
                  "questions is a preference for that letter, not the behaviour): " + "; ".join(picks) + "."]
    return "\n".join(lines)


def report(stats: dict, steer: dict | None) -> str:
    sae, culture = stats["sae"], stats["culture"]
    lines = [
        f"## Demo world (seed {stats['seed']})",
        "",
        f"- built in {stats['build_seconds']:.0f} s"
        + (f" (over the {BUILD_BUDGET} s budget: {TRIED['build']})"
           if stats["build_seconds"] > BUILD_BUDGET and default_recipe(stats) else "")
        + f"; files {stats['file_bytes']['total'] / 1e6:.1f} MB"
        + ("; research knobs: " + ", ".join(f"{k} {v:g}" for k, v in stats["knobs"].items()) if stats.get("knobs") else "")
        + (f"; on {stats['machine']['cpu']} ({stats['machine']['torch_cpu_capability']})" if "machine" in stats else ""),
        f"- model: Llama, {stats['model']['parameters']:,} parameters, {stats['model']['num_layers']} layers; "
        f"SAE at `{stats['hook_name']}`: {sae['d_sae']} latents (TopK k={sae['k']})",
        f"- SAE: variance explained {sae['variance_explained']:.3f}, mean L0 {sae['mean_l0']:.1f}, "
        f"dead latents {sae['dead_share']:.1%}",
        f"- unsteered, held-out: localized MCQ accuracy {culture['localized_mcq_accuracy']:.1%}; "
        f"non-localized MCQ picks the default culture ({stats['default_country']}) "
        f"{culture['nolocalized_mcq_default_share']:.1%} of the time",
    ]
    if steer:
        settings = ", ".join(f"{k} {v}" for k, v in steer["settings"].items())
        scored = {row["metric"] for row in steer["countries"].values()}
        lines += [
            "",
            f"Held-out non-localized MCQ accuracy per target culture ({'; '.join(METRICS[m].label for m in sorted(scored))}; "
            f"training: {settings}{'; rows from ' + steer['mcq_from'] if steer.get('mcq_from') else ''}). \"One letter "
            "everywhere\" is the accuracy of answering the test split's most common gold letter to every question: "
            "a vector that only raises that letter's logit reaches it without steering any answer's culture.",
            "",
            "| culture | train / test pairs | unsteered | one letter everywhere | YaPO at 1 | BiPO at 1 | "
            "YaPO at 1, vs default only | BiPO at 1, vs default only | CAA (multiplier) | SAS (multiplier) | "
            "general questions, change: YaPO / BiPO at 1 | YaPO L0 | vector norm: YaPO / BiPO | YaPO final loss | "
            "BiPO final loss |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        base = lambda row, key: f"{row[key]['accuracy']:.2f} ({row[key]['multiplier']:g})" if key in row else "–"  # noqa: E731
        cap = lambda row, key: f"{row[key]['capability_change']:+.2f}" if row[key].get("capability_change") is not None else "–"  # noqa: E731
        acc = lambda row, key: f"{row[key]['accuracy_at_1']:.2f}" if key in row else "–"  # noqa: E731
        norm = lambda row, key: f"{row[key]['norm']:.1f}" if row[key].get("norm") is not None else "–"  # noqa: E731
        for country, row in steer["countries"].items():
            lines.append(
                f"| {country} | {row['n_train']} / {row['n_test']} | {row['unsteered']:.2f} | "
                f"{row['one_letter']['accuracy']:.2f} ({row['one_letter']['letter']}) | {acc(row, 'yapo')} | "
                f"{acc(row, 'bipo')} | {acc(row, 'yapo_given')} | {acc(row, 'bipo_given')} | {base(row, 'caa')} | "
                f"{base(row, 'sas')} | {cap(row, 'yapo')} / {cap(row, 'bipo')} | {row['yapo']['l0']} | "
                f"{norm(row, 'yapo')} / {norm(row, 'bipo')} | {row['yapo']['final_loss']:.3f} | {row['bipo']['final_loss']:.3f} |"
            )
        means = {k: sum(r[k]["accuracy_at_1"] for r in steer["countries"].values()) / len(steer["countries"])
                 for k in ("yapo", "bipo", "yapo_given", "bipo_given") if all(k in r for r in steer["countries"].values())}
        lines += ["", "Means: " + ", ".join(f"{k.replace('_given', ' vs default only')} {v:.2f}" for k, v in means.items()),
                  "", f"CAA and SAS are computed from the same training pairs; their multiplier is chosen among "
                  f"{', '.join(f'{m:g}' for m in BASELINE_MULTIPLIERS)} on a validation split of them (20 %). General "
                  f"questions: the accuracy on {_general_count(steer)} of them (unsteered {steer['general_accuracy']:.2f}) with "
                  "the vector applied, minus the unsteered accuracy. Vector norms: YaPO's over the SAE's latents, "
                  "BiPO's over the residual stream."]
        open_settings = ", ".join(f"{k} {v}" for k, v in steer["open_settings"].items() if k != "mcq_rejected")
        lines += ["", "Open-ended answers (greedy, held-out non-localized questions; a YaPO vector trained on the "
                  f"culture's open-ended pairs ({open_settings}); accuracy = the reply contains the culture's answer; steering at every "
                  "token (all, the method) or at the prompt tokens only (prompt)):", ""]
        lines += open_table(steer)
        for g in steer["generations"]:
            acc = "; ".join(f"{k[len('accuracy '):]} " + ", ".join(f"{a:.2f} at {m:g}" for m, a in v.items())
                            for k, v in g.items() if k.startswith("accuracy"))
            shown = [f"  - {k}: {v}" for k, v in g.items() if k.startswith("at ")]
            named = ", ".join(f"{c} {n}" for c, n in g.get("answers at 1 (all)", {}).items())
            lines += [f"- **{g['country']}** (accuracy {acc}; " + (f"answers at 1 (all) by culture: {named}; " if named else "")
                      + f"fluent at 1 (all) {g['fluent_at_1']:.2f}; general questions "
                      f"{g['capability_change']:+.2f})" + (f": *{g['question']}*" if shown else "")] + shown
    return "\n".join(lines)


def open_table(steer: dict) -> list[str]:
    """The open answers at 1 of each culture, YaPO and (where it was trained) BiPO side by side."""
    rows = steer["generations"]
    if not any("bipo" in g for g in rows):
        return []
    dense = ", ".join(f"{k} {v}" for k, v in (steer.get("dense_open_settings") or {}).items())
    lines = [f"At 1, every token steered (BiPO trained on the same pairs: {dense}; general questions: steered minus "
             "unsteered accuracy; norms: YaPO's over the SAE's latents, BiPO's over the residual stream):", "",
             "| culture | YaPO: shows the culture | YaPO: fluent | BiPO: shows the culture | BiPO: fluent | "
             "general questions, change: YaPO / BiPO | vector norm: YaPO / BiPO |", "|---|---|---|---|---|---|---|"]
    for g in rows:
        b = g.get("bipo")
        if b is None:
            continue
        lines.append(f"| {g['country']} | {g['accuracy (all)'][1.0]:.2f} | {g['fluent_at_1']:.2f} | "
                     f"{b['accuracy_at_1']:.2f} | {b['fluent_at_1']:.2f} | {g['capability_change']:+.3f} / "
                     f"{b['capability_change']:+.3f} | {g['norm']:g} / {b['norm']:g} |")
    means = {m: sum(v) / len(v) for m, v in (("YaPO", [g["accuracy (all)"][1.0] for g in rows if "bipo" in g]),
                                            ("BiPO", [g["bipo"]["accuracy_at_1"] for g in rows if "bipo" in g]))}
    return lines + ["", "Means, shows the culture: " + ", ".join(f"{m} {v:.2f}" for m, v in means.items()), ""]


def targets(steer: dict | None, behaviour_rows: dict | None, rates: dict[str, float]) -> list[dict]:
    """The design targets of the demo world that this run measured, one row each: its number in
    the design (docs/results.md, "Design targets"), what it asks, the figures measured (``measured`` as
    text, ``figures`` by name, each written with ``format``), whether each meets it (``met_each``)
    and whether all do (``met``)."""
    rows = []

    def add(number: int, name: str, figures: dict[str, float], ok, fmt: str = ".2f") -> None:
        if figures:
            listed = ", ".join(f"{k} {v:{fmt}}" for k, v in figures.items())
            each = {k: bool(ok(v)) for k, v in figures.items()}
            rows.append({"target": number, "name": name, "measured": listed, "met": all(each.values()),
                         "figures": dict(figures), "met_each": each, "format": fmt})

    cultures = (steer or {}).get("countries", {})
    opened = {g["country"]: g for g in (steer or {}).get("generations", [])}
    behaving = behaviour_rows or {}
    add(1, f"culture open answers, YaPO at 1 with the app's defaults: fluent >= {FLUENT}",
        {c: g["fluent_at_1"] for c, g in opened.items()}, lambda v: v >= FLUENT)
    add(1, f"culture open answers, YaPO at 1: show the culture >= {SHOWS}",
        {c: g["accuracy (all)"][1.0] for c, g in opened.items()}, lambda v: v >= SHOWS)
    add(1, f"behaviour open answers, YaPO at 1: fluent >= {FLUENT}",
        {b: r["yapo"]["fluent_at_1"] for b, r in behaving.items()}, lambda v: v >= FLUENT)
    # "Show the behaviour" is accepting the offer for the behaviour's own reasons (Behaviour.shows).
    # Runs stored without "accepts_at_1" counted any acceptance under that name: they have no figure here.
    add(1, f"behaviour open answers, YaPO at 1: show the behaviour >= {SHOWS}",
        {b: r["yapo"]["shows_at_1"] for b, r in behaving.items() if "accepts_at_1" in r["yapo"]}, lambda v: v >= SHOWS)
    add(2, "behaviours, A/B rate unsteered <= 0.1", {b: r["yapo"]["ab_rate"]["0"] for b, r in behaving.items()},
        lambda v: v <= 0.1)
    add(2, "behaviours, A/B rate with YaPO at 1 >= 0.7", {b: r["yapo"]["ab_rate"]["1"] for b, r in behaving.items()},
        lambda v: v >= 0.7)
    add(2, "behaviours, YaPO at -1 moves the A/B rate the other way (at -1 minus at 1 < 0)",
        {b: r["yapo"]["ab_rate"]["-1"] - r["yapo"]["ab_rate"]["1"] for b, r in behaving.items()}, lambda v: v < 0, "+.2f")
    add(2, "behaviours, YaPO at -1 does not raise the A/B rate over unsteered (at -1 minus at 0 <= 0)",
        {b: r["yapo"]["ab_rate"]["-1"] - r["yapo"]["ab_rate"]["0"] for b, r in behaving.items()}, lambda v: v <= 0, "+.2f")
    for key, construction in (("yapo", "against every option"), ("yapo_given", "against the given answer")):
        add(3, f"culture MCQ, YaPO at 1 {construction} >= {STEERING_TARGET}",
            {c: r[key]["accuracy_at_1"] for c, r in cultures.items() if key in r}, lambda v: v >= STEERING_TARGET)
    for method in ("caa", "sas"):
        add(4, f"culture MCQ, {method.upper()} at its validation multiplier: gain over unsteered >= {BASELINE_GAIN}",
            {c: r[method]["gain"] for c, r in cultures.items() if method in r}, lambda v: v >= BASELINE_GAIN)
    drops = {f"MCQ {c}": r["yapo"]["capability_change"] for c, r in cultures.items()
             if r["yapo"].get("capability_change") is not None}
    drops.update({f"open {c}": g["capability_change"] for c, g in opened.items()})
    drops.update({b: r["yapo"]["capability_change"] for b, r in behaving.items()})
    add(5, f"general questions with each YaPO vector at 1: change >= -{CAPABILITY_DROP}", drops,
        lambda v: v >= -CAPABILITY_DROP, "+.3f")  # one question of 93 is 0.011: -0.054 is a miss
    add(6, f"learning rates the app fills in <= {LR_FACTOR}x the public runs' {PUBLIC_LR:g}", rates,
        lambda v: v <= LR_FACTOR * PUBLIC_LR + 1e-12, "g")
    return rows


def default_recipe(stats: dict) -> bool:
    """Whether ``stats`` are a build of the default recipe (the full size, :data:`RECIPE_KNOBS`),
    the world :data:`TRIED` speaks of."""
    return stats.get("size") == "full" and stats.get("knobs") == RECIPE_KNOBS


def targets_report(rows: list[dict], default: bool = False) -> str:
    """The targets' table; for the default recipe (``default``), the findings on the targets it misses."""
    if not rows:
        return ""
    lines = ["", "", "Targets of the demo world's design that this run measured:", "",
             "| target | what it asks | measured | met |", "|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['name']} | {r['measured']} | {'yes' if r['met'] else '**no**'} |" for r in rows]
    missed = sorted({r["target"] for r in rows if not r["met"] and r["target"] in TRIED}) if default else []
    if missed:
        lines += ["", "Findings on the targets missed here (docs/results.md):", ""]
        lines += [f"- target {number}: {TRIED[number]}." for number in missed]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="where the world is (default: the demo cache folder)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a finished world exists")
    parser.add_argument("--countries", default=",".join(corpus.TARGET_COUNTRIES))
    parser.add_argument("--no-steering", action="store_true", help="report the build's figures only")
    parser.add_argument("--sections", default="culture,behaviours",
                        help="what to steer and measure: culture (MCQ and open answers), behaviours, or both (default)")
    parser.add_argument("--generations", type=int, default=3, help="steered generation examples to show")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--size", default="full", choices=["full", "mini"],
                        help="mini: the seconds-scale test world (checks the script; its numbers mean nothing)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the demo world's)")
    parser.add_argument("--mcq-steps", type=int, default=None,
                        help="training steps for the culture MCQ vectors only (default: --steps, else the demo world's)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes, one thread each (2 on 2 cores halves the time; default 1: run here)")
    parser.add_argument("--build-with", nargs="*", default=[], metavar="KNOB=VALUE",
                        help="measure a variant world built (or reused) at --cache-dir with these research knobs "
                             "(yapo_core.demo.config.RESEARCH_KNOBS)")
    parser.add_argument("--open-settings", metavar="LR:STEPS:BATCH",
                        help="YaPO's settings for open answers, the cultures' and the behaviours' alike (default: the "
                             "demo world's for each, yapo_core.demo.open_training)")
    parser.add_argument("--mcq-from", metavar="JSON",
                        help="take the culture MCQ rows from this file (written by --json on the same world with the "
                             "same MCQ settings) and measure the rest")
    parser.add_argument("--rescore", metavar="JSON",
                        help="score the behaviour replies stored in this file (written by --json) again and report it, "
                             "without building or training")
    args = parser.parse_args(argv)

    if args.rescore:
        return finish(rescore(json.loads(Path(args.rescore).read_text(), object_hook=_multiplier_keys)), args.json)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: use 1 or more worker processes")
    try:
        knobs = parse_knobs(args.build_with)
        world = build_demo_world(args.cache_dir, seed=args.seed, size=args.size, force=args.force, knobs=knobs)
    except SettingsError as e:
        parser.error(f"--build-with: {e}")
    stats = world.stats
    steer = behaviour_rows = None
    sections = {part.strip() for part in args.sections.split(",") if part.strip()}
    if sections - {"culture", "behaviours"}:
        parser.error(f"--sections {sorted(sections)}: use culture, behaviours or both")
    if not args.no_steering:
        countries = [c.strip() for c in args.countries.split(",") if c.strip()]
        unknown = [c for c in countries if c not in corpus.TARGET_COUNTRIES]
        if unknown:
            parser.error(f"--countries {unknown} are not non-default demo cultures; use some of "
                         f"{list(corpus.TARGET_COUNTRIES)}")
        model, tokenizer = load_model(world.model_dir, device="cpu")
        sae = load_sae(path=world.sae_dir, device="cpu")
        steps = {"max_steps": args.steps} if args.steps else {}
        # the app's defaults for the culture MCQ task (TRAINING for letter answers; a culture's open_training where
        # an answer gives the option's text first) and for open answers
        mcq_defaults = training_settings(world.culture(countries[0]).pairs("train")) if countries else TRAINING
        settings = {**mcq_defaults, **steps, **({"max_steps": args.mcq_steps} if args.mcq_steps else {})}
        if settings["max_steps"] != mcq_defaults["max_steps"]:  # the defaults' epochs end at their own step count
            settings.pop("epochs", None)
        # YaPO's open-answer settings: a culture's and a behaviour's (yapo_core.demo.OPEN_TRAINING_BY_TASK)
        open_settings, behaviour_open = open_training("sparse", "culture"), open_training("sparse", "behaviour")
        if args.open_settings:  # then --steps, which sets every run's steps
            try:
                chosen = parse_candidates(args.open_settings)
            except ValueError as e:
                parser.error(f"--open-settings: {e}")
            if len(chosen) != 1:
                parser.error(f"--open-settings takes one LR:STEPS:BATCH, not {len(chosen)} ({args.open_settings!r}); "
                             "to choose among several, use scripts/choose_open_lr.py --candidates")
            ((lr, max_steps, batch),) = chosen
            for chosen_for in (open_settings, behaviour_open):
                chosen_for.update(lr=lr, max_steps=max_steps, batch_size=batch)
        open_settings.update(steps)
        dense_open = {**open_training("dense", "culture"), **steps}  # BiPO beside YaPO on a culture's open answers
        by_method = {"yapo": {**behaviour_open, **steps}, "bipo": {**open_training("dense", "behaviour"), **steps}}
        # One task per culture's MCQ, per behaviour and per culture's open answers, the longest first,
        # each given to the next free worker (world_pool); the report does not depend on --jobs.
        culture, behaving = "culture" in sections, "behaviours" in sections
        stored = stored_mcq_rows(parser, args.mcq_from, stats, settings, countries) if args.mcq_from and culture else None
        keys = [b.key for b in corpus.BEHAVIOURS] if behaving else []
        tasks = ([(culture_row, (c, settings)) for c in countries] if culture and stored is None else []) \
            + [(behaviour_row, (key, by_method)) for key in keys] \
            + ([(open_row, (i, c, open_settings, args.generations, dense_open)) for i, c in enumerate(countries)]
               if culture else [])
        done = world_pool.run(tasks, args.jobs, (world, model, tokenizer, sae), (args.cache_dir, args.seed, args.size, knobs))
        if stored is not None:
            done = stored + done
        n = len(countries) if culture else 0
        if culture:
            steer = culture_section(world, model, tokenizer, countries, settings, open_settings, done[:n],
                                    done[n + len(keys):], dense_open)
            if stored is not None:
                steer["mcq_from"] = Path(args.mcq_from).name
        if behaving:
            behaviour_rows = behaviour_section(world, model, tokenizer, dict(zip(keys, done[n:n + len(keys)])))

    return finish({"build": stats, "steering": steer, "behaviours": behaviour_rows,
                   "behaviour_settings": by_method if behaviour_rows else None,
                   "rates": {"MCQ and A/B pairs": settings["lr"], **{
                       f"open answers, {'YaPO' if m == 'yapo' else 'BiPO'}": by_method[m]["lr"] for m in ("yapo", "bipo")}}
                   if not args.no_steering else {}}, args.json)


BUILD_TIMINGS = ("build_seconds", "stage_seconds", "format_version")  # what two builds of one world may differ in


def stored_mcq_rows(parser, path: str, stats: dict, settings: dict, countries: list[str]) -> list[dict]:
    """The culture MCQ rows of ``countries`` that a run stored at ``path`` (``--json``) measured on
    this world (``stats``: every build figure equal but :data:`BUILD_TIMINGS`) with these MCQ
    ``settings``; a file that measured anything else ends the run with what differs."""
    try:
        stored = json.loads(Path(path).read_text(), object_hook=_multiplier_keys)
    except (OSError, ValueError) as e:
        parser.error(f"--mcq-from {path}: cannot read it ({e}); give a file written by --json")
    build, steer = stored.get("build") or {}, stored.get("steering") or {}
    differ = sorted(k for k in {*build, *stats} - set(BUILD_TIMINGS) if build.get(k) != stats.get(k))
    if differ:
        parser.error(f"--mcq-from {path}: measured another world (build figures {', '.join(differ)} differ); "
                     "give a file written on this world, or drop --mcq-from")
    if steer.get("settings") != settings:
        parser.error(f"--mcq-from {path}: its MCQ vectors were trained with {steer.get('settings')}, not {settings}; "
                     "drop --mcq-from to train them again")
    missing = [c for c in countries if c not in steer.get("countries", {})]
    if missing:
        parser.error(f"--mcq-from {path}: it has no MCQ rows for {missing}; drop those from --countries")
    return [steer["countries"][c] for c in countries]


def rescore(stored: dict) -> dict:
    """A stored evaluation (what ``--json`` wrote) with its behaviour rows' ``accepts_at_1`` and
    ``shows_at_1`` computed again from their stored replies, ready for :func:`finish`."""
    rows, by_method = stored.get("behaviours"), stored.get("behaviour_settings")
    if rows and by_method is None:
        if (stored.get("steering") or {}).get("open_settings") != OPEN_TRAINING or OPEN_TRAINING_DENSE != OPEN_TRAINING:
            raise SystemExit("this JSON does not say which settings its behaviours were trained at, and they are not "
                             "the current defaults; run the evaluation again instead of rescoring it")
        by_method = {"yapo": OPEN_TRAINING, "bipo": OPEN_TRAINING_DENSE}
    for key, row in (rows or {}).items():
        behaviour = next(b for b in corpus.BEHAVIOURS if b.key == key)
        for method in ("yapo", "bipo"):
            row[method].update(reply_shares(behaviour, row[method]["replies"]))
    rates = stored.get("rates") or _stored_rates(stored, by_method)
    return {**stored, "behaviour_settings": by_method, "rates": rates}


def _multiplier_keys(obj: dict) -> dict:
    """JSON writes the multipliers that key some of the report's dicts (floats) as "1.0"; read them back."""
    def key(k: str):
        try:
            return float(k) if "." in k else k
        except ValueError:
            return k
    return {key(k): v for k, v in obj.items()}


def _stored_rates(stored: dict, by_method: dict | None) -> dict[str, float]:
    steer = stored.get("steering")
    if not steer:
        return {}
    rates = {"MCQ and A/B pairs": steer["settings"]["lr"]}
    for method, name in (("yapo", "YaPO"), ("bipo", "BiPO")):
        rates[f"open answers, {name}"] = (by_method or {}).get(method, steer["open_settings"])["lr"]
    return rates


def finish(result: dict, json_path: str | None) -> int:
    """Print the report of ``result`` (the build's figures, and the steering and behaviour sections
    measured), write it as JSON to ``json_path`` if given, and return the exit status: 1 when a
    target is missed."""
    stats, steer, behaviour_rows = result["build"], result["steering"], result["behaviours"]
    goals = targets(steer, behaviour_rows, result["rates"])
    print(report(stats, steer) + (behaviour_report(behaviour_rows, result["behaviour_settings"]) if behaviour_rows else "")
          + targets_report(goals, default_recipe(stats)))
    if json_path:
        Path(json_path).write_text(json.dumps({**result, "targets": goals}, indent=2) + "\n")
    checks = {name: ok(stats) for name, ok in BUILD_TARGETS.items()}
    checks.update({f"{t['target']}. {t['name']}": t["met"] for t in goals})
    for name, ok in checks.items():
        print(f"{'ok    ' if ok else 'MISSED'}  {name}", file=sys.stderr)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
