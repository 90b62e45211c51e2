"""yapo_core._cpu: torch's AVX2 kernels on every x86-64 CPU that has them, so that a seed builds the
same demo world everywhere; the user's own choice wins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from yapo_core._cpu import PINNED, cpu_flags, pin_cpu_kernels
from yapo_core.demo.world import kernel_warning

ROOT = Path(__file__).resolve().parents[1]
AVX512_CPU = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx fma avx2 avx512f avx512bw\n"


def cpuinfo(tmp_path, text: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return str(path)


def test_an_x86_cpu_with_avx2_gets_torchs_avx2_kernels(tmp_path):
    env: dict[str, str] = {}
    assert pin_cpu_kernels(env, cpuinfo(tmp_path, AVX512_CPU), "x86_64") == PINNED == "avx2"
    assert env == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}  # torch's kernels and MKL's matrix products
    assert cpu_flags(AVX512_CPU) >= {"avx2", "fma", "avx512f"}


@pytest.mark.parametrize("env, text, machine", [
    ({"ATEN_CPU_CAPABILITY": "avx512"}, AVX512_CPU, "x86_64"),  # the user's choice wins
    ({"MKL_CBWR": "AUTO"}, AVX512_CPU, "x86_64"),  # also for MKL's code path
    ({"YAPO_CPU_KERNELS": "native"}, AVX512_CPU, "x86_64"),  # asked for the CPU's own kernels
    ({}, "flags\t\t: fpu sse2 avx\n", "x86_64"),  # no AVX2: pinning would crash torch
    ({}, "flags\t\t: fpu avx2\n", "x86_64"),  # AVX2 without FMA
    ({}, AVX512_CPU, "aarch64"),  # another architecture's kernels
    ({}, None, "x86_64"),  # no /proc/cpuinfo
])
def test_nothing_is_pinned_where_the_user_chose_or_the_cpu_cannot(tmp_path, env, text, machine):
    before = dict(env)
    path = cpuinfo(tmp_path, text) if text is not None else str(tmp_path / "missing")
    assert pin_cpu_kernels(env, path, machine) is None
    assert env == before


@pytest.mark.skipif(not (os.path.exists("/proc/cpuinfo") and {"avx2", "fma"} <= cpu_flags(Path("/proc/cpuinfo").read_text())),
                    reason="needs an x86-64 CPU with AVX2")
def test_importing_yapo_core_first_gives_torch_its_avx2_kernels():
    code = "import os, yapo_core, torch; print(torch.backends.cpu.get_cpu_capability(), os.environ['MKL_CBWR'])"
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "YAPO_CPU_KERNELS")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["AVX2", "AVX2"]


@pytest.mark.skipif(not (os.path.exists("/proc/cpuinfo") and {"avx2", "fma"} <= cpu_flags(Path("/proc/cpuinfo").read_text())),
                    reason="needs an x86-64 CPU with AVX2")
def test_mkl_reads_its_code_path_as_set_before_its_first_call():
    """MKL_CBWR is read once, at MKL's first call: set by yapo_core's import, it takes effect. Shown
    with the SSE2 path, which every x86-64 CPU runs and which rounds otherwise than AVX2's."""
    code = ("import os, sys, hashlib, torch; os.environ['MKL_CBWR'] = sys.argv[1]; torch.manual_seed(0); "
            "a, b = torch.randn(257, 129), torch.randn(129, 515); "
            "print(hashlib.sha256((a @ b).numpy().tobytes()).hexdigest())")
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    run = lambda branch: subprocess.run([sys.executable, "-c", code, branch], env=env, capture_output=True,  # noqa: E731
                                        text=True, check=True).stdout
    import torch

    if not torch.backends.mkl.is_available():
        pytest.skip("torch is built without MKL")
    assert run("COMPATIBLE") != run("AVX2") == run("AVX2")


def test_a_build_on_other_kernels_is_told_it_is_another_model():
    note = kernel_warning("AVX512", "x86_64")
    assert "AVX512 kernels" in note and "ATEN_CPU_CAPABILITY=avx2" in note and "another model" in note
    assert "MKL" not in note.split(", which")[0]
    both = kernel_warning("AVX512", "x86_64", "auto")
    assert "torch's AVX512 kernels and MKL's auto code path" in both and "MKL_CBWR=AVX2" in both
    assert kernel_warning("AVX2", "x86_64", "auto").startswith("this demo world is built with MKL's auto code path")
    assert kernel_warning("DEFAULT", "x86_64", "auto") is None  # a CPU without AVX2: nothing to pin, nothing to advise
    assert kernel_warning("AVX2", "x86_64") is None and kernel_warning("AVX2", "AMD64") is None
    assert kernel_warning("SVE256", "aarch64") is None  # no stored world to match there
