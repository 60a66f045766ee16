"""Experiment trackers (``train.trackers``): TensorBoard, MLflow and Weights & Biases behind one small protocol.

What a run sends: the config as parameters; per optimizer step ``step/loss`` and ``step/lr``; per
epoch every number of its ``metrics.jsonl`` row (step = the epoch, counted from 1); after the test,
``test/*`` figures and the report's plots as artifacts. A resumed run, and the test after training,
continue the same tracker run: its ids are kept in ``RUN_DIR/trackers.json``.

- TensorBoard: event files in ``RUN_DIR/tensorboard`` (plots as images).
- MLflow: ``MLFLOW_TRACKING_URI`` when set, else a SQLite store in the run folder
  (``RUN_DIR/mlflow.db``, artifacts in ``RUN_DIR/mlruns``); experiment ``MLFLOW_EXPERIMENT_NAME``
  or ``actionmoe``.
- W&B: project ``WANDB_PROJECT`` or ``actionmoe``, files under ``RUN_DIR/wandb``; ``WANDB_MODE=offline``
  writes there without a network, for ``wandb sync`` later.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from actionmoe.errors import UsageError
from actionmoe.files import write_json

log = logging.getLogger(__name__)

# tracker -> (the modules it needs, the extra that installs them); MLflow's SQLite store needs sqlalchemy and alembic
PACKAGES = {
    "tensorboard": (("tensorboard",), "tensorboard"),
    "mlflow": (("mlflow", "sqlalchemy", "alembic"), "track"),
    "wandb": (("wandb",), "track"),
}
IDS_FILE = "trackers.json"
STEP_PREFIX = "step/"  # per optimizer step; everything else is per epoch or final


class Tracker(Protocol):
    def log_params(self, params: dict[str, object]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_artifact(self, path: Path) -> None: ...
    def close(self) -> None: ...


def check_trackers(names: Iterable[str]) -> None:
    """Every named tracker's package is installed, before any work (one line naming the extra if not).

    Raises:
        UsageError: a package is missing.
    """
    for name in names:
        modules, extra = PACKAGES[name]
        missing = [module for module in modules if importlib.util.find_spec(module) is None]
        if missing:
            raise UsageError(
                f"train.trackers has {name}, which needs {', '.join(missing)}: pip install 'actionmoe[{extra}]'"
            )


class Trackers:
    """All of a run's trackers as one (none: every call does nothing)."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def log_params(self, params: dict[str, object]) -> None:
        for tracker in self.trackers:
            tracker.log_params(params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        numbers = {key: float(value) for key, value in metrics.items() if _is_number(value)}
        for tracker in self.trackers:
            tracker.log_metrics(numbers, step)

    def log_artifact(self, path: Path) -> None:
        for tracker in self.trackers:
            tracker.log_artifact(path)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_trackers(names: Iterable[str], run_dir: Path, params: dict[str, object] | None = None) -> Trackers:
    """The trackers of ``run_dir`` (the same tracker runs as before when it has been tracked), params logged."""
    names = list(names)
    check_trackers(names)
    ids_path = run_dir / IDS_FILE
    ids = json.loads(ids_path.read_text()) if ids_path.is_file() else {}
    opened = [_OPENERS[name](run_dir, ids.get(name)) for name in names]
    new_ids = {name: tracker.run_id for name, tracker in zip(names, opened) if getattr(tracker, "run_id", None)}
    if new_ids and new_ids != {key: ids.get(key) for key in new_ids}:
        write_json(ids_path, {**ids, **new_ids})
    trackers = Trackers(opened)
    if params:
        trackers.log_params(params)
    return trackers


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}; lists as text."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple) else value
    return flat


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class TensorBoardTracker:
    def __init__(self, run_dir: Path, run_id: str | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log_params(self, params: dict[str, object]) -> None:
        table = "\n".join(f"| {key} | {value} |" for key, value in params.items())
        self.writer.add_text("config", "| key | value |\n|---|---|\n" + table)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_artifact(self, path: Path) -> None:
        if path.suffix.lower() == ".png":
            from matplotlib.image import imread

            rgb = imread(path)[..., :3]  # [H, W, 3] floats in [0, 1]
            self.writer.add_image(f"plots/{path.stem}", rgb, 0, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class MLflowTracker:
    """One MLflow run through ``MlflowClient`` (no global active run); metrics sent in batches."""

    BATCH = 500  # MLflow takes at most 1,000 metrics per call

    def __init__(self, run_dir: Path, run_id: str | None = None) -> None:
        from mlflow import MlflowClient

        local = "MLFLOW_TRACKING_URI" not in os.environ
        uri = f"sqlite:///{(run_dir / 'mlflow.db').resolve()}" if local else os.environ["MLFLOW_TRACKING_URI"]
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "actionmoe")
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            artifacts = (run_dir / "mlruns").resolve().as_uri() if local else None
            experiment_id = self.client.create_experiment(name, artifact_location=artifacts)
        else:
            experiment_id = experiment.experiment_id
        known = run_id is not None and self._exists(run_id)
        self.run_id = run_id if known else self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        if known:
            self.client.update_run(self.run_id, status="RUNNING")
        self.pending: list = []

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    def log_params(self, params: dict[str, object]) -> None:
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params  # a resumed run keeps its first values
        new = [Param(key, str(value)[:6000]) for key, value in params.items() if key not in logged]
        for start in range(0, len(new), 100):  # at most 100 parameters per call
            self.client.log_batch(self.run_id, params=new[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(key, value, now, step) for key, value in metrics.items()]
        if len(self.pending) >= self.BATCH or not all(key.startswith(STEP_PREFIX) for key in metrics):
            self.flush()

    def flush(self) -> None:
        for start in range(0, len(self.pending), self.BATCH):
            self.client.log_batch(self.run_id, metrics=self.pending[start : start + self.BATCH])
        self.pending = []

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="evaluation")

    def close(self) -> None:
        self.flush()
        self.client.set_terminated(self.run_id)


class WandbTracker:
    """One W&B run, resumed by id; per-step figures on their own x axis (``step``), the rest per ``epoch``."""

    def __init__(self, run_dir: Path, run_id: str | None = None) -> None:
        import wandb

        self.run_id = run_id or uuid.uuid4().hex[:12]
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "actionmoe"),
            name=run_dir.name,
            id=self.run_id,
            resume="allow",
            dir=str(run_dir),
            settings=wandb.Settings(console="off", quiet=True),
        )
        self.run.define_metric("step")
        self.run.define_metric(f"{STEP_PREFIX}*", step_metric="step")
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")

    def log_params(self, params: dict[str, object]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        axis = "step" if all(key.startswith(STEP_PREFIX) for key in metrics) else "epoch"
        self.run.log({**metrics, axis: step})

    def log_artifact(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self) -> None:
        self.run.finish()


_OPENERS = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}
