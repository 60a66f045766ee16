"""Training end to end on the tiny synthetic dataset: learning, resume after SIGKILL, torchrun, bad input."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from actionmoe.acquire.synthetic import write_synthetic_hmdb51
from actionmoe.cli import main
from actionmoe.config import SynthConfig
from actionmoe.runtime.checkpoint import load_checkpoint
from actionmoe.workflows import run_training
from tests.helpers import cli_args, epochs_logged, extract_argv, tiny_config


def model_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.safetensors").model


def test_loss_falls_and_accuracy_beats_chance(easy_run):
    rows = epochs_logged(easy_run)
    assert len(rows) == 12
    first, last = [r["task_loss"] for r in rows[:2]], [r["task_loss"] for r in rows[-2:]]
    assert sum(last) < 0.75 * sum(first)
    assert max(r["train_top1"] for r in rows[-3:]) >= 0.7  # chance is 1/3
    assert set(rows[0]) >= {"loss", "aux_loss", "lr", "clips_per_s", "expert_fraction", "val_top1", "val_top5"}
    assert len(rows[0]["expert_fraction"]) == 4 and abs(sum(rows[0]["expert_fraction"]) - 1) < 1e-5
    meta = load_checkpoint(easy_run / "best.safetensors").meta
    assert meta["classes"] == ["move_left", "move_right", "move_up"] and meta["preprocessing"]["crop_size"] == 32


def test_finished_run_is_not_retrained_without_force(dataset_root, tmp_path, capsys):
    args = cli_args(dataset_root, tmp_path / "run", "train.epochs=1")
    assert main(args) == 0
    assert "test split 1 (9 videos, views 1x1): top-1" in capsys.readouterr().out  # the best model is tested
    assert (tmp_path / "run" / "evaluation" / "report.md").exists()
    before = (tmp_path / "run" / "last.safetensors").stat().st_mtime_ns
    assert main(args) == 0
    assert "holds a finished run" in capsys.readouterr().out
    assert (tmp_path / "run" / "last.safetensors").stat().st_mtime_ns == before
    assert main([*args, "--force"]) == 0
    assert (tmp_path / "run" / "last.safetensors").stat().st_mtime_ns != before
    assert len(epochs_logged(tmp_path / "run")) == 1


def run_cli(args: list[str], env_extra: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    """The CLI in a child process; its output in a pipe, or in ``log`` for a child nobody reads while it runs."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    command = [sys.executable, "-m", "actionmoe", *args]
    if log is None:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


# Every random augmentation of the recipe at once, the device-side crops and the weight average.
RECIPE = [
    "data.augment=randaugment",
    "data.crop_scale=[0.4,1.0]",
    "data.augment_on_device=true",
    "train.mixup_alpha=0.8",
    "train.cutmix_alpha=1.0",
    "train.label_smoothing=0.1",
    "train.ema_decay=0.9",
]


@pytest.mark.slow
def test_sigkill_during_epoch_2_resumes_to_identical_weights(dataset_root, tmp_path):
    # with every random part of the recipe and the weight average: the plain run's state is a subset of this one's
    common = ["train.epochs=3", "train.batch_size=2", "data.num_workers=1", *RECIPE]
    # the uninterrupted reference trains beside the killed one (one thread each, on two cores)
    reference = run_cli(cli_args(dataset_root, tmp_path / "straight", *common), log=tmp_path / "straight.log")
    killed = run_cli(cli_args(dataset_root, tmp_path / "killed", *common))
    deadline = time.time() + 300
    while len(epochs_logged(tmp_path / "killed")) < 1 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # into epoch 2 (about ten steps of ~0.15 s here)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert load_checkpoint(tmp_path / "killed" / "last.safetensors").meta["epoch"] == 0
    assert len(epochs_logged(tmp_path / "killed")) == 1

    resumed = run_cli(cli_args(dataset_root, tmp_path / "killed", *common))
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
    assert reference.wait(timeout=600) == 0, (tmp_path / "straight.log").read_text()
    assert [r["epoch"] for r in epochs_logged(tmp_path / "killed")] == [0, 1, 2]
    expected, actual = model_state(tmp_path / "straight"), model_state(tmp_path / "killed")
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    straight = load_checkpoint(tmp_path / "straight" / "last.safetensors", training_state=True)
    killed = load_checkpoint(tmp_path / "killed" / "last.safetensors", training_state=True)
    assert straight.ema and straight.ema.keys() == killed.ema.keys()
    assert all(torch.equal(straight.ema[k], killed.ema[k]) for k in straight.ema)
    # train.ema_decay: an average of the weights, and the best checkpoint holds it and says so
    averaged = {k.removeprefix("module."): v for k, v in straight.ema.items() if k.startswith("module.")}
    raw = straight.model
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw if raw[k].is_floating_point())
    best = load_checkpoint(tmp_path / "straight" / "best.safetensors")
    assert best.meta.get("ema") is True and best.model.keys() == raw.keys()


