"""Saved state a user or a crash can damage: checkpoint metadata, run folders, weights files, leftovers.

Reliability round 3 (docs/reliability.md): each case was a traceback or a misleading message.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from actionmoe import files
from actionmoe.runtime.checkpoint import load_checkpoint, save_checkpoint
from tests.helpers import cli_args, epochs_logged, one_line, run


def edited(trained_run: Path, tmp_path: Path, edit) -> Path:
    """The trained checkpoint with ``edit`` applied, written as raw safetensors (no field is set for us)."""
    from safetensors.torch import save_file

    checkpoint = load_checkpoint(trained_run / "best.safetensors")
    edit(checkpoint)
    path = tmp_path / "edited.safetensors"
    tensors = {f"model.{name}": tensor.contiguous() for name, tensor in checkpoint.model.items()}
    save_file(tensors, str(path), metadata={"actionmoe": json.dumps(checkpoint.meta)})
    return path


def scale_weights(checkpoint) -> None:
    for name, tensor in checkpoint.model.items():
        if tensor.is_floating_point() and name.endswith("weight"):
            checkpoint.model[name] = tensor * 1e30


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.meta.update(format_version="abc"), "format version"),
        (lambda c: c.meta.update(format_version=None), "format version"),
        (lambda c: c.meta.update(config=[1, 2]), "config"),
        (lambda c: c.meta["config"]["data"].update(resize=[20000, 20000]), "data.resize"),
        (lambda c: c.meta["config"]["data"].update(test_clips=100000), "data.test_clips"),
        (scale_weights, "not finite"),
    ],
)
def test_damaged_checkpoint_metadata_is_one_line(capsys, trained_run, shared_data, tmp_path, edit, message):
    checkpoint = edited(trained_run, tmp_path, edit)
    code, out, err = run(capsys, "predict", shared_data / "videos" / "test.avi", "--checkpoint", checkpoint, "--json")
    assert code == 1 and one_line(err) and message in err and out == "", err


def test_export_of_a_checkpoint_without_its_preprocessing_record_uses_its_config(capsys, trained_run, tmp_path):
    checkpoint = edited(trained_run, tmp_path, lambda c: c.meta.pop("preprocessing"))
    code, _, err = run(capsys, "export", "--checkpoint", checkpoint, "--out", tmp_path / "m.pt2")
    assert code == 0, err
    expected = load_checkpoint(trained_run / "best.safetensors").meta["preprocessing"]
    assert json.loads((tmp_path / "m.pt2.json").read_text())["preprocessing"] == expected


def without_file_permission_override() -> list[str]:
    """A command prefix under which even root obeys file modes (root drops the capabilities that bypass them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to make a file unreadable to root")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_an_unreadable_checkpoint_is_called_unreadable_not_damaged(trained_run, shared_data, tmp_path):
    checkpoint = tmp_path / "best.safetensors"
    shutil.copy(trained_run / "best.safetensors", checkpoint)
    checkpoint.chmod(0)
    argv = ["predict", str(shared_data / "videos" / "test.avi"), "--checkpoint", str(checkpoint)]
    result = subprocess.run(
        [*without_file_permission_override(), sys.executable, "-m", "actionmoe", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    err = result.stderr[result.stderr.find("actionmoe: error") :]
    assert result.returncode == 1 and one_line(err), result.stderr[-2000:]
    assert "cannot read" in err and "permission" in err.lower() and "damaged" not in err


def test_a_pickled_weights_file_is_refused_in_one_line(capsys, dataset_root, tmp_path):
    weights = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1), "note": Path("x")}, weights)
    code, _, err = run(capsys, *cli_args(dataset_root, tmp_path / "run", "train.epochs=1", f"model.weights={weights}"))
    assert code == 1 and one_line(err) and "pickled" in err and "weights_only" not in err, err


