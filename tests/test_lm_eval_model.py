"""The lm-evaluation-harness model class: a steered model that lm-eval runs like its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import consistent_pairs, make_model, make_sae

lm_eval = pytest.importorskip("lm_eval")

from yapo_core import SteeringVector, save_vector  # noqa: E402
from yapo_core.architectures import decoder_layers  # noqa: E402
from yapo_core.errors import SettingsError  # noqa: E402
from yapo_core.methods import make_vector  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _task(path: Path) -> dict:
    sys.path.insert(0, str(ROOT / "scripts"))
    from lm_eval_check import task_config

    return task_config(path)


@pytest.fixture
def world(tmp_path, tokenizer):
    model_dir, sae_dir = tmp_path / "model", tmp_path / "sae"
    model = make_model("llama")
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    sae = make_sae()
    sae.save_model(sae_dir)
    from yapo_core.saes import load_sae

    sae = load_sae(path=sae_dir)
    vector = make_vector("yapo", model, tokenizer, consistent_pairs(8), sae=sae, max_steps=3, lr=0.5, warmup_steps=1)
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"prompt": p.prompt, "answer": p.chosen}) + "\n"
                                 for p in consistent_pairs(6, seed=3)))
    return model_dir, save_vector(vector, tmp_path / "v.safetensors", sae=sae), questions


def _replies(model_dir, vector, questions, multiplier):
    res = lm_eval.simple_evaluate(model="yapo", model_args={"pretrained": str(model_dir), "vector": str(vector),
                                                           "multiplier": str(multiplier), "device": "cpu"},
                                  tasks=[_task(questions)], log_samples=True, batch_size=4)
    return res, [s["resps"][0][0] for s in sorted(res["samples"]["yapo_general_questions"], key=lambda s: s["doc_id"])]


def test_the_steered_model_runs_in_lm_eval_and_its_hooks_come_off(world):
    import yapo_core.lm_eval_model as lem

    assert lm_eval.api.registry.get_model("yapo") is lem.SteeredLM
    model_dir, vector, questions = world
    base, plain = _replies(model_dir, vector, questions, 0)
    _, steered = _replies(model_dir, vector, questions, 2)
    assert plain != steered  # the vector changes the answers
    assert "exact_match,none" in base["results"]["yapo_general_questions"]
    lm = lem.SteeredLM(pretrained=str(model_dir), vector=str(vector), multiplier="1", device="cpu")
    assert lm.sae is not None and lm.vector.kind == "sparse"  # the SAE the vector names is loaded
    with lm.steered():
        assert any(block._forward_hooks for block in decoder_layers(lm.model))
    assert not any(block._forward_hooks for block in decoder_layers(lm.model))


def test_bad_model_args_are_refused(world, tmp_path):
    import yapo_core.lm_eval_model as lem

    model_dir, vector, _ = world
    with pytest.raises(SettingsError, match="multiplier 'lots' is not a number"):
        lem.SteeredLM(pretrained=str(model_dir), vector=str(vector), multiplier="lots", device="cpu")
    other = save_vector(SteeringVector("dense", torch.ones(32), "blocks.9.hook_resid_post"), tmp_path / "deep.safetensors")
    with pytest.raises(Exception, match="steers layer 9 but this model has only 4 blocks"):
        lem.SteeredLM(pretrained=str(model_dir), vector=str(other), device="cpu", allow_other_model="true")


def test_the_yapo_command_passes_through_to_lm_eval(world, tmp_path):
    model_dir, vector, questions = world
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "yapo_core", "lm-eval", "run", "--model", "yapo", "--model_args",
                          f"pretrained={model_dir},vector={vector},multiplier=1,device=cpu", "--tasks", "nonexistent_task"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "error: Tasks not found: nonexistent_task" in out.stderr
    assert "Traceback" not in out.stderr and "yapo lm-eval ls tasks" in out.stderr


def test_compare_measures_capability_with_lm_eval_tasks(world, tmp_path, tokenizer, capsys):
    from yapo_core.cli import main

    model_dir, vector, questions = world
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    config = {**_task(questions), "task": "tiny_questions"}
    (tasks / "tiny_questions.yaml").write_text(json.dumps(config))  # JSON is YAML
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                            for p in consistent_pairs(10)))
    out = tmp_path / "cmp"
    sae_dir = model_dir.parent / "sae"
    argv = ["compare", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data), "--methods", "caa",
            "--multipliers=0,4", "--device", "cpu", "--out", str(out), "--capability-tasks", "tiny_questions",
            "--capability-include", str(tasks)]
    assert main(argv) == 0, capsys.readouterr().err[-2000:]
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["results"][0]["capability_change"] is not None
    assert main([*argv[:-4], "--capability-tasks", "no_such_task"]) == 2
    assert "lm-eval task(s) ['no_such_task'] are unknown" in capsys.readouterr().err


def test_a_task_whose_data_cannot_be_read_is_an_error_not_a_traceback(monkeypatch, capsys):
    from lm_eval._cli import HarnessCLI

    from yapo_core.lm_eval_model import main

    def offline(self, args):
        raise ConnectionError("Couldn't reach 'cais/mmlu' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(HarnessCLI, "execute", offline)
    assert main(["run", "--model", "yapo", "--tasks", "mmlu", "--model_args", "pretrained=x,vector=y"]) == 2
    err = capsys.readouterr().err
    assert "error: lm-eval could not reach what it needs: Couldn't reach 'cais/mmlu'" in err and "--include_path" in err


def test_a_hub_model_that_cannot_be_loaded_is_named_with_the_fix(capsys):
    """Offline (HF_HUB_OFFLINE=1 in tests), a model not in the cache is an error line that names
    the model and what to do, not transformers' own OSError."""
    from yapo_core.lm_eval_model import main

    assert main(["run", "--model", "yapo", "--tasks", "mmlu", "--model_args", "pretrained=someone/not-cached-model"]) == 2
    err = capsys.readouterr().err
    assert "error: model 'someone/not-cached-model' is not in the local Hugging Face cache" in err
    assert "HF_HUB_OFFLINE is set" in err


def test_lm_eval_caps_replies_where_it_asks_even_when_the_model_sets_max_new_tokens(world, tmp_path):
    """lm-eval caps a reply with ``max_length``; a model whose generation_config sets
    ``max_new_tokens`` (the demo world's does: 32) would override it and write past the task's cap."""
    from transformers import GenerationConfig

    import yapo_core.lm_eval_model  # noqa: F401 (registers the "yapo" model)

    model_dir, vector, questions = world
    GenerationConfig(max_new_tokens=40, do_sample=False).save_pretrained(model_dir)
    config = {**_task(questions), "generation_kwargs": {"until": ["never"], "max_gen_toks": 3, "do_sample": False}}
    res = lm_eval.simple_evaluate(model="yapo", model_args={"pretrained": str(model_dir), "vector": str(vector),
                                                           "multiplier": "1", "device": "cpu"},
                                  tasks=[config], log_samples=True, batch_size=4)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = [len(tokenizer(s["resps"][0][0], add_special_tokens=False).input_ids)
               for s in res["samples"]["yapo_general_questions"]]
    assert lengths and max(lengths) <= 3 + 1  # 3 tokens (+1: decoded text may tokenise one longer)
