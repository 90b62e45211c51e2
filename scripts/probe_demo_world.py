"""Probe how a demo world responds to steering, in a few minutes: the mechanisms behind the figures
of ``scripts/evaluate_demo_world.py``, for whoever redesigns the world.

    python scripts/probe_demo_world.py --lr 0.01 --out assets/results/demo-probe.md
    python scripts/probe_demo_world.py --cache-dir DIR --build-with followups=0.08   # a variant world
    python scripts/probe_demo_world.py --size mini --steps 2 --n 2   # checks the script in seconds

For each behaviour and for one culture it reports:

* **steerability**: the mean difference of the SAE block's residual at the last prompt position
  between cued prompts (the behaviour's system prompt; the country named) and plain ones, added
  at every token of held-out plain prompts at a grid of multipliers: the smallest that flips the
  answers, its norm relative to the residual stream, and whether the answers stay fluent there.
  A world in which this direction flips answers fluently at a fraction of the residual's norm is
  steerable; whether the training objective finds such a direction is the next question.
* **context**: for behaviours, the A/B matching rate of plain prompts, after an earlier answer
  that shows the behaviour, and under the cue: whether the model acts on a disposition that it
  reads from answer text, the representation a vector trained on answers can reach.
* **reach**: of the SAE latents that the cue turns on most, the share that fire anywhere in the
  task's training pairs. With ``v = 0`` at the start and relu'(0) = 0, YaPO's gradient reaches only
  latents that fire there (docs/method.md §3).
* **the trained vector**: a YaPO vector trained with the demo's settings (``--lr`` overrides the
  learning rate) on the open-ended training pairs: mean per-token log-probability of held-out
  chosen and rejected answers at multipliers -1, 0 and 1 (both falling is the objective met by
  damage, not by preference), its L0 and the share of its mass in the top 10 latents; and held-out
  replies at multiplier 1 steered by the whole vector, by its positive entries only and by its
  negative entries only (fluent, and showing the target): which part carries the target and
  which the damage.

For the culture it also reports **forms**: whether one direction sets the culture of both answer
forms, as one does in an LLM, and where the **baselines** point: CAA's and SAS's vectors (from the
task's MCQ training pairs) against the MCQ cue direction. Each form's cue direction (the task's localized minus its
non-localized training prompts, at the last prompt position), their cosine, and the held-out
non-localized MCQ accuracy (the task's own metric) steered at every token along each, against the
accuracy of answering the most common gold letter everywhere. A world whose MCQ answers follow
neither direction at any multiplier does not route its MCQ choice through a culture state that a
steering vector at this block can set.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path

import torch

from yapo_core.baselines import compute_caa, compute_sas
from yapo_core.demo import OPEN_TRAINING, build_demo_world, corpus, load_demo_world
from yapo_core.demo.config import parse_knobs
from yapo_core.encoding import collate, encode_pairs
from yapo_core.errors import SettingsError
from yapo_core.evaluation import default_metric, evaluate_metric, one_letter_baseline
from yapo_core.generation import generate
from yapo_core.hooks import HookPoint, record_residual, steering_hook
from yapo_core.logprobs import pad_token_id, sequence_logprobs
from yapo_core.methods import make_vector
from yapo_core.models import load_model
from yapo_core.replies import is_fluent
from yapo_core.saes import load_sae
from yapo_core.steering import SteeringVector
from yapo_core.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_report  # noqa: E402  (scripts/report.py)

GRID = (0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0)
FORMS_GRID = (0.5, 1.0, 2.0, 3.0)
TOKENS = 24


class Probe:
    def __init__(self, world, n: int, steps: int, batch: int = OPEN_TRAINING["batch_size"]):
        self.world, self.n, self.steps, self.batch = world, n, steps, batch
        self.model, self.tok = load_model(world.model_dir, device="cpu")
        self.sae = load_sae(path=world.sae_dir, device="cpu")
        self.point = HookPoint.block_output(world.layer)

    def chat(self, user: str, system: str | None = None, history=()) -> str:
        messages = [{"role": "system", "content": system}] if system else []
        for question, answer in history:
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": user})
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def ids(self, text: str) -> torch.Tensor:
        return self.tok(text, return_tensors="pt", add_special_tokens=False).input_ids

    @torch.no_grad()
    def residuals(self, texts) -> list[torch.Tensor]:
        out = []
        for text in texts:
            with record_residual(self.model, self.point) as seen:
                self.model(self.ids(text))
            out.append(seen[-1][0].float())
        return out

    @torch.no_grad()
    def generate(self, texts, delta: torch.Tensor | None = None) -> list[str]:
        hook = steering_hook(self.model, self.point, lambda h: h + delta.to(h.dtype)) if delta is not None \
            else contextlib.nullcontext()
        replies = []
        with hook:
            for text in texts:
                ids = self.ids(text)
                out = self.model.generate(ids, max_new_tokens=TOKENS, do_sample=False)
                replies.append(self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
        return replies

    def steerability(self, cued, plain, held_out, shows) -> dict:
        """The cued-minus-plain direction at the last prompt position, added at every token."""
        last = lambda rs: torch.stack([r[-1] for r in rs]).mean(0)  # noqa: E731
        plain_rs = self.residuals(plain)
        direction = last(self.residuals(cued)) - last(plain_rs)
        resid_norm = torch.cat([r[1:] for r in plain_rs]).norm(dim=-1).mean().item()
        row = {"direction_norm": round(direction.norm().item(), 2), "residual_norm": round(resid_norm, 2),
               "shows_unsteered": sum(map(shows, self.generate(held_out))) / len(held_out)}
        for m in GRID:
            replies = self.generate(held_out, m * direction)
            share = sum(map(shows, replies)) / len(replies)
            if share >= 0.7:
                row.update(flips_at=m, relative_norm=round(m * direction.norm().item() / resid_norm, 3), shows=share,
                           fluent=sum(is_fluent(self.tok, r, TOKENS) for r in replies) / len(replies),
                           example=replies[0])
                break
        else:
            row["flips_at"] = None
        return row

    @torch.no_grad()
    def reach(self, cued, plain, pairs, top: int = 10) -> float:
        """Share of the latents the cue turns on most that fire somewhere in the training pairs."""
        code = lambda rs: self.sae.encode(torch.stack([r[-1] for r in rs])).mean(0)  # noqa: E731
        cue_latents = (code(self.residuals(cued)) - code(self.residuals(plain))).topk(top).indices
        fired = torch.zeros(self.sae.cfg.d_sae, dtype=torch.bool)
        for p in pairs:
            for answer in (p.chosen, p.rejected):
                (h,) = self.residuals([self.chat(p.prompt) + answer])
                fired |= (self.sae.encode(h) > 0).any(0)
        return fired[cue_latents].float().mean().item()

    @torch.no_grad()
    def answer_logprobs(self, pairs, vector, m: float) -> tuple[float, float]:
        """Mean per-token log-probability of the chosen and of the rejected answers, scored as
        training and evaluation score them (:func:`~yapo_core.logprobs.sequence_logprobs`)."""
        batch = collate(encode_pairs(self.tok, pairs)[0], pad_token_id(self.tok, self.model))
        with vector.apply(self.model, sae=self.sae, multiplier=m) if m else contextlib.nullcontext():
            per_token = sequence_logprobs(self.model, batch) / batch.answer_mask[:, 1:].sum(-1)
        n = batch.n_pairs
        return per_token[:n].mean().item(), per_token[n:].mean().item()

    def cue(self, prompts_cued, prompts_plain) -> torch.Tensor:
        """The mean residual at the last prompt position of the cued prompts minus the plain ones'."""
        last = lambda prompts: torch.stack([r[-1] for r in self.residuals(map(self.chat, prompts))]).mean(0)  # noqa: E731
        return last(prompts_cued) - last(prompts_plain)

    def forms(self, task) -> dict:
        """Whether one direction sets the culture of both answer forms: each form's cue direction
        (the task's localized minus its non-localized training prompts), their cosine, and the
        held-out non-localized MCQ accuracy steered at every token along each."""
        k = 4 * self.n
        prompts = {(form, loc): [p.prompt for p in task.pairs("train", form=form, localization=loc, limit=k)]
                   for form in ("mcq", "open_ended") for loc in ("localized", "nolocalized")}
        cues = {form: self.cue(prompts[form, "localized"], prompts[form, "nolocalized"]) for form in ("mcq", "open_ended")}
        test = list(task.pairs("test", form="mcq", limit=k))
        metric = default_metric(test)
        row = {"metric": metric, "cosine": round(torch.cosine_similarity(cues["mcq"], cues["open_ended"], 0).item(), 3),
               "one letter": one_letter_baseline(metric, test)[1],
               "unsteered": evaluate_metric(metric, self.model, self.tok, test, None)[0.0]}
        for form, direction in cues.items():
            vector = SteeringVector("dense", direction, self.point.hook_name)
            accuracy = evaluate_metric(metric, self.model, self.tok, test, vector, FORMS_GRID)
            row[f"along the {form} cue"] = {f"{m:g}": accuracy[m] for m in FORMS_GRID}
            row[f"{form} cue norm"] = round(direction.norm().item(), 2)
        row["baselines"] = self.baselines(task, cues["mcq"])
        return row

    def baselines(self, task, cue: torch.Tensor) -> dict:
        """CAA's and SAS's vectors from the task's MCQ training pairs, against the MCQ cue direction:
        CAA's norm and cosine with the cue, SAS's kept latents and its decoded vector's norm and cosine.
        A baseline that points elsewhere than the direction the model acts on cannot steer at any multiplier."""
        pairs = list(task.pairs("train", form="mcq"))
        cosine = lambda v: round(torch.cosine_similarity(v, cue, 0).item(), 3) if v.norm() > 0 else 0.0  # noqa: E731
        caa = compute_caa(self.model, self.tok, pairs, self.world.layer).values.float()
        sas = compute_sas(self.model, self.tok, pairs, self.sae).values.float()
        decoded = sas @ self.sae.W_dec.detach().float()
        return {"caa norm": round(caa.norm().item(), 2), "caa cosine": cosine(caa),
                "sas latents": int((sas != 0).sum()), "sas norm": round(decoded.norm().item(), 2), "sas cosine": cosine(decoded)}

    def trained_vector(self, train, test, lr: float, shows) -> dict:
        vector = make_vector("yapo", self.model, self.tok, train, sae=self.sae,
                             config=TrainConfig(epochs=10_000, **{**OPEN_TRAINING, "lr": lr, "max_steps": self.steps,
                                                                 "batch_size": self.batch}))
        row = {"lr": lr, "norm": round(vector.norm(), 2), "l0": vector.l0(), "top10_mass": round(vector.top_mass(10), 3)}
        for m in (-1.0, 0.0, 1.0):
            chosen, rejected = self.answer_logprobs(test, vector, m)
            row[f"chosen at {m:g}"], row[f"rejected at {m:g}"] = round(chosen, 3), round(rejected, 3)
        row["parts at 1"] = self.parts(vector, [p.prompt for p in test], shows)
        return row

    def parts(self, vector, prompts, shows) -> dict:
        """Held-out replies at multiplier 1, steered at every token by the whole vector, by its
        positive entries only (latents it adds: ``relu(v)·W_dec`` at every token) and by its negative
        entries only (they only lower latents a token already has): the share fluent and the share
        showing the target. Which part carries the target, and which the damage."""
        out = {}
        for name, values in (("whole", vector.values), ("positive", vector.values.clamp(min=0)),
                             ("negative", vector.values.clamp(max=0))):
            part = dataclasses.replace(vector, values=values)
            replies = [r[1.0] for r in generate(self.model, self.tok, prompts, part, [1.0], sae=self.sae,
                                                max_new_tokens=TOKENS)]
            out[name] = {"fluent": sum(is_fluent(self.tok, r, TOKENS) for r in replies) / len(replies),
                         "shows": sum(map(shows, replies)) / len(replies), "example": replies[0]}
        return out


