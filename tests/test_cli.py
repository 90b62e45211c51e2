"""The command line end to end on a tiny local model and SAE."""

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import consistent_pairs, make_model

from yapo_core.cli import main

ROOT = Path(__file__).resolve().parents[1]




@pytest.fixture
def data_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    pd.DataFrame([vars(p) for p in consistent_pairs(8)])[["prompt", "chosen", "rejected"]].to_csv(path, index=False)
    return path


def test_train_generate_export(tmp_path, model_dir, sae_dir, data_csv, capsys):
    out = tmp_path / "v.safetensors"
    history = tmp_path / "runs" / "history.jsonl"
    assert main(["train", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data_csv),
                 "--out", str(out), "--max-steps", "4", "--device", "cpu", "--history", str(history)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 4 and out.exists()
    steps = [json.loads(line) for line in history.read_text().splitlines()]  # what the Train page plots
    assert [m["step"] for m in steps] == [1, 2, 3, 4] and round(steps[-1]["loss"], 4) == summary["final_loss"]
    assert {"reward_accuracy", "margin", "vector_norm", "l0"} <= set(steps[0])
    assert "plotly" in history.with_suffix(".html").read_text()
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:  # not a demo world's model: the public runs' defaults
        assert json.loads(f.metadata()["training"])["lr"] == 5e-4
    # the SAE is found again from the vector's own metadata
    assert main(["generate", "--model", str(model_dir), "--vector", str(out), "--prompt", "Do you like tea?",
                 "--multipliers", "0,1", "--max-new-tokens", "5", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "--- unsteered:" in printed and "--- steered x1:" in printed and "reads as" not in printed
    # with the pair's answers, each answer is read against them, as the Compare page reads a test pair's
    ask = ["generate", "--model", str(model_dir), "--vector", str(out), "--prompt", "Do you like tea?",
           "--max-new-tokens", "5", "--device", "cpu", "--chosen", "Yes, I like tea.", "--rejected", "No, thank you."]
    assert main(ask) == 0
    assert capsys.readouterr().out.count("(reads as: contains") == 2
    assert main(ask[:-2]) == 2 and "--chosen and --rejected come one each per --prompt" in capsys.readouterr().err
    assert main(["export", "--vector", str(out), "--out", str(tmp_path / "v.gguf"), "--model", str(model_dir)]) == 0
    assert (tmp_path / "v.gguf").stat().st_size > 0


def test_train_refuses_outputs_that_would_overwrite_its_data_or_each_other(tmp_path, model_dir, data_csv, capsys):
    """Checked before the model loads: a run never writes its vector over its data, its history over
    its vector, or a safetensors file under a data file's name."""
    before = data_csv.read_bytes()
    base = ["train", "--model", str(model_dir), "--kind", "dense", "--layer", "1", "--data", str(data_csv),
            "--max-steps", "2", "--device", "cpu"]
    v, ck = str(tmp_path / "v.safetensors"), str(tmp_path / "ck.safetensors")
    for extra, says in [
        (["--out", str(data_csv)], "--out .* would be a safetensors file under another kind's name"),
        (["--out", str(data_csv.with_suffix(".safetensors")), "--history", str(data_csv.with_suffix(".jsonl"))], None),
        (["--out", v, "--checkpoint", v], "--out and --checkpoint name one file"),
        (["--out", v, "--history", str(data_csv)], "--history would overwrite --data"),
        (["--out", v, "--checkpoint", ck], None),
        (["--out", v, "--resume", v, "--history", str(tmp_path / "h.jsonl")], None),  # go on from a vector, write it anew
        (["--out", v, "--checkpoint", ck, "--resume", ck], None),
        (["--out", str(tmp_path / "w.safetensors"), "--resume", v, "--history", v], "--out .*|--history would overwrite --resume"),
    ]:
        if says is None:
            assert main([*base, *extra]) == 0, extra
            capsys.readouterr()
            continue
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert re.search(says, err) and "Traceback" not in err, err
        assert data_csv.read_bytes() == before


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, where no file can be made")
def test_an_output_nobody_can_write_is_refused_before_any_work(tmp_path, model_dir, data_csv, capsys):
    """Permissions alone pass /proc for root; a file made there fails (also a read-only mount)."""
    base = ["train", "--model", str(model_dir), "--kind", "dense", "--layer", "1", "--data", str(data_csv),
            "--max-steps", "2", "--device", "cpu"]
    for extra in (["--out", "/proc/v.safetensors"], ["--out", str(tmp_path / "v.safetensors"),
                                                       "--checkpoint", "/proc/ck.safetensors"]):
        assert main([*base, *extra]) == 2
        assert "cannot be written ('/proc'" in capsys.readouterr().err
    assert main(["compare", "--size", "mini", "--out", "/proc/cmp"]) == 2
    assert "--out='/proc/cmp' cannot be written" in capsys.readouterr().err


def test_train_on_a_demo_world_model_fills_in_the_demo_worlds_settings(tmp_path, capsys):
    from safetensors import safe_open

    from yapo_core import demo

    world = demo.build_demo_world(tmp_path / "world", seed=3, size="mini", progress=False)
    task = world.task("power-seeking")
    assert demo.is_demo_model(world.model_dir) and not demo.is_demo_model(world.root)
    base = ["train", "--model", str(world.model_dir), "--sae-path", str(world.sae_dir),
            "--data", str(task.paths["train"]), "--max-steps", "2", "--device", "cpu"]

    def trained(*extra):
        out = tmp_path / f"v{len(extra)}.safetensors"
        assert main([*base, "--out", str(out), *extra]) == 0
        with safe_open(str(out), "pt") as f:
            return json.loads(f.metadata()["training"]), capsys.readouterr().err

    expected = demo.training_settings(task.pairs("train"))  # open answers: the app's defaults for them
    config, printed = trained()
    assert {k: config[k] for k in ("lr", "batch_size", "warmup_steps", "epochs")} == {
        k: expected[k] for k in ("lr", "batch_size", "warmup_steps", "epochs")}
    assert config["max_steps"] == 2 and "demo world's settings: lr 0.01" in printed and "max_steps" not in printed
    assert "epochs" not in printed  # max_steps ends the run: the epochs that only bound it are not shown
    warmup = expected["warmup_steps"]  # longer than the 2 steps: the note says whose setting it is
    assert f"note: the demo world's setting --warmup-steps={warmup} is longer than the run of 2 steps" in printed
    assert "mcq_rejected" not in printed  # open answers: a setting for letter answers is not shown
    culture = world.culture("egypt")  # a culture's open answers train longer than a behaviour's
    out = tmp_path / "culture.safetensors"
    assert main([*base[:-6], "--data", str(culture.paths["train"]), "--country", "egypt", "--localization", "nolocalized",
                 "--form", "open_ended", "--max-steps", "2", "--device", "cpu", "--out", str(out)]) == 0
    n = len(culture.pairs("train", form="open_ended"))
    with safe_open(str(out), "pt") as f:  # epochs that last a culture's open-answer steps, batch 16
        assert json.loads(f.metadata()["training"])["epochs"] == math.ceil(
            demo.OPEN_TRAINING_BY_TASK["culture"]["max_steps"] / math.ceil(n / 16)) != expected["epochs"]
    assert main([*base[:-6], "--data", str(culture.paths["train"]), "--country", "egypt", "--localization", "nolocalized",
                 "--form", "open_ended", "--kind", "dense", "--layer", str(world.layer), "--max-steps", "2",
                 "--device", "cpu", "--out", str(out)]) == 0
    with safe_open(str(out), "pt") as f:  # a dense vector: BiPO's culture setting, 2400 steps of 32 pairs
        training = json.loads(f.metadata()["training"])
    assert (training["batch_size"], training["epochs"]) == (32, math.ceil(
        demo.OPEN_TRAINING_DENSE_BY_TASK["culture"]["max_steps"] / math.ceil(n / 32)))
    capsys.readouterr()  # eval on a culture's open answers: scored by the culture its answers name (the miniature
    # model's own answers, the rejected ones, are empty on this seed's test rows: its train rows are used here)
    assert main(["eval", "--model", str(world.model_dir), "--vector", str(out), "--data", str(culture.paths["train"]),
                 "--country", "egypt", "--localization", "nolocalized", "--form", "open_ended", "--multipliers", "0,1",
                 "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metric"] == "culture_open"
    config, printed = trained("--lr", "0.002", "--kind", "dense", "--warmup-steps", "5")  # what the user gives wins
    dense = demo.training_settings(task.pairs("train"), "dense")  # a dense vector: the demo's settings for its kind
    assert config["lr"] == 0.002 and config["batch_size"] == dense["batch_size"] and "lr " not in printed
    assert "note: --warmup-steps=5 is longer than the run" in printed  # the user's own, named as given
    assert not demo.is_demo_model(tmp_path)
    # the capability change of a vector, on the demo world's own general questions
    assert main(["eval", "--model", str(world.model_dir), "--vector", str(tmp_path / "v0.safetensors"), "--data",
                 str(task.paths["test_infer"]), "--multipliers", "0,1", "--capability", "5", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    questions = len(world.general_questions()[0])
    assert result["capability"]["measure"] == f"demo general questions ({questions})"
    assert result["capability"]["change_by_multiplier"]["0"] == 0.0 and set(result["capability"]["change_by_multiplier"]) == {"0", "1"}
    assert main(["eval", "--model", str(world.model_dir), "--data", str(task.paths["test_infer"]), "--capability", "5"]) == 2
    assert "--capability measures what a vector changes: give --vector" in capsys.readouterr().err


def test_dense_training_and_errors_print_a_message_not_a_traceback(tmp_path, model_dir, data_csv, capsys):
    out = tmp_path / "d.safetensors"
    assert main(["train", "--model", str(model_dir), "--kind", "dense", "--layer", "2", "--data", str(data_csv),
                 "--out", str(out), "--max-steps", "2", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["train", "--model", str(model_dir), "--kind", "dense", "--layer", "9", "--data", str(data_csv),
                 "--out", str(out), "--device", "cpu"]) == 2
    assert "layer 9 is out of range" in capsys.readouterr().err
    assert main(["train", "--model", str(model_dir), "--kind", "dense", "--layer", "1", "--data", str(data_csv),
                 "--columns", "prompt=q", "--schema", "pairs", "--out", str(out), "--device", "cpu"]) == 2
    assert "prompt -> 'q' missing" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "generate", "features", "export"])
def test_help_on_each_command(command):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "yapo_core", command, "--help"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "usage: yapo " + command in result.stdout


def _trained(out, model_dir, sae_dir, data_csv, capsys, steps: int):
    """A sparse vector trained by ``yapo train`` for ``steps`` steps, at ``out``; its output read."""
    assert main(["train", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data_csv),
                 "--out", str(out), "--max-steps", str(steps), "--device", "cpu"]) == 0
    capsys.readouterr()
    return out


def test_eval_sweeps_multipliers(tmp_path, model_dir, sae_dir, data_csv, capsys):
    out = _trained(tmp_path / "v.safetensors", model_dir, sae_dir, data_csv, capsys, 2)
    report = tmp_path / "sweep.json"
    assert main(["eval", "--model", str(model_dir), "--vector", str(out), "--data", str(data_csv), "--metric",
                 "preference", "--multipliers=-1,0,1", "--out", str(report), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(result["by_multiplier"]) == ["-1", "0", "1"] and result["n"] == 8
    assert result["by_multiplier"]["0"] == 0.0  # at 0 nothing is gained
    assert report.exists() and report.with_suffix(".html").exists()
    assert main(["eval", "--model", str(model_dir), "--data", str(data_csv), "--metric", "preference",
                 "--multipliers", "x", "--vector", str(out), "--device", "cpu"]) == 2
    capsys.readouterr()
    assert main(["eval", "--model", str(model_dir), "--data", str(data_csv), "--metric", "mcq", "--vector", str(out),
                 "--device", "cpu"]) == 2
    assert "MCQ accuracy (answer-letter likelihood) cannot score these pairs" in capsys.readouterr().err
    mcq = tmp_path / "mcq.jsonl"
    mcq.write_text("".join(json.dumps({"prompt": f"Q{i}?\nA. x\nB. y\nC. z\nAnswer:", "chosen": gold, "rejected": "C"})
                           + "\n" for i, gold in enumerate("ABBB")))
    assert main(["eval", "--model", str(model_dir), "--data", str(mcq), "--metric", "mcq", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["one_letter"] == {"letter": "B", "accuracy": 0.75}  # what raising B everywhere scores
    assert main(["eval", "--model", str(model_dir), "--data", str(data_csv), "--multipliers=0,1", "--vector", str(out),
                 "--device", "cpu"]) == 0  # auto: open answers are scored by generation
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metric"] == "generation"


def test_eval_scores_a_folders_held_out_split_the_metric_needs(tmp_path, model_dir, data_csv, capsys):
    """As the Evaluate page does: the behaviour rate on BiPO's test_infer A/B questions, the rest on
    the test split; never the train split a vector was trained on unless asked or there is no other."""
    folder = tmp_path / "task"
    folder.mkdir()
    pairs = pd.read_csv(data_csv)
    pairs.to_csv(folder / "train.csv", index=False)
    pairs.head(5).to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"question": [f"Take offer {i}?" for i in range(3)], "A": "Yes", "B": "No",
                  "matching": list("ABA")}).to_csv(folder / "test_infer.csv", index=False)
    base = ["eval", "--model", str(model_dir), "--data", str(folder), "--multipliers=0", "--device", "cpu"]

    def scored(*extra):
        assert main([*base, *extra]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        return result["metric"], result["split"], result["n"]

    assert scored() == ("behaviour", "test_infer", 3)
    assert scored("--metric", "generation") == ("generation", "test", 5)
    assert scored("--split", "train", "--metric", "generation") == ("generation", "train", 8)
    assert main([*base, "--metric", "behaviour_open"]) == 2
    assert "held-out split(s) of" in (err := capsys.readouterr().err) and "behaviour (test_infer split)" in err
    assert main([*base, "--schema", "pairs", "--metric", "generation"]) == 0  # test_infer is not of this schema
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["split"] == "test" and "the test_infer split of" in err
    (folder / "test.csv").write_text("")
    assert main([*base, "--schema", "pairs"]) == 2
    assert "no held-out split of" in (err := capsys.readouterr().err) and "test:" in err and "test_infer:" in err
    (folder / "test.csv").unlink()
    (folder / "test_infer.csv").unlink()
    assert main([*base, "--metric", "generation"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["split"] == "train"
    assert "has no test split (it has train); scoring its train split" in err


def test_bad_output_and_settings_are_refused_before_any_work(tmp_path, model_dir, data_csv, capsys):
    start = time.perf_counter()
    base = ["train", "--model", str(model_dir), "--kind", "dense", "--layer", "1", "--data", str(data_csv), "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path)]) == 2  # an existing folder
    assert "is a folder; give a file name" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "v.safetensors"), "--max-steps", "0"]) == 2
    assert "--max-steps=0" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "v.safetensors"), "--lr", "nan"]) == 2
    assert "lr=nan" in capsys.readouterr().err
    assert time.perf_counter() - start < 10 and not (tmp_path / "v.safetensors").exists()


def test_a_vector_that_cannot_be_saved_is_kept(tmp_path, model_dir, data_csv, capsys, monkeypatch):
    from yapo_core import export

    real, calls = export.save_vector, []

    def fails_once(vector, path, sae=None):
        calls.append(path)
        if len(calls) == 1:
            raise OSError("No space left on device")
        return real(vector, path, sae=sae)

    monkeypatch.setattr(export, "save_vector", fails_once)
    out = tmp_path / "v.safetensors"
    base = ["train", "--model", str(model_dir), "--kind", "dense", "--layer", "1", "--data", str(data_csv),
            "--max-steps", "2", "--device", "cpu"]
    assert main([*base, "--out", str(out)]) == 1  # the run worked, but its vector is not where it was asked for
    captured = capsys.readouterr()
    kept = json.loads(captured.out.strip().splitlines()[-1])["out"]
    assert "No space left on device" in captured.err and "the vector is kept at" in captured.err
    assert kept != str(out) and export.load_vector(kept).kind == "dense"
    # a checkpoint that cannot be written: said, no traceback; the vector is written
    import safetensors.torch

    monkeypatch.setattr(export, "save_vector", real)
    real_file = safetensors.torch.save_file

    def no_checkpoints(tensors, path, metadata=None):
        if "ck" in (Path(path).name, Path(path).stem, Path(path).parent.name):
            raise OSError("Read-only file system")
        return real_file(tensors, path, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", no_checkpoints)
    for n, (extra, code) in enumerate([(["--checkpoint", str(tmp_path / "ck.safetensors")], 1),  # at the end
                                       (["--checkpoint-every", "1", "--checkpoint-dir", str(tmp_path / "ck")], 2)]):  # during
        vector = tmp_path / f"w{n}.safetensors"
        assert main([*base, "--out", str(vector), *extra]) == code
        err = capsys.readouterr().err
        assert "could not write the checkpoint" in err and "Read-only file system" in err and "Traceback" not in err
        assert export.load_vector(vector).kind == "dense"


def test_generate_refuses_bad_multipliers_and_lengths(tmp_path, model_dir, capsys):
    from yapo_core import SteeringVector, save_vector

    vec = save_vector(SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post"), tmp_path / "d.safetensors")
    base = ["generate", "--model", str(model_dir), "--vector", str(vec), "--prompt", "Hi", "--device", "cpu",
            "--allow-other-model"]
    assert main([*base, "--multipliers=a,b"]) == 2 and "multiplier 'a' is not a finite number" in capsys.readouterr().err
    assert main([*base, "--multipliers=0,nan"]) == 2 and "'nan'" in capsys.readouterr().err
    assert main([*base, "--max-new-tokens", "0"]) == 2 and "--max-new-tokens=0" in capsys.readouterr().err
    assert main([*base, "--max-new-tokens", "10000000"]) == 2 and "exceed the model's context" in capsys.readouterr().err


def test_resume_continues_from_a_checkpoint_or_starts_from_a_vector_file(tmp_path, model_dir, data_csv, capsys):
    base = ["train", "--model", str(model_dir), "--kind", "dense", "--layer", "1", "--data", str(data_csv),
            "--device", "cpu", "--max-steps", "2"]
    first, checkpoint = tmp_path / "a.safetensors", tmp_path / "a.ckpt.safetensors"
    assert main([*base, "--out", str(first), "--checkpoint", str(checkpoint)]) == 0
    capsys.readouterr()
    assert main([*base, "--max-steps", "4", "--out", str(tmp_path / "b.safetensors"), "--resume", str(checkpoint)]) == 0
    assert "resumed 'a.ckpt.safetensors' at step 2" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "c.safetensors"), "--resume", str(first)]) == 0
    assert "started from the values of 'a.safetensors'" in capsys.readouterr().err
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    assert main([*base, "--out", str(tmp_path / "d.safetensors"), "--resume", str(tmp_path / "other.safetensors")]) == 2
    assert "neither a training checkpoint" in capsys.readouterr().err
    sparse = ["train", "--model", str(model_dir), "--kind", "dense", "--layer", "2", "--data", str(data_csv),
              "--device", "cpu", "--max-steps", "1", "--out", str(tmp_path / "e.safetensors"), "--resume", str(first)]
    assert main(sparse) == 2 and "this run trains a dense vector for blocks.2" in capsys.readouterr().err


def test_export_refuses_a_non_finite_multiplier(tmp_path, model_dir, capsys):
    from yapo_core import SteeringVector, save_vector

    vec = save_vector(SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post"), tmp_path / "d.safetensors")
    out = tmp_path / "v.gguf"
    assert main(["export", "--vector", str(vec), "--out", str(out), "--multiplier", "nan"]) == 2
    assert "multiplier nan must be a finite number" in capsys.readouterr().err and not out.exists()


def test_bad_devices_outputs_and_choices_are_refused_before_any_work(tmp_path, model_dir, data_csv, capsys):
    from yapo_core import SteeringVector, save_vector

    vec = save_vector(SteeringVector("dense", torch.ones(32), "blocks.1.hook_resid_post"), tmp_path / "d.safetensors")
    a_file = tmp_path / "pairs.jsonl"
    a_file.write_text("{}")
    cases = [
        (["train", "--model", str(model_dir), "--kind", "dense", "--layer", "1", "--data", str(data_csv),
          "--out", str(tmp_path / "x.safetensors"), "--device", "tpu"], "device 'tpu' is unknown"),
        (["train", "--model", str(model_dir), "--kind", "dense", "--layer", "1", "--data", str(data_csv),
          "--out", str(tmp_path / "x.safetensors"), "--seed", str(10**25)], "seed=.* must be a whole number"),
        (["train", "--model", str(model_dir), "--kind", "dense", "--layer", "1", "--data", str(data_csv),
          "--out", str(tmp_path / "x.safetensors"), "--cache-dir", str(a_file)], "--cache-dir=.* is a file"),
        (["eval", "--model", str(model_dir), "--data", str(data_csv), "--vector", str(vec), "--out", str(tmp_path)],
         "is a folder; give a file name such as .*sweep.json"),
        (["export", "--vector", str(vec), "--out", str(tmp_path)], "is a folder; give a file name such as .*vector.gguf"),
        (["compare", "--size", "mini", "--methods", " ", "--out", str(tmp_path / "c")], "names no method"),
        (["compare", "--size", "mini", "--steps", "0", "--out", str(tmp_path / "c")], "--steps=0 must be a whole number"),
        (["compare", "--size", "mini", "--methods", "caa", "--out", str(a_file)], "--out=.* is a file"),
        (["compare", "--size", "mini", "--country", "france", "--out", str(tmp_path / "c")],
         "country 'france' is not one of the demo world's target cultures: egypt"),
        (["compare", "--size", "mini", "--country", "usa", "--out", str(tmp_path / "c")], "'usa' is not one of"),
        (["compare", "--size", "mini", "--countries", "morocco", "--limit", "5", "--out", str(tmp_path / "c")],
         r"--countries, --limit read\(s\) --data, which needs --model"),
        (["compare", "--size", "mini", "--behaviour", "power-seeking", "--country", "egypt", "--out", str(tmp_path / "c")],
         "name two demo tasks"),
        (["train", "--model", str(model_dir), "--kind", "dense", "--layer", "1", "--data", str(data_csv),
          "--out", str(tmp_path / "x.safetensors"), "--history", str(tmp_path / "curves.html")], "give a .jsonl name"),
        (["generate", "--model", str(model_dir), "--vector", str(vec), "--prompt", "hi", "--sample", "--temperature", "0",
          "--allow-other-model"], "temperature=0.0 must be a finite number above 0"),
        (["demo", "build", "--size", "mini", "--quiet", "--cache-dir", str(a_file)], "--cache-dir=.* is a file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert re.search(message, err) and "Traceback" not in err, (argv, err)


def test_compare_on_your_own_model_sae_and_data(tmp_path, model_dir, sae_dir, data_csv, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data_csv),
                 "--methods", "yapo,caa", "--steps", "2", "--multipliers=0,1", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "| YaPO |" in printed.out and "| CAA |" in printed.out and "metric generation" in printed.err
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["metric"] == "generation" and saved["settings"]["n_validation"] >= 1
    assert saved["settings"]["multiplier_choice"] == "validation split"
    assert main(["compare", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data_csv),
                 "--test-data", str(data_csv), "--limit", "6", "--methods", "caa", "--multipliers=0,1", "--device", "cpu",
                 "--out", str(out)]) == 0  # the test file is read with the same options (--limit)
    capsys.readouterr()
    assert json.loads((out / "comparison.json").read_text())["settings"]["n_test"] == 6
    assert main(["compare", "--model", str(model_dir), "--data", str(data_csv), "--out", str(out)]) == 2
    assert "compare needs an SAE" in capsys.readouterr().err
    assert main(["compare", "--data", str(data_csv), "--out", str(out)]) == 2
    assert "--data needs --model" in capsys.readouterr().err
    assert main(["compare", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data_csv),
                 "--capability", "10", "--device", "cpu", "--out", str(out)]) == 2  # offline: MMLU cannot be read
    assert "cais/mmlu" in capsys.readouterr().err


def test_compare_on_your_own_model_trains_the_public_runs_epochs_without_steps(tmp_path, model_dir, sae_dir, data_csv,
                                                                               capsys):
    """Without --steps, a comparison on the user's model trains TrainConfig's epochs (the public
    runs' 20), not an open-ended run."""
    from yapo_core.train_config import TrainConfig

    out = tmp_path / "cmp"
    assert main(["compare", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data_csv),
                 "--limit", "6", "--methods", "yapo", "--multipliers=0,1", "--device", "cpu", "--out", str(out)]) == 0
    capsys.readouterr()
    saved = json.loads((out / "comparison.json").read_text())["settings"]["train_config"]
    assert "max_steps" not in saved and TrainConfig(**saved).epochs == 20


def test_features_says_when_a_latent_never_fires_on_the_pairs():
    from yapo_core import features as F
    from yapo_core.cli_features import render

    lens = F.LogitLens([F.TokenScore("tea", 5, 1.5)], [F.TokenScore("cola", 6, -1.0)])
    card = F.VectorCard("sparse", "yapo", 16, 1, 6.2, 1.0, 3.0, 0.0, 0.0, lens)
    silent = F.LatentActivity(index=3, n_tokens=40, density=0.0, max_value=0.0, mean_active=0.0)
    printed = render(F.FeatureReport(card, [F.LatentCard(3, 6.2, "value", lens, silent, None)], 8), "blocks.1")
    assert "never active on the 40 tokens of the task's pairs" in printed and "mean when active" not in printed


def test_features_prints_the_vectors_top_latents_as_the_features_page_does(tmp_path, model_dir, sae_dir, data_csv, capsys):
    from yapo_core.export import load_vector
    from yapo_core.features import top_latents

    vec = _trained(tmp_path / "v.safetensors", model_dir, sae_dir, data_csv, capsys, 4)
    report = tmp_path / "features.json"
    assert main(["features", "--model", str(model_dir), "--vector", str(vec), "--data", str(data_csv), "--top", "3",
                 "--json", str(report), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    expected = [w.index for w in top_latents(load_vector(vec), 3)]
    assert [int(line.split()[1]) for line in printed.splitlines() if line.startswith("latent ")] == expected
    assert printed.startswith("sparse vector (yapo)") and "promotes:" in printed and "active on" in printed
    saved = json.loads(report.read_text())
    assert [c["index"] for c in saved["latents"]] == expected and saved["n_texts"] == 8
    assert all(c["activity"]["n_tokens"] > 0 for c in saved["latents"])
    assert main(["features", "--model", str(model_dir), "--vector", str(vec), "--top", "0"]) == 2
    assert "--top=0 must be a whole number" in capsys.readouterr().err


def test_features_explain_adds_neuronpedia_explanations_or_says_why_not(tmp_path, model_dir, sae_dir, data_csv, capsys,
                                                                        monkeypatch):
    import yapo_core.features as F

    vec = _trained(tmp_path / "v.safetensors", model_dir, sae_dir, data_csv, capsys, 4)
    argv = ["features", "--model", str(model_dir), "--vector", str(vec), "--top", "2", "--explain", "--device", "cpu"]
    assert main([*argv, "--json", str(tmp_path / "f.json")]) == 1  # a local SAE: no Neuronpedia pages
    out, err = capsys.readouterr()
    assert out.startswith("sparse vector") and "error: --explain: this SAE has no Neuronpedia pages" in err
    assert "explanations" not in json.loads((tmp_path / "f.json").read_text())
    first = []
    monkeypatch.setattr(F, "explain_report", lambda report: {(first.append(report.latents[0].index) or first[0]): "tea"})
    assert main([*argv, "--json", str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out
    assert out.count("Neuronpedia: tea") == 1 and out.count("Neuronpedia: (no explanation)") == 1
    assert json.loads((tmp_path / "f.json").read_text())["explanations"] == {str(first[0]): "tea"}


def test_errors_give_their_advice_in_command_line_terms(tmp_path, model_dir, sae_dir, data_csv, capsys):
    """The library's advice names Python parameters (sae=, layer=, allow_other_model=True); the
    command line names its options, and offers each option it advises."""
    out = tmp_path / "v.safetensors"
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"question": ["q"], "good": ["a"], "bad": ["b"]}).to_csv(bad, index=False)
    dcl = tmp_path / "dcl.csv"
    pd.DataFrame({"country": ["egypt"], "localization_status": ["localized"], "prompt-mcq": ["q"], "chosen-mcq": ["A"],
                  "rejected_gemma_mcq": ["B"]}).to_csv(dcl, index=False)
    cases = [
        (["train", "--model", str(model_dir), "--data", str(data_csv), "--out", str(out)],
         r"needs an SAE: give --sae-path, or --sae-release and --sae-id"),
        (["train", "--model", str(model_dir), "--kind", "dense", "--data", str(data_csv), "--out", str(out)],
         r"needs --layer N"),
        (["train", "--model", str(model_dir), "--sae-path", str(sae_dir), "--layer", "2", "--data", str(data_csv),
          "--out", str(out)], r"use --layer 1 or an SAE"),
        (["train", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data_csv), "--out", str(out),
          "--max-steps=-5"], r"^error: --max-steps=-5 must be"),
        (["train", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(bad), "--out", str(out)],
         r"--columns "),
        (["train", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(dcl), "--rejected-model", "llama",
          "--out", str(out)], r"it has those of 'gemma': choose one with --rejected-model"),
        (["train", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(dcl), "--form", "open_ended",
          "--out", str(out)], r"no open_ended rejected answers .* it has mcq ones: use --form mcq\.$"),
    ]
    for argv, message in cases:
        assert main([*argv, "--device", "cpu"]) == 2, argv
        err = capsys.readouterr().err
        assert re.search(message, err, re.M) and "=." not in err and "layer=" not in err, (argv, err)

    vec = tmp_path / "other.safetensors"  # a vector of another model: each command that checks it can be told
    other = tmp_path / "other-model"
    make_model("llama", seed=5).save_pretrained(other)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(model_dir).save_pretrained(other)
    assert main(["train", "--model", str(other), "--sae-path", str(sae_dir), "--data", str(data_csv), "--out", str(vec),
                 "--max-steps", "2", "--device", "cpu"]) == 0
    capsys.readouterr()
    for argv in (["export", "--vector", str(vec), "--out", str(tmp_path / "v.gguf"), "--model", str(model_dir)],
                 ["train", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data_csv), "--out",
                  str(out), "--max-steps", "2", "--resume", str(vec), "--device", "cpu"]):
        assert main(argv) == 2, argv
        assert "pass --allow-other-model" in capsys.readouterr().err
        assert main([*argv, "--allow-other-model"]) == 0, argv
        capsys.readouterr()


def test_what_the_loader_noticed_is_printed(tmp_path, model_dir, capsys):
    data = tmp_path / "pairs.csv"
    pd.DataFrame({"prompt": ["Do you like tea?", "Hi", "Yo"], "chosen": ["Yes.", "Hello.", ""],
                  "rejected": ["No.", "Hello.", "No."]}).to_csv(data, index=False)
    assert main(["train", "--model", str(model_dir), "--kind", "dense", "--layer", "1", "--data", str(data),
                 "--out", str(tmp_path / "d.safetensors"), "--max-steps", "1", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "note: 1 row(s) skipped" in err and "note: 1 of 2 pair(s) have the same chosen and rejected answer" in err
    assert "note: --warmup-steps=100 is longer than the run of 1 step: the learning rate rises to 5e-06 at most" in err


def test_bad_data_fails_before_the_model_loads(tmp_path, sae_dir, capsys):
    """A wrong column must not cost a user the minutes a large model takes to load: the data is read
    first (here the model does not even exist, and the error is still the data's)."""
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"question": ["q"], "good": ["a"], "bad": ["b"]}).to_csv(bad, index=False)
    missing = str(tmp_path / "no-such-model")
    vec = tmp_path / "v.safetensors"
    for argv in (["train", "--model", missing, "--sae-path", str(sae_dir), "--data", str(bad), "--out", str(vec)],
                 ["eval", "--model", missing, "--data", str(bad)],
                 ["features", "--model", missing, "--vector", str(vec), "--data", str(bad)]):
        assert main([*argv, "--device", "cpu"]) == 2, argv
        err = capsys.readouterr().err
        assert "cannot tell the schema" in err and "no-such-model" not in err, (argv, err)


def test_bad_compare_settings_and_resume_files_fail_before_the_model_loads(tmp_path, sae_dir, data_csv, capsys):
    missing = str(tmp_path / "no-such-model")
    for argv, message in (
        (["compare", "--model", missing, "--data", str(data_csv), "--lr=-1", "--out", str(tmp_path / "c")], "lr=-1"),
        (["compare", "--model", missing, "--data", str(data_csv), "--batch-size", "0", "--out", str(tmp_path / "c")],
         "--batch-size=0"),
        (["train", "--model", missing, "--sae-path", str(sae_dir), "--data", str(data_csv), "--out",
          str(tmp_path / "v.safetensors"), "--resume", str(tmp_path / "nothere.safetensors")], "nothere.safetensors' does not exist"),
    ):
        assert main([*argv, "--device", "cpu"]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "no-such-model" not in err, (argv, err)


def test_a_culture_filter_on_plain_pairs_names_the_option(tmp_path, sae_dir, capsys):
    """--country on data with no country column would train on every row; it is refused in the
    CLI's own terms."""
    data = tmp_path / "pairs.csv"
    pd.DataFrame({"prompt": ["q"], "chosen": ["a"], "rejected": ["b"]}).to_csv(data, index=False)
    argv = ["train", "--model", str(tmp_path / "no-such-model"), "--sae-path", str(sae_dir), "--data", str(data),
            "--out", str(tmp_path / "v.safetensors"), "--country", "egypt,uk", "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--country='egypt,uk' selects Deep-Culture-Lense rows" in err and "leave it out" in err, err


def test_the_loaders_advice_on_pairs_that_teach_nothing_reads_in_command_line_terms(tmp_path):
    from conftest import dcl_with_an_answered_localized_prompt

    from yapo_core.cli_args import in_cli_terms
    from yapo_core.data import load_pairs

    path = dcl_with_an_answered_localized_prompt(tmp_path)
    (note,) = [in_cli_terms(n) for n in load_pairs(path, localization="both").notes]
    assert "which the model answers right unsteered: --localization nolocalized leaves them out)" in note
    assert note.index("--localization") < note.index("(--mcq-rejected every_option)")


def test_a_file_that_cannot_be_written_after_the_work_is_an_error_not_a_traceback(capsys):
    from yapo_core.cli import _guarded

    def full_disk():
        raise OSError(28, "No space left on device", "/runs/sweep.json")

    assert _guarded(full_disk) == 1
    assert capsys.readouterr().err == "error: could not read or write '/runs/sweep.json': No space left on device.\n"

    def unreachable():
        raise ConnectionError("Couldn't reach huggingface.co")

    assert _guarded(unreachable) == 1 and capsys.readouterr().err == "error: Couldn't reach huggingface.co\n"


def test_a_column_mapping_may_have_spaces_after_its_commas():
    from yapo_core.cli_args import columns

    assert columns("prompt=q, chosen=good , rejected = bad") == {"prompt": "q", "chosen": "good", "rejected": "bad"}
    assert columns("rejected=rejectd,") == {"rejected": "rejectd"}


def test_cli_messages_name_options_and_refuse_settings_that_would_do_nothing(tmp_path, model_dir, data_csv, capsys):
    """Settings that would be ignored are refused (sampling settings without --sample; --form on
    data with one form), and a setting named in a sentence is named by its option."""
    from yapo_core.cli import build_parser
    from yapo_core.cli_args import in_cli_terms

    assert main(["generate", "--model", str(model_dir), "--vector", str(tmp_path / "v.safetensors"), "--prompt", "Hi",
                 "--temperature", "0.5"]) == 2
    assert "--temperature sets how answers are sampled, and without --sample" in capsys.readouterr().err
    assert main(["train", "--model", str(model_dir), "--kind", "dense", "--layer", "1", "--data", str(data_csv),
                 "--form", "mcq", "--out", str(tmp_path / "v.safetensors")]) == 2
    assert "--form mcq chooses Deep-Culture-Lense's answer form, but this data reads as schema 'pairs'" in (
        capsys.readouterr().err)
    said = in_cli_terms("checkpoint_every is set but checkpoint_dir is not; give a folder.", build_parser())
    assert said == "--checkpoint-every is set but --checkpoint-dir is not; give a folder."
    assert in_cli_terms("see yapo_core.load_sae and train_config", build_parser()) == "see yapo_core.load_sae and train_config"
