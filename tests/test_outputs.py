"""Output paths: nothing a command did not write is deleted, cut or replaced, and every bad --out is refused first.

Reliability round 3 (docs/reliability.md): ``evaluate --out`` over a run folder, a device or FIFO as the
target of an atomic write, an unrelated file as a batch output, two batch runs into one file, spreadsheet
formulas in CSV cells, and the user-caused output errors that ended in tracebacks.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from actionmoe import files
from actionmoe.errors import OutputError
from tests.helpers import one_line, run


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy of the trained run, so a test may try to damage it."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


# --- the atomic writer never replaces what is not a regular file ------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "socket", "folder"])
def test_an_atomic_write_refuses_a_target_that_is_not_a_regular_file(tmp_path, kind):
    target = tmp_path / "target"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    else:
        import socket

        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
    before = target.lstat()
    with pytest.raises(OutputError, match="not a regular file|is a folder"):
        files.write_atomically(target, b"payload")
    after = target.lstat()
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
    assert list(tmp_path.iterdir()) == [target]


def test_export_to_a_fifo_is_refused_before_any_work(capsys, trained_run, tmp_path):
    fifo = tmp_path / "model.pt2"
    os.mkfifo(fifo)
    code, _, err = run(capsys, "export", "--checkpoint", trained_run / "best.safetensors", "--out", fifo)
    assert code == 2 and one_line(err) and "not a regular file" in err
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and not (tmp_path / "model.pt2.json").exists()


def test_a_timeline_out_that_is_a_fifo_is_refused_before_decoding(capsys, trained_run, shared_data, tmp_path):
    fifo = tmp_path / "timeline.json"
    os.mkfifo(fifo)
    video = shared_data / "videos" / "test.avi"
    code, out, err = run(
        capsys, "predict", video, "--checkpoint", trained_run / "best.safetensors", "--window", "1", "--out", fifo
    )
    assert code == 2 and one_line(err) and "not a regular file" in err and out == ""
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


# --- evaluate --out never deletes what it did not write -------------------------------------------------------


def test_evaluate_out_into_the_run_folder_is_refused_and_deletes_nothing(capsys, run_copy):
    before = snapshot(run_copy)
    code, out, err = run(capsys, "evaluate", "--checkpoint", run_copy / "best.safetensors", "--out", run_copy)
    assert code == 2 and one_line(err) and "holds files that are not an evaluation" in err and out == ""
    assert snapshot(run_copy) == before


def test_evaluate_out_dot_dot_from_a_subfolder_deletes_nothing(capsys, run_copy, monkeypatch):
    parent = run_copy.parent
    (parent / "precious.txt").write_text("keep me")
    before = snapshot(parent)
    monkeypatch.chdir(run_copy / "evaluation")
    code, _, err = run(capsys, "evaluate", "--checkpoint", run_copy / "best.safetensors", "--out", "..")
    assert code == 2 and one_line(err)
    assert snapshot(parent) == before


def test_evaluate_out_dot_in_an_empty_folder_and_a_rerun_over_its_own_evaluation(
    capsys, run_copy, tmp_path, monkeypatch
):
    target = tmp_path / "fresh"
    target.mkdir()
    monkeypatch.chdir(target)
    argv = ("evaluate", "--checkpoint", run_copy / "best.safetensors", "--out", ".", "--workers", 0)
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert (target / "metrics.json").is_file() and (target / "report.md").is_file()
    code, _, err = run(capsys, *argv)  # the folder now holds an evaluation: replacing it is allowed
    assert code == 0, err
    assert (target / "metrics.json").is_file() and Path.cwd() == target


def test_a_killed_evaluations_staging_folder_is_removed_by_the_next_one(capsys, run_copy):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = run_copy / f".evaluation.partial-{int(dead.stdout)}"
    stale.mkdir()
    (stale / "metrics.json").write_text("{}")
    code, _, err = run(capsys, "evaluate", "--checkpoint", run_copy / "best.safetensors", "--workers", 0)
    assert code == 0, err
    assert not stale.exists()


# --- batch outputs: validated before anything is cut, locked, safe in a spreadsheet ---------------------------------


def predict_argv(trained_run: Path, videos, out: Path, *extra) -> list:
    return ["predict", *videos, "--checkpoint", trained_run / "best.safetensors", "--out", out, *extra]


def test_an_unrelated_csv_without_a_final_newline_is_refused_uncut(capsys, trained_run, shared_data, tmp_path):
    budget = tmp_path / "budget.csv"
    budget.write_bytes(b"item,cost\nrent,900\nfood,300")
    code, _, err = run(capsys, *predict_argv(trained_run, [shared_data / "videos" / "test.avi"], budget))
    assert code == 2 and one_line(err) and "nothing was changed" in err
    assert budget.read_bytes() == b"item,cost\nrent,900\nfood,300"


def test_a_torn_row_of_this_runs_own_file_is_cut_and_said(capsys, trained_run, shared_data, tmp_path):
    out = tmp_path / "p.csv"
    videos = [shared_data / "videos" / "test.avi", shared_data / "videos" / "test.mp4"]
    code, _, err = run(capsys, *predict_argv(trained_run, videos[:1], out))
    assert code == 0, err
    out.write_bytes(out.read_bytes() + b"/some/torn/row.avi,lab")
    code, _, err = run(capsys, *predict_argv(trained_run, videos, out))
    assert code == 0 and "torn last row" in err, err
    rows = list(csv.DictReader(out.open(newline="")))
    assert [Path(r["path"]).name for r in rows] == ["test.avi", "test.mp4"]


HOLD_LOCK = """
import fcntl, sys, time
with open(sys.argv[1], "a") as handle:
    fcntl.lockf(handle.fileno(), fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(60)
"""


def test_two_batch_runs_into_one_file_do_not_interleave(capsys, trained_run, dataset_root, tmp_path):
    out = tmp_path / "p.csv"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run(capsys, *predict_argv(trained_run, [dataset_root / "videos"], out))
    finally:
        holder.kill()
        holder.wait()
    assert code == 1 and one_line(err) and "another process is writing predictions into" in err
    assert out.read_text() == ""
    argv = [sys.executable, "-m", "actionmoe", *map(str, predict_argv(trained_run, [dataset_root / "videos"], out))]
    runs = [subprocess.Popen(argv, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(process.wait(timeout=300), process.stderr.read()) for process in runs]
    assert any(code == 0 for code, _ in outcomes), outcomes
    assert all(code == 0 or "another process is writing predictions" in err for code, err in outcomes), outcomes
    rows = list(csv.DictReader(out.open(newline="")))
    assert out.read_text().count("path,answer,label_1") == 1
    assert len(rows) == len({r["path"] for r in rows}) == len(list((dataset_root / "videos").rglob("*.avi")))


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted_and_jsonl_stays_raw(
    capsys, trained_run, shared_data, tmp_path, monkeypatch
):
    folder = tmp_path / "footage"
    folder.mkdir()
    names = ["=1+2.avi", "@SUM(A1).avi", "+cmd.avi", "-2.avi"]
    for name in names:
        shutil.copy(shared_data / "videos" / "test.avi", folder / name)
    monkeypatch.chdir(folder)  # a glob inside the folder puts the names first in the cell
    out = tmp_path / "p.csv"
    code, _, err = run(capsys, *predict_argv(trained_run, ["*.avi"], out))
    assert code == 0, err
    cells = [row["path"] for row in csv.DictReader(out.open(newline=""))]
    assert sorted(cells) == sorted("'" + name for name in names)
    assert not [line for line in out.read_text().splitlines()[1:] if line.startswith(("=", "+", "-", "@"))]
    jsonl = tmp_path / "p.jsonl"
    code, _, _ = run(capsys, *predict_argv(trained_run, ["*.avi"], jsonl))
    paths = {json.loads(line)["path"] for line in jsonl.read_text().splitlines()}
    assert code == 0 and paths == set(names)
    from actionmoe.predict.batch import spreadsheet_safe

    for text in ["=x", "+x", "-x", "@x", "\tx", "\rx"]:
        assert spreadsheet_safe(text) == "'" + text
    assert spreadsheet_safe("move_up") == "move_up"


def test_a_csv_rerun_over_quoted_cells_skips_what_is_done(capsys, trained_run, shared_data, tmp_path, monkeypatch):
    shutil.copy(shared_data / "videos" / "test.avi", tmp_path / "=1+2.avi")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "p.csv"
    assert run(capsys, *predict_argv(trained_run, ["=1+2.avi"], out))[0] == 0
    code, _, err = run(capsys, *predict_argv(trained_run, ["=1+2.avi"], out))
    assert code == 0 and "0 videos predicted now, 1 already there" in err


@pytest.mark.parametrize(
    "content, message",
    [
        ("folder", "is a folder"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "not a prediction file"),
        ("{not json\n{}\n", "line 1 is not JSON"),
        ("[1, 2]\n", "line 1 is not a JSON object"),
        ('{"label": "x", "checkpoint_sha256": "x"}\n', 'line 1 has no "path"'),
    ],
)
def test_batch_outputs_that_cannot_be_used_are_one_line(capsys, trained_run, shared_data, tmp_path, content, message):
    out = tmp_path / ("p.csv" if isinstance(content, bytes) else "p.jsonl")
    if content == "folder":
        out.mkdir()
    elif isinstance(content, bytes):
        out.write_bytes(content)
    else:
        out.write_text(content)
    before = out.read_bytes() if out.is_file() else None
    code, _, err = run(capsys, *predict_argv(trained_run, [shared_data / "videos" / "test.avi"], out))
    assert code in (1, 2) and one_line(err) and message in err, err
    assert before is None or out.read_bytes() == before


def test_batch_out_that_cannot_be_written_is_one_line_before_the_model_loads(capsys, shared_data, tmp_path):
    missing_checkpoint = tmp_path / "none.safetensors"  # the output is checked first: its error wins
    for out in (Path("/proc/self/p.csv"), tmp_path / "a_file" / "p.csv"):
        (tmp_path / "a_file").write_text("x")
        code, _, err = run(
            capsys, "predict", shared_data / "videos" / "test.avi", "--checkpoint", missing_checkpoint, "--out", out
        )
        assert code == 1 and one_line(err) and "cannot write" in err and "checkpoint" not in err, err


# --- other output options -------------------------------------------------------------------------------------


def test_demo_out_that_is_a_file_or_a_device_is_one_line(capsys, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out in (a_file, Path("/dev/null")):
        code, _, err = run(capsys, "demo", "--out", out)
        assert code == 2 and one_line(err) and "not a folder" in err
    assert a_file.read_text() == "x" and stat.S_ISCHR(Path("/dev/null").stat().st_mode)


@pytest.mark.parametrize("name", ["..", "."])
def test_an_ablation_variant_name_cannot_leave_its_folder(capsys, name):
    code, _, err = run(capsys, "ablate", "--config", "demo", "--variant", f"{name}=train.epochs=1", "--out", "x")
    assert code == 2 and one_line(err) and "--variant" in err
