"""train.trackers: what TensorBoard and MLflow hold is read back with their own readers; W&B offline writes its run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actionmoe.engine import trackers as trackers_module
from tests.helpers import cli_args, epochs_logged, one_line, run

EPOCH_FIGURES = (
    "loss",
    "train_top1",
    "val_top1",
    "val_loss",
    "lr",
    "expert_fraction/0",
    "router_noise_std",
    "router_flip_rate",
)


@pytest.fixture(scope="module")
def tracked_run(dataset_root, tmp_path_factory) -> Path:
    """Two epochs with TensorBoard and MLflow (local store), then a resume to a third epoch."""
    from actionmoe.cli import main

    out = tmp_path_factory.mktemp("tracked") / "run"
    patch = pytest.MonkeyPatch()
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    common = ['train.trackers=["tensorboard","mlflow"]', "train.batch_size=2"]
    try:
        assert main(cli_args(dataset_root, out, "train.epochs=2", *common)) == 0
        assert main(cli_args(dataset_root, out, "train.epochs=3", *common)) == 0  # resumed: the same tracker runs
    finally:
        patch.undo()
    return out


def mlflow_client(run_dir: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")


def test_mlflow_holds_metrics_jsonl_the_config_the_test_and_the_plots(tracked_run):
    import mlflow

    client = mlflow_client(tracked_run)
    mlflow.set_tracking_uri(f"sqlite:///{tracked_run.resolve() / 'mlflow.db'}")
    try:
        runs = mlflow.search_runs(experiment_names=["actionmoe"])
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == 1  # training, its resume and the test went into one MLflow run
    run_id = runs.loc[0, "run_id"]
    assert run_id == json.loads((tracked_run / "trackers.json").read_text())["mlflow"]
    rows = epochs_logged(tracked_run)
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    for key in EPOCH_FIGURES:
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert [step for step, _ in history] == [row["epoch"] + 1 for row in rows], key
        if key.startswith("expert_fraction"):
            expected = [row["expert_fraction"][0] for row in rows]
        else:
            expected = [row[key] for row in rows]
        assert [value for _, value in history] == pytest.approx(expected), key
    steps = client.get_metric_history(run_id, "step/loss")
    assert len(steps) >= 3 * 2 and len({m.step for m in steps}) == len(steps)  # one per optimizer step
    test = json.loads((tracked_run / "evaluation" / "metrics.json").read_text())
    assert runs.loc[0, "metrics.test/top1"] == pytest.approx(test["video_level"]["top1"])
    params = client.get_run(run_id).data.params
    assert params["train.batch_size"] == "2" and params["data.clip_len"] == "8"
    artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/report.md", "evaluation/metrics.json"} <= artifacts
    assert (tracked_run / "mlruns").is_dir()  # artifacts inside the run folder, not in the working directory


def test_tensorboard_event_files_hold_the_same_numbers(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tracked_run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    rows = epochs_logged(tracked_run)
    for key in ("loss", "val_top1", "lr"):
        logged = sorted((event.step, event.value) for event in events.Scalars(key))
        assert [step for step, _ in logged] == [row["epoch"] + 1 for row in rows], key
        assert [value for _, value in logged] == pytest.approx([row[key] for row in rows], rel=1e-6), key
    assert len(events.Scalars("step/lr")) >= 6
    test = json.loads((tracked_run / "evaluation" / "metrics.json").read_text())
    assert events.Scalars("test/top1")[-1].value == pytest.approx(test["video_level"]["top1"], rel=1e-6)
    assert "plots/confusion_matrix" in events.Tags()["images"]


def test_a_run_without_trackers_writes_none_of_their_files(trained_run):
    assert not any((trained_run / name).exists() for name in ("tensorboard", "mlflow.db", "mlruns", "wandb"))


@pytest.mark.slow
def test_wandb_offline_writes_its_run_folder(dataset_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    code, _, err = run(capsys, *cli_args(dataset_root, out, "train.epochs=1", 'train.trackers=["wandb"]'))
    assert code == 0, err
    run_id = json.loads((out / "trackers.json").read_text())["wandb"]
    folders = sorted((out / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(folders) == 2  # training, then the test (the same W&B run, resumed)
    assert all((folder / f"run-{run_id}.wandb").stat().st_size > 0 for folder in folders)
    assert (folders[-1] / "files" / "confusion_matrix.png").exists()


def test_a_missing_tracker_package_or_an_unknown_tracker_is_one_line_before_any_work(
    dataset_root, tmp_path, capsys, monkeypatch
):
    real = trackers_module.importlib.util.find_spec
    monkeypatch.setattr(
        trackers_module.importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    out = tmp_path / "run"
    code, _, err = run(capsys, *cli_args(dataset_root, out, "train.epochs=1", 'train.trackers=["mlflow","wandb"]'))
    assert code == 2 and one_line(err) and "pip install 'actionmoe[track]'" in err and "wandb" in err, err
    assert not out.exists()
    code, _, err = run(capsys, *cli_args(dataset_root, out, "train.epochs=1", 'train.trackers=["comet"]'))
    assert code == 2 and one_line(err) and "train.trackers" in err and "mlflow" in err, err
    assert not out.exists()
