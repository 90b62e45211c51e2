"""The README's runnable API example works (on the miniature demo world, in seconds)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_example_api_runs(tmp_path):
    env = {**os.environ, "YAPO_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "scripts/example_api.py", "--size", "mini", "--steps", "4"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "step 4: loss" in out and "held-out non-localized MCQ accuracy" in out
    assert "unsteered:" in out and "steered x1:" in out and "saved and reloaded" in out