def behaviour_rows(probe: Probe, lr: float) -> dict:
    out = {}
    n = probe.n
    for behaviour in corpus.BEHAVIOURS:
        task = probe.world.task(behaviour.key)
        train, test, infer = (list(task.pairs(s)) for s in ("train", "test", "test_infer"))
        questions = [p.prompt for p in test][: 2 * n]
        cued = [probe.chat(q, behaviour.cues[i % len(behaviour.cues)]) for i, q in enumerate(questions[:n])]
        plain = [probe.chat(q) for q in questions[:n]]
        shows = behaviour.accepts  # the probe asks whether the disposition (accept or decline) moves
        row = {"steerability": probe.steerability(cued, plain, [probe.chat(q) for q in questions[n:]], shows)}
        earlier = (corpus.behaviour_question(behaviour, corpus.behaviour_keys(behaviour)[0]), behaviour.matching[0])
        letters = [p.chosen.strip().lstrip("(")[:1] for p in infer[:n]]
        for name, kwargs in (("plain", {}), ("after a matching answer", {"history": (earlier,)}),
                             ("under the cue", {"system": behaviour.cues[0]})):
            replies = probe.generate([probe.chat(p.prompt, **kwargs) for p in infer[:n]])
            row[f"A/B matching {name}"] = sum(r.strip()[:1] == let for r, let in zip(replies, letters)) / len(letters)
        row["reach"] = probe.reach(cued, plain, train[:n])
        row["trained"] = probe.trained_vector(train, test[:n], lr, shows)
        out[behaviour.key] = row
        print(f"  {behaviour.key}: {json.dumps(row)}", file=sys.stderr, flush=True)
    return out


