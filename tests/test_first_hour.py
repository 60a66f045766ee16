"""What a new user met in the first hour (issue "A new user's first hour"): ONNX chosen by suffix,
`demo --force`, a plain console at the default level, FFmpeg's own lines kept off the terminal, a
truncated MP4 called truncated."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import one_line, run


def test_export_to_a_dot_onnx_name_writes_onnx(onnx_model):
    assert json.loads(Path(f"{onnx_model}.json").read_text())["format"] == "onnx"
    assert onnx_model.read_bytes()[:2] != b"PK"  # not a torch.export zip


def test_predict_on_a_dot_onnx_file_uses_onnxruntime(capsys, onnx_model, shared_data):
    code, out, err = run(capsys, "predict", shared_data / "videos" / "test.avi", "--checkpoint", onnx_model, "--json")
    assert code == 0 and json.loads(out)[0]["error"] is None, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "--format", "torch", "--out", "{tmp}/m.onnx"], "--format onnx"),
        (["predict", "{video}", "--engine", "onnx"], "drop --engine onnx"),
    ],
)
def test_contradicting_suffix_and_option_name_the_command_that_works(
    capsys, trained_run, shared_data, tmp_path, argv, message
):
    values = {"tmp": str(tmp_path), "video": str(shared_data / "videos" / "test.avi")}
    argv = [a.format(**values) for a in argv] + ["--checkpoint", str(trained_run / "best.safetensors")]
    code, _, err = run(capsys, *argv)
    assert code == 2 and one_line(err) and message in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_predict_with_engine_torch_on_an_onnx_file_says_so(capsys, onnx_model, shared_data):
    argv = ["predict", shared_data / "videos" / "test.avi", "--checkpoint", onnx_model, "--engine", "torch"]
    code, _, err = run(capsys, *argv)
    assert code == 2 and one_line(err) and "--engine onnx" in err


def test_demo_takes_force(capsys):
    from actionmoe.cli import build_parser

    assert build_parser().parse_args(["demo", "--force"]).force is True


def test_info_lines_are_plain_at_the_default_level(trained_run):
    stderr = (trained_run.parent / "train-stderr.txt").read_text()  # `actionmoe train`, 2 epochs, default level
    assert "INFO" not in stderr and "actionmoe.engine" not in stderr
    assert "CPU: fp32" not in stderr
    # every epoch line says where the run stands and how long the rest will take
    assert re.search(r"^epoch 1/2: loss .*clips/s; about \d+ (s|min \d+ s) left$", stderr, re.M)
    assert re.search(r"^epoch 2/2: loss .*clips/s$", stderr, re.M)


def truncated_mp4(folder: Path, shared_data: Path) -> Path:
    whole = (shared_data / "videos" / "test.mp4").read_bytes()
    cut = folder / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    return cut


def test_a_truncated_mp4_is_called_truncated_and_ffmpeg_stays_quiet(trained_run, shared_data, tmp_path):
    cut = truncated_mp4(tmp_path, shared_data)
    result = subprocess.run(
        [sys.executable, "-m", "actionmoe", "predict", str(cut), "--checkpoint", str(trained_run / "best.safetensors")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "truncated or damaged" in result.stdout and "moov atom" in result.stdout
    assert "not a video" not in result.stdout
    assert "moov atom not found" not in result.stderr, result.stderr  # FFmpeg's own log line


def test_the_suite_needs_nothing_outside_the_repository():
    repo = Path(__file__).resolve().parents[1]
    sources = [p.read_text() for p in (repo / "tests").rglob("*.py")]
    assert not any("shared/data" in text or '"shared"' in text for text in sources if "needs nothing" not in text)
    assert len(list((repo / "tests" / "fixtures" / "videos").iterdir())) == 4
