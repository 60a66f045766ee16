"""The whole jobs that the command line runs, as library calls with the same behaviour.

run_training(config)   train one split (resuming), fit the temperature on validation, test the best checkpoint
run_demo(config, out)  synthesise archives -> acquire them like HMDB51 -> extract -> cache -> train -> test
acquire_dataset(...)   the notebook's data step: synthetic, a copy already on disk, or a download
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from actionmoe.acquire.hmdb51 import acquire_hmdb51, build_source, hmdb51_is_complete, read_checksum_file
from actionmoe.acquire.local import adopt_extracted_tree, find_local_hmdb51
from actionmoe.acquire.synthetic import write_synthetic_hmdb51
from actionmoe.config import Config, save_config
from actionmoe.data.builders import build_splits, run_cache_build
from actionmoe.data.splits import summarize
from actionmoe.engine.distributed import is_main_process
from actionmoe.engine.run import train_model
from actionmoe.engine.trackers import open_trackers
from actionmoe.errors import DatasetError
from actionmoe.evaluation.calibration import calibrate_checkpoint
from actionmoe.evaluation.evaluate import EvaluationOptions
from actionmoe.evaluation.reports import evaluate_into, evaluation_is_complete
from actionmoe.files import check_output_folder
from actionmoe.runtime.checkpoint import load_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingOutcome:
    run_dir: Path
    trained: bool  # False: the folder already held a finished run
    message: str
    test_metrics: dict | None  # the best checkpoint on the test split (None on ranks other than 0)

    @property
    def evaluation_dir(self) -> Path:
        return self.run_dir / "evaluation"


def run_training(config: Config, out: Path | None = None, force: bool = False) -> TrainingOutcome:
    """Train ``config`` (resuming from ``out/last.safetensors`` unless ``force``), fit the best checkpoint's
    temperature on the validation split (``evaluation.calibration``), then test it.

    The test evaluation is redone when this call trained, and completed when an earlier one was
    interrupted before its evaluation was whole.
    """
    result = train_model(config, out, force)
    if not is_main_process():
        return TrainingOutcome(result.run_dir, result.trained, result.message, None)
    evaluation, best = result.run_dir / "evaluation", result.run_dir / "best.safetensors"
    if result.trained or not evaluation_is_complete(evaluation):
        # the dataset this call trained on: a resumed run's best checkpoint may record where it used to be
        options = EvaluationOptions(
            root=config.data.root, device=config.train.device, num_workers=config.data.num_workers
        )
        if result.trained or "calibration" not in load_checkpoint(best).meta:
            calibrate_checkpoint(best, config.data.root, config.train.device, config.data.num_workers)
        metrics = evaluate_into(best, evaluation, options)
        track_test(config.train.trackers, result.run_dir, metrics, evaluation)
    else:
        metrics = json.loads((evaluation / "metrics.json").read_text())
    return TrainingOutcome(result.run_dir, result.trained, result.message, metrics)


def track_test(trackers: tuple[str, ...], run_dir: Path, metrics: dict, evaluation: Path) -> None:
    """The test figures (``test/*``, at the best checkpoint's epoch) and the report's files, to the run's trackers."""
    if not trackers:
        return
    video = metrics["video_level"]
    figures = {f"test/{key}": video[key] for key in ("top1", "top5", "mean_class_accuracy") if key in video}
    figures["test/clip_top1"] = metrics["clip_level"]["top1"]
    with open_trackers(trackers, run_dir) as opened:
        opened.log_metrics(figures, metrics["checkpoint"].get("epoch") or 0)
        for path in sorted(evaluation.glob("*.png")) + [evaluation / "report.md", evaluation / "metrics.json"]:
            opened.log_artifact(path)


@dataclass(frozen=True)
class DemoResult:
    out: Path
    dataset_root: Path
    summary: dict  # data.splits.summarize of the demo split
    training: TrainingOutcome


def run_demo(config: Config, out: Path, force: bool = False) -> DemoResult:
    """The offline demo: the same path as a real HMDB51 run, on the built-in synthetic dataset."""
    check_output_folder(out)
    root = acquire_demo_dataset(config, out)
    config = replace(config, data=replace(config.data, root=str(root)))
    save_config(config, out / "config.json")
    summary = summarize(build_splits(config.data))
    cache, report = run_cache_build(config.data)
    log.info("clip cache %s: %d videos built now, %d before", cache.folder, report.built, report.already)
    return DemoResult(out, root, summary, run_training(config, out / "run", force))


def acquire_demo_dataset(config: Config, out: Path) -> Path:
    """Write the synthetic archives (once) and acquire them exactly as real HMDB51 archives."""
    archives = out / "archives"
    if not (archives / "checksums.md5").is_file():
        log.info("writing the synthetic motion dataset to %s", archives)
        write_synthetic_hmdb51(archives, config.synth)
    source = build_source(config.download, read_checksum_file(archives / "checksums.md5"))
    result = acquire_hmdb51(out / "hmdb51", source, archives)
    log.info(result.message)
    return result.root


@dataclass(frozen=True)
class DatasetOutcome:
    config: Config  # the given config with data.root set to the dataset
    message: str
    summary: dict  # data.splits.summarize of the config's split


def acquire_dataset(config: Config, source: str, root: Path, search: tuple[Path, ...] = ()) -> DatasetOutcome:
    """Put a dataset at ``root`` and return the config that reads it; no work when it is already there.

    Args:
        source: ``synthetic`` (the config's offline motion dataset), ``auto`` (a complete ``root``,
            else an HMDB51 copy under one of ``search``, else a download from the config's mirrors)
            or a folder holding the two RARs or an extracted tree.
        root: the dataset folder to create (its parent for ``synthetic``'s archives too).
        search: folders to look for an attached copy in (/kaggle/input on Kaggle).

    Raises:
        DatasetError: ``source`` is a folder with no HMDB51 copy in it; any acquisition error.
    """
    if source == "synthetic":
        data_root = acquire_demo_dataset(config, root)
        message = f"the synthetic motion dataset of {config.synth.classes} classes at {data_root}"
    else:
        data_root, message = root, acquire_hmdb51_copy(config, source, root, search)
    config = replace(config, data=replace(config.data, root=str(data_root)))
    return DatasetOutcome(config, message, summarize(build_splits(config.data)))


def acquire_hmdb51_copy(config: Config, source: str, root: Path, search: tuple[Path, ...] = ()) -> str:
    """HMDB51 at ``root`` from ``source`` (``auto`` or a folder, as in ``acquire_dataset``); returns what was done."""
    if source == "auto" and hmdb51_is_complete(root):
        return f"HMDB51 already at {root}"
    folders = search if source == "auto" else (Path(source),)
    copy = next((found for folder in folders if (found := find_local_hmdb51(folder)) is not None), None)
    if copy is None and source != "auto":
        raise DatasetError(f"no HMDB51 archives or extracted class folders found under {source}")
    if copy is None:
        result = acquire_hmdb51(root, build_source(config.download))
        return result.message
    log.info("found %s", copy.describe())
    if copy.kind == "archives":
        result = acquire_hmdb51(root, build_source(config.download), copy.path)
    else:
        result = adopt_extracted_tree(root, copy)
    return f"{result.message} (from {copy.describe()})"