@pytest.mark.slow
def test_two_process_torchrun_matches_one_process(dataset_root, tmp_path):
    exact = [
        "train.epochs=2",
        "train.freeze_bn=true",
        "model.feature_dropout=0.0",
        "model.expert_dropout=0.0",
        "model.noisy_gating=false",
        "train.optimizer=sgd",
        "train.lr=0.01",
    ]
    single = run_cli(cli_args(dataset_root, tmp_path / "single", *exact, "train.batch_size=4"))
    assert single.wait(timeout=600) == 0, single.stdout.read()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "actionmoe",
        *cli_args(dataset_root, tmp_path / "ddp", *exact, "train.batch_size=2"),
    ]
    ddp = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    assert ddp.stdout.count("run folder:") == 1  # only rank 0 reports
    assert [r["epoch"] for r in epochs_logged(tmp_path / "ddp")] == [0, 1]
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(
        p.name for p in (tmp_path / "single").iterdir()
    )
    expected, actual = model_state(tmp_path / "single"), model_state(tmp_path / "ddp")
    worst = max((expected[k].float() - actual[k].float()).abs().max().item() for k in expected)
    assert worst < 1e-4  # float summation order differs between one and two processes
    single_rows, ddp_rows = epochs_logged(tmp_path / "single"), epochs_logged(tmp_path / "ddp")
    assert [r["loss"] for r in ddp_rows] == pytest.approx([r["loss"] for r in single_rows], rel=1e-4)
    assert [r["val_videos"] for r in ddp_rows] == [r["val_videos"] for r in single_rows]


def test_corrupt_checkpoint_is_an_error_not_a_restart(dataset_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "last.safetensors").write_bytes(b"not a checkpoint")
    assert main(cli_args(dataset_root, run_dir, "train.epochs=1")) == 1
    err = capsys.readouterr().err
    assert "damaged or not a safetensors file" in err and "pass --force" in err and err.count("\n") == 1
    assert (run_dir / "last.safetensors").read_bytes() == b"not a checkpoint"
    assert not (run_dir / "best.safetensors").exists()


def test_checkpoint_from_another_class_list_is_refused(dataset_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(cli_args(dataset_root, run_dir, "train.epochs=1")) == 0
    other = tmp_path / "other"
    write_synthetic_hmdb51(tmp_path / "arch", SynthConfig(classes=4, videos_per_class=4, frames=8, width=48, height=40))
    assert main(extract_argv(other, tmp_path / "arch")) == 0
    before = (run_dir / "last.safetensors").read_bytes()
    capsys.readouterr()
    assert main(cli_args(other, run_dir, "train.epochs=2")) == 1
    assert "was trained on 3 classes" in capsys.readouterr().err
    assert (run_dir / "last.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "train.nope=1"], "unknown config key train.nope"),
        (["--split", "4"], "data.split must be 1, 2 or 3"),
        (["--set", "train.epochs=0"], "train.epochs must be at least 1"),
    ],
)
def test_bad_arguments_are_one_line_errors(dataset_root, tmp_path, capsys, extra, message):
    assert main([*cli_args(dataset_root, tmp_path / "run"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_unwritable_output_folder(dataset_root, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(cli_args(dataset_root, blocker / "run", "train.epochs=1")) == 1
    assert "cannot write to" in capsys.readouterr().err


def test_no_decodable_training_clip(dataset_root, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(dataset_root, broken)
    for video in (broken / "videos").rglob("*.avi"):
        video.write_bytes(b"garbage")
    assert main(cli_args(broken, tmp_path / "run", "train.epochs=1")) == 1
    err = capsys.readouterr().err
    assert "no training clip could be decoded" in err and "actionmoe data scan" in err
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_device_side_augmentation_with_accumulation_trains(dataset_root, tmp_path):
    config = tiny_config(
        dataset_root,
        "train.epochs=1",
        "train.accumulate=2",
        "train.batch_size=2",
        "data.augment_on_device=true",
        "data.flip=true",
    )
    run_training(config, tmp_path / "run")
    assert len(epochs_logged(tmp_path / "run")) == 1