def test_best_copied_in_as_last_is_one_line(capsys, trained_run, dataset_root, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(trained_run / "best.safetensors", run_dir / "last.safetensors")
    code, _, err = run(capsys, *cli_args(dataset_root, run_dir, "train.epochs=3"))
    assert code == 1 and one_line(err) and "no training state" in err and "--force" in err, err


def test_damaged_rows_of_metrics_jsonl_are_dropped_with_a_warning(capsys, trained_run, dataset_root, tmp_path, caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "metrics.jsonl").write_text("\n".join([rows[0], "{damaged", "[1, 2]", *rows[1:]]) + "\n")
    code, _, err = run(capsys, *cli_args(dataset_root, run_dir, "train.epochs=3"))
    assert code == 0, err
    assert "line 2 is not JSON" in caplog.text and "line 3 is not a JSON object" in caplog.text
    kept = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in kept] == [0, 1, 2]
    from actionmoe.evaluation.plots import plot_training_curves

    (run_dir / "metrics.jsonl").write_text(rows[0] + "\n[1]\n{bad\n" + rows[1] + "\n")
    assert plot_training_curves(run_dir / "metrics.jsonl", tmp_path / "curves.png")


def test_a_missing_dataset_leaves_no_run_folder_or_lock(capsys, tmp_path):
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, *cli_args(tmp_path / "no-dataset", run_dir, "train.epochs=1"))
    assert code == 1 and one_line(err)
    assert not run_dir.exists()


SAVE_FOREVER = """
import sys, torch
from pathlib import Path
from actionmoe.runtime.checkpoint import Checkpoint, save_checkpoint
checkpoint = Checkpoint({"w": torch.randn(40_000_000)}, {"classes": ["a", "b"]})
print("saving", flush=True)
while True:
    save_checkpoint(Path(sys.argv[1]) / "last.safetensors", checkpoint)
"""


def test_a_checkpoint_save_killed_midway_leaves_nothing_the_next_start_cannot_remove(tmp_path):
    from actionmoe.files import remove_stale_temporaries

    child = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "saving"
    time.sleep(2.5)  # several saves of 160 MB: the kill lands while one is being written
    child.send_signal(signal.SIGKILL)
    child.wait()
    remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["last.safetensors"])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe[\x00d\x00a\x00t\x00a\x00]\x00", "not UTF-8 text"),
        (b"[data]\nroot = '\xe9t\xe9'\n", "not UTF-8 text"),
    ],
)
def test_a_config_file_that_is_not_utf8_is_one_line(capsys, tmp_path, content, message):
    config = tmp_path / "c.toml"
    config.write_bytes(content)
    code, _, err = run(capsys, "config", "show", "--config", config)
    assert code == 2 and one_line(err) and message in err


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=inf", "finite"),
        ("data.mean=[nan,0,0]", "finite"),
        ("download.timeout_s=inf", "finite"),
        ("download.backoff_s=1e300", "download.backoff_s"),
        ('download.mirrors=["not a url"]', "http"),
    ],
)
def test_non_finite_or_absurd_config_values_are_one_line(capsys, override, message):
    code, _, err = run(capsys, "config", "show", "--set", override)
    assert code == 2 and one_line(err) and message in err


def test_a_mirror_that_is_not_a_url_is_a_usage_error(capsys, tmp_path):
    code, _, err = run(capsys, "data", "download", "hmdb51", "--root", tmp_path / "r", "--mirror", "not a url")
    assert code == 2 and one_line(err) and "http" in err


def test_a_quoted_text_override_loses_its_quotes(capsys):
    code, out, _ = run(capsys, "config", "show", "--set", 'data.root="quoted"', "--set", "data.cache='c'")
    assert code == 0 and 'root = "quoted"' in out and 'cache = "c"' in out


