"""A tiny model, tokenizer, SAE and data file saved to disk, so sessions load them the way users'
sources are loaded (from folders), offline and in seconds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import consistent_pairs, make_model, make_sae, make_tokenizer


@dataclass
class TinyWorld:
    model_dir: Path
    sae_dir: Path
    data_file: Path


def write_pairs_jsonl(path: Path, n: int, seed: int = 0) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for p in consistent_pairs(n, seed=seed):
            f.write(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n")
    return path


def build_tiny_world(root: Path) -> TinyWorld:
    model_dir, sae_dir = root / "model", root / "sae"
    make_model("llama").save_pretrained(model_dir)
    make_tokenizer().save_pretrained(model_dir)
    make_sae().save_model(sae_dir)  # blocks.1.hook_resid_post, d_sae 128
    return TinyWorld(model_dir, sae_dir, write_pairs_jsonl(root / "pairs.jsonl", 40))


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> TinyWorld:
    return build_tiny_world(tmp_path_factory.mktemp("tiny-world"))
