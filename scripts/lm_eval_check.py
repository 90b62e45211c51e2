"""lm-evaluation-harness against the project's own capability metric, on the demo world.

Trains a BiPO vector on a demo culture task, writes the world's general questions as a local
lm-eval task (a JSON Lines file, a ``generate_until`` task, greedy, the chat template), and runs
it through lm-eval with the ``yapo`` model (:mod:`yapo_core.lm_eval_model`) at multipliers 0 and
1. Beside each, the project's capability metric (:func:`yapo_core.replies.generation_accuracy`,
the reply contains the answer) on the same questions, and the share of questions whose lm-eval
reply is the project's own greedy reply.

    python scripts/lm_eval_check.py             # the full demo world (built once, 3 to 7 minutes on 2 quiet cores)
    python scripts/lm_eval_check.py --size mini # seconds; checks the script, the numbers mean nothing

Writes the figures as Markdown and JSON (``--out``, default ``assets/results/lm-eval-check.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from report import write_report  # scripts/report.py

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "assets" / "results" / "lm-eval-check.md"
MAX_TOKENS = 8


def task_config(path: Path) -> dict:
    """A ``generate_until`` lm-eval task over a JSON Lines file of ``prompt``/``answer`` rows."""
    return {"task": "yapo_general_questions", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(path)}},
            "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{prompt}}",
            "doc_to_target": "{{answer}}",
            "generation_kwargs": {"until": ["<|eot|>"], "max_gen_toks": MAX_TOKENS, "do_sample": False},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}]}


def run(size: str, country: str, steps: int) -> dict:
    import lm_eval

    import yapo_core.lm_eval_model  # noqa: F401 (registers the "yapo" model)
    from yapo_core.demo import TRAINING, build_demo_world
    from yapo_core.export import save_vector
    from yapo_core.generation import generate
    from yapo_core.methods import make_vector
    from yapo_core.models import load_model
    from yapo_core.replies import contains_answer, generation_accuracy
    from yapo_core.saes import load_sae

    world = build_demo_world(size=size)
    model, tokenizer = load_model(world.model_dir, device="cpu")
    sae = load_sae(path=world.sae_dir, device="cpu")
    vector = make_vector("bipo", model, tokenizer, list(world.culture(country).pairs("train")), sae=sae,
                         **{**TRAINING, "max_steps": steps})
    prompts, answers = world.general_questions()
    folder = Path(tempfile.mkdtemp(prefix="yapo-lm-eval-"))
    vector_path = save_vector(vector, folder / "vector.safetensors", sae=sae)
    questions = folder / "general.jsonl"
    questions.write_text("".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in zip(prompts, answers)))
    rows = {}
    for m in (0.0, 1.0):
        res = lm_eval.simple_evaluate(model="yapo", model_args={"pretrained": str(world.model_dir), "vector": str(vector_path),
                                                               "multiplier": m, "device": "cpu"},
                                      tasks=[task_config(questions)], apply_chat_template=True, log_samples=True,
                                      batch_size=16)
        samples = sorted(res["samples"]["yapo_general_questions"], key=lambda s: s["doc_id"])
        replies = [s["resps"][0][0] for s in samples]
        ours = [o[m if m else 0.0] for o in generate(model, tokenizer, prompts, vector if m else None, [m], sae=sae,
                                                     max_new_tokens=MAX_TOKENS)]
        rows[f"{m:g}"] = {
            "lm_eval_contains_answer": sum(contains_answer(r, a) for r, a in zip(replies, answers)) / len(answers),
            "project_generation_accuracy": generation_accuracy(model, tokenizer, prompts, answers, vector if m else None,
                                                               m, sae=sae, max_new_tokens=MAX_TOKENS),
            "same_reply_share": sum(r.strip() == o.strip() for r, o in zip(replies, ours)) / len(answers),
            "n": len(answers),
        }
    return {"size": size, "vector": f"BiPO, demo culture-{country}, {steps} steps", "multipliers": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="full", choices=["full", "mini"])
    p.add_argument("--country", default="egypt")
    p.add_argument("--steps", type=int, default=100, help="training steps of the vector (default 100)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Markdown report, with a .json beside it ('' for none)")
    args = p.parse_args()
    result = run(args.size, args.country, args.steps)
    lines = [f"General questions of the {args.size} demo world, {result['vector']}; lm-eval's `yapo` model against "
             "the project's own capability metric (greedy, chat template):", "",
             "| multiplier | lm-eval: reply contains the answer | project: generation accuracy | same reply | questions |",
             "|---|---|---|---|---|"]
    for m, r in result["multipliers"].items():
        lines.append(f"| {m} | {r['lm_eval_contains_answer']:.3f} | {r['project_generation_accuracy']:.3f} | "
                     f"{r['same_reply_share']:.3f} | {r['n']} |")
    print("\n".join(lines))
    if args.out:
        write_report(args.out, "lm-evaluation-harness against the project's metric",
                     "python scripts/lm_eval_check.py " + " ".join(sys.argv[1:]), lines, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