@pytest.fixture
def finished_run(trained_run, tmp_path) -> Path:
    """A copy of the session's finished two-epoch run (no training of its own)."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def test_a_run_killed_between_last_and_best_is_not_broken(finished_run, dataset_root, capsys):
    (finished_run / "best.safetensors").unlink()  # what a kill between the two saves used to leave
    capsys.readouterr()
    code, out, err = run(capsys, *cli_args(dataset_root, finished_run, "train.epochs=2"))
    assert code == 0, err
    assert "finished run" in out and load_checkpoint(finished_run / "best.safetensors").meta["epoch"] == 1


def test_a_missing_best_of_an_unfinished_run_is_written_again(finished_run, dataset_root, capsys):
    best = load_checkpoint(finished_run / "best.safetensors")
    last = load_checkpoint(finished_run / "last.safetensors", training_state=True)
    last.meta["best_epoch"] = -5  # the best epoch was an earlier one whose file is gone
    save_checkpoint(finished_run / "last.safetensors", last)
    (finished_run / "best.safetensors").unlink()
    code, _, err = run(capsys, *cli_args(dataset_root, finished_run, "train.epochs=3"))
    assert code == 0, err
    assert load_checkpoint(finished_run / "best.safetensors").meta["epoch"] == 2
    assert best.meta["epoch"] in (0, 1)


def test_an_evaluation_cut_short_is_completed_by_the_rerun(finished_run, dataset_root, capsys):
    evaluation = finished_run / "evaluation"
    for path in evaluation.iterdir():
        if path.name != "metrics.json":  # a kill after metrics.json, before the report and plots
            path.unlink()
    code, _, err = run(capsys, *cli_args(dataset_root, finished_run, "train.epochs=2"))
    assert code == 0, err
    assert {"report.md", "confusion_matrix.png", "metrics.json"} <= {p.name for p in evaluation.iterdir()}
    assert not [p for p in finished_run.iterdir() if ".partial" in p.name]


def test_stray_temporary_checkpoints_are_removed_at_the_next_start(finished_run, dataset_root, capsys):
    stray = finished_run / ".last.safetensors.tmp-999999999"
    stray.write_bytes(b"half a checkpoint")
    assert run(capsys, *cli_args(dataset_root, finished_run, "train.epochs=2"))[0] == 0
    assert not stray.exists()


@pytest.mark.slow
def test_a_second_training_into_the_same_folder_is_refused(finished_run, dataset_root, capsys):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from actionmoe.files import exclusive_lock\n"
            "with exclusive_lock(Path(sys.argv[1]), 'x'):\n    print('held', flush=True); time.sleep(60)",
            str(finished_run / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (finished_run / "metrics.jsonl").read_text()
        code, _, err = run(capsys, *cli_args(dataset_root, finished_run, "train.epochs=3"))
        assert code == 1 and one_line(err) and f"process {holder.pid} is already training into" in err
        assert (finished_run / "metrics.jsonl").read_text() == before
    finally:
        holder.kill()
        holder.wait()
    assert run(capsys, *cli_args(dataset_root, finished_run, "train.epochs=3"))[0] == 0
    assert [row["epoch"] for row in epochs_logged(finished_run)] == [0, 1, 2]


def test_disk_full_at_the_first_checkpoint_is_one_line(capsys, dataset_root, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full)
    code, _, err = run(capsys, *cli_args(dataset_root, tmp_path / "run", "train.epochs=1"))
    assert code == 1 and one_line(err) and "No space left on device" in err


def test_a_run_without_its_last_checkpoint_is_not_overwritten(finished_run, dataset_root, capsys):
    """last.safetensors deleted to save space: rerunning train must not start over on top of best."""
    (finished_run / "last.safetensors").unlink()
    best = (finished_run / "best.safetensors").read_bytes()
    code, _, err = run(capsys, *cli_args(dataset_root, finished_run, "train.epochs=2"))
    assert code == 1 and one_line(err) and "--force" in err and "last.safetensors" in err
    assert (finished_run / "best.safetensors").read_bytes() == best