def culture_row(probe: Probe, country: str, lr: float) -> dict:
    n = probe.n
    task = probe.world.culture(country)
    train, test = list(task.pairs("train", form="open_ended")), list(task.pairs("test", form="open_ended"))
    keys = corpus.all_question_keys()
    localized = [probe.chat(corpus.render_question(k, country)) for k in keys if k.localized][:: 7][:n]
    plain = [probe.chat(corpus.render_question(k)) for k in keys if not k.localized][:: 3][:n]
    answers = {corpus.answer_phrase(t.key, country).lower() for t in corpus.TOPICS}
    shows = lambda r: any(r.lower().startswith(a) for a in answers)  # noqa: E731
    row = {"steerability": probe.steerability(localized, plain, [probe.chat(p.prompt) for p in test[:n]], shows),
           "reach": probe.reach(localized, plain, train[:n]),
           "forms": probe.forms(task),
           "trained": probe.trained_vector(train, test[:n], lr, shows)}
    print(f"  {country}: {json.dumps(row)}", file=sys.stderr, flush=True)
    return row


def table(result: dict) -> list[str]:
    """The figures as one Markdown table, a row per task."""
    lines = ["| task | answers showing the target, unsteered | cue direction: first multiplier where >= 70 % show it "
             "(its norm / the residual's) | fluent there | "
             "A/B plain / after a matching answer / under the cue | cue latents reached | YaPO vector: norm, L0, "
             "top-10 mass | log-prob per token, chosen / rejected, at -1 | at 0 | at 1 | "
             "YaPO at 1, fluent / shows it: whole vector | its positive part | its negative part |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = {**result["behaviours"], **{f"culture-{c}": r for c, r in result["culture"].items()}}
    for name, r in rows.items():
        s, t = r["steerability"], r["trained"]
        flips = f"m {s['flips_at']:g} ({s['relative_norm']:.2f})" if s["flips_at"] is not None else "no (up to 2)"
        fluent = f"{s['fluent']:.2f}" if s["flips_at"] is not None else "–"
        ab = " / ".join(f"{r[k]:.2f}" for k in r if k.startswith("A/B")) or "–"
        lp = [f"{t[f'chosen at {m}']:.2f} / {t[f'rejected at {m}']:.2f}" for m in ("-1", "0", "1")]
        parts = [f"{p['fluent']:.2f} / {p['shows']:.2f}" for p in t["parts at 1"].values()]
        lines.append(f"| {name} | {s['shows_unsteered']:.2f} | {flips} | {fluent} | {ab} | {r['reach']:.2f} | {t['norm']:g}, {t['l0']}, "
                     f"{t['top10_mass']:.3f} | {' | '.join(lp)} | {' | '.join(parts)} |")
    return lines


def forms_table(result: dict) -> list[str]:
    """One row per culture: does one direction set the culture of both answer forms?"""
    lines = ["| culture | MCQ metric | cosine of the MCQ and open cue directions | MCQ unsteered | one letter everywhere | "
             f"MCQ along the MCQ cue at {' / '.join(f'{m:g}' for m in FORMS_GRID)} | along the open-answer cue | "
             "MCQ cue norm | CAA: norm / cosine with the MCQ cue | SAS: latents / norm / cosine |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for country, r in result["culture"].items():
        f = r["forms"]
        along = [" / ".join(f"{a:.2f}" for a in f[f"along the {form} cue"].values()) for form in ("mcq", "open_ended")]
        b = f["baselines"]
        lines.append(f"| {country} | {f['metric']} | {f['cosine']:.2f} | {f['unsteered']:.2f} | {f['one letter']:.2f} | "
                     f"{along[0]} | {along[1]} | {f['mcq cue norm']:g} | {b['caa norm']:g} / {b['caa cosine']:.2f} | "
                     f"{b['sas latents']} / {b['sas norm']:g} / {b['sas cosine']:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help="a built world (default: the demo cache folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="full", choices=["full", "mini"])
    parser.add_argument("--country", default="egypt", help="the culture (or several, comma-separated)")
    parser.add_argument("--lr", type=float, default=OPEN_TRAINING["lr"],
                        help="learning rate of the trained vectors (on open answers: default the demo's for them)")
    parser.add_argument("--steps", type=int, default=OPEN_TRAINING["max_steps"], help="their training steps")
    parser.add_argument("--batch", type=int, default=OPEN_TRAINING["batch_size"], help="their batch of pairs")
    parser.add_argument("--n", type=int, default=16, help="prompts per measurement")
    parser.add_argument("--build-with", nargs="*", default=[], metavar="KNOB=VALUE",
                        help="build (or reuse) at --cache-dir a world whose build size has these research knobs "
                             "set (yapo_core.demo.config.RESEARCH_KNOBS)")
    parser.add_argument("--forms-only", action="store_true",
                        help="measure only whether one direction sets the culture of both answer forms (a minute)")
    parser.add_argument("--out", metavar="PATH", help="also write a Markdown report here (and its .json twin)")
    args = parser.parse_args(argv)
    try:
        knobs = parse_knobs(args.build_with)
        if knobs:
            build_demo_world(args.cache_dir, seed=args.seed, size=args.size, knobs=knobs)
    except SettingsError as e:
        parser.error(f"--build-with: {e}")
    world = load_demo_world(args.cache_dir, seed=args.seed, size=args.size, knobs=knobs)
    if world is None:
        parser.error("no finished demo world there: build one first (yapo demo build, or evaluate_demo_world.py)")
    probe = Probe(world, args.n, args.steps, args.batch)
    countries = args.country.split(",")
    result = {"world": str(world.root.name), "lr": args.lr, "steps": args.steps, "batch": args.batch, "n": args.n}
    if args.forms_only:
        stats = world.stats
        result["build"] = {"knobs": stats.get("knobs", {}), "seconds": stats.get("build_seconds"),
                           "localized_mcq_accuracy": stats["culture"]["localized_mcq_accuracy"],
                           "nolocalized_mcq_default_share": stats["culture"]["nolocalized_mcq_default_share"],
                           "general_accuracy": stats["general"]["accuracy"]}
        result["culture"] = {c: {"forms": probe.forms(world.culture(c))} for c in countries}
        b = result["build"]
        lines = [f"The world unsteered, held-out: localized MCQ accuracy {b['localized_mcq_accuracy']:.2f}, non-localized "
                 f"MCQ answers the default culture's {b['nolocalized_mcq_default_share']:.2f}, general questions "
                 f"{b['general_accuracy']:.2f}.", "", *forms_table(result)]
    else:
        result["behaviours"] = behaviour_rows(probe, args.lr)
        result["culture"] = {c: culture_row(probe, c, args.lr) for c in countries}
        lines = table(result) + [""] + forms_table(result)
    print("\n".join(lines))
    if args.out:
        command = "python scripts/probe_demo_world.py " + " ".join(argv if argv is not None else sys.argv[1:])
        note = (f" on the world `{world.root.name}` ({4 * args.n} training prompts per form and localization for each "
                "cue direction; MCQ accuracy on up to as many held-out non-localized questions)") if args.forms_only else (
                f" on the world `{world.root.name}` ({args.n} held-out prompts per figure; "
                f"vectors trained with the demo's settings at lr {args.lr:g}, {args.steps} steps)")
        write_report(args.out, "How the demo world responds to steering", command, lines, result, note=note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
