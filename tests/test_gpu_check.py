"""scripts/gpu_check.py: one line and exit 0 without a GPU; every step's orchestration run on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def run_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, str(REPO / "scripts" / "gpu_check.py"), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    result = run_check("--out", str(tmp_path / "report.json"))
    assert result.returncode == 0 and result.stdout.strip().splitlines() == [
        "gpu-check: no CUDA GPU here, nothing to check (run it on a machine with an NVIDIA GPU)"
    ]
    assert not (tmp_path / "report.json").exists()


def test_make_gpu_check_exists_and_is_documented():
    assert "gpu-check:" in (REPO / "Makefile").read_text()
    assert "make gpu-check" in (REPO / "README.md").read_text()


@pytest.mark.slow
def test_every_step_runs_on_the_cpu_in_tiny_mode(tmp_path):
    result = run_check("--tiny", "--allow-cpu", "--out", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["steps"]) == ["info", "dataset", "cache", "train", "evaluate", "torchrun"]
    assert all(step["ok"] for step in report["steps"].values())
    assert report["steps"]["train"]["result"]["videos"] > 0  # the test evaluation that training ends with
    assert 0 <= report["steps"]["evaluate"]["result"]["video_level"]["top1"] <= 1
    assert [row["epoch"] for row in report["steps"]["torchrun"]["result"]] == [0]
