"""The command line end to end on a tiny local model and SAE."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import consistent_pairs, make_model

from yapo_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    path = tmp_path / "model"
    make_model("llama").save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def data_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    pd.DataFrame([vars(p) for p in consistent_pairs(8)])[["prompt", "chosen", "rejected"]].to_csv(path, index=False)
    return path


def test_train_generate_export(tmp_path, model_dir, sae_dir, data_csv, capsys):
    out = tmp_path / "v.safetensors"
    assert main(["train", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data_csv),
                 "--out", str(out), "--max-steps", "4", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 4 and out.exists()
    # the SAE is found again from the vector's own metadata
    assert main(["generate", "--model", str(model_dir), "--vector", str(out), "--prompt", "Do you like tea?",
                 "--multipliers", "0,1", "--max-new-tokens", "5", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "--- unsteered:" in printed and "--- steered x1:" in printed
    assert main(["export", "--vector", str(out), "--out", str(tmp_path / "v.gguf"), "--model", str(model_dir)]) == 0
    assert (tmp_path / "v.gguf").stat().st_size > 0


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


@pytest.mark.parametrize("command", ["train", "generate", "export"])
def test_help_on_each_command(command):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "yapo_core", command, "--help"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "usage: yapo " + command in result.stdout


def test_eval_sweeps_multipliers(tmp_path, model_dir, sae_dir, data_csv, capsys):
    out = tmp_path / "v.safetensors"
    assert main(["train", "--model", str(model_dir), "--sae-path", str(sae_dir), "--data", str(data_csv),
                 "--out", str(out), "--max-steps", "2", "--device", "cpu"]) == 0
    capsys.readouterr()
    report = tmp_path / "sweep.json"
    assert main(["eval", "--model", str(model_dir), "--vector", str(out), "--data", str(data_csv), "--metric",
                 "preference", "--multipliers=-1,0,1", "--out", str(report), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(result["by_multiplier"]) == ["-1", "0", "1"] and result["n"] == 8
    assert result["by_multiplier"]["0"] == 0.0  # at 0 nothing is gained
    assert report.exists() and report.with_suffix(".html").exists()
    assert main(["eval", "--model", str(model_dir), "--data", str(data_csv), "--metric", "preference",
                 "--multipliers", "x", "--vector", str(out), "--device", "cpu"]) == 2
