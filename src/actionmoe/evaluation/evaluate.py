"""Evaluate a checkpoint on a test split: multi-view inference, metrics, timing, routing."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from actionmoe.data.builders import build_cache, build_dataset, build_splits
from actionmoe.data.dataset import build_loader
from actionmoe.data.transforms import Preprocessing
from actionmoe.errors import CheckpointError, DatasetError, UsageError
from actionmoe.evaluation.mechanisms import capture_head, direction_tests, routing_effect, twin_indices
from actionmoe.evaluation.metrics import (
    aggregate_views,
    calibration,
    classification_metrics,
    risk_coverage,
    routing_health,
    scaled_video_probs,
    topk_accuracy,
)
from actionmoe.files import read_jsonl
from actionmoe.runtime.device import inference_precision, pick_device, synchronize
from actionmoe.runtime.restore import RestoredModel, restore_model
from actionmoe.runtime.views import predict_views

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationOptions:
    """How to evaluate a checkpoint; every field defaults to what the checkpoint itself records."""

    split: int | None = None  # None: the checkpoint's split
    views: tuple[int, int] | None = None  # (clips, crops); None: the checkpoint's test views
    root: str | None = None  # dataset root; None: the checkpoint's
    device: str = "auto"
    batch_size: int = 4
    num_workers: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_workers < 0:
            raise UsageError(
                f"--batch-size must be at least 1 and --workers 0 or more, got {self.batch_size} and {self.num_workers}"
            )
        if self.split is not None and self.split not in (1, 2, 3):
            raise UsageError(f"--split must be 1, 2 or 3, got {self.split}")


@dataclass(frozen=True)
class Predictions:
    view_probs: np.ndarray  # [N, V, C] softmax per view
    labels: np.ndarray  # [N]
    gates: np.ndarray | None  # [N, E] mean gate weights over views
    router_logits: np.ndarray | None  # [N, E] router logits centred over experts, mean over views
    batch_seconds: list[float]  # model time per batch (first batch = warm-up)
    batch_views: list[int]  # views per batch
    skipped: dict[str, str]
    head_features: np.ndarray | None = None  # [N, V, D] the MoE head's input per view (routing effect)
    view_gates: np.ndarray | None = None  # [N, V, E] the router's gates per view
    reversed_probs: np.ndarray | None = None  # [N, C] video probabilities of the clips played backwards
    view_logits: np.ndarray | None = None  # [N, V, C] before the temperature


@dataclass(frozen=True)
class Evaluation:
    metrics: dict  # JSON-able
    confusion: np.ndarray  # [C, C]
    predictions: Predictions
    classes: tuple[str, ...]
    restored: RestoredModel


def evaluate_checkpoint(checkpoint: Path, options: EvaluationOptions = EvaluationOptions()) -> Evaluation:
    device = pick_device(options.device)
    restored = restore_model(checkpoint, device)
    data, loader = subset_loader(restored, options, "test")
    precision = inference_precision(restored.config.train.precision, device)
    reverse = bool(twin_indices(restored.classes))  # the time-reversal test, where classes have twins
    predictions = predict_test_views(restored, loader, device, precision, Preprocessing.from_config(data), reverse)
    if len(predictions.labels) == 0:
        raise DatasetError(f"no test video of split {data.split} could be decoded; run `actionmoe data scan`")
    metrics, matrix = summarize(predictions, restored, data, device, (data.test_clips, data.test_crops))
    return Evaluation(metrics, matrix, predictions, restored.classes, restored)


def subset_loader(restored: RestoredModel, options: EvaluationOptions, subset: str):
    """The data config and a loader of ``subset`` (``test`` or ``val``) with the checkpoint's test views.

    Raises:
        CheckpointError: the dataset's classes are not the checkpoint's.
        DatasetError: an empty test set.
    """
    data = restored.config.data
    clips, crops = options.views or (data.test_clips, data.test_crops)
    data = replace(
        data,
        split=options.split or data.split,
        root=options.root or data.root,
        test_clips=clips,
        test_crops=crops,
        num_workers=options.num_workers,
        on_missing="skip",
    )
    splits = build_splits(data)
    if tuple(splits.classes) != restored.classes:
        raise CheckpointError(
            f"{restored.path} knows {len(restored.classes)} classes ({', '.join(restored.classes[:3])}, ...) but the "
            f"dataset at {data.root} has {len(splits.classes)} ({', '.join(splits.classes[:3])}, ...)"
        )
    if subset == "test" and not splits.test:
        raise DatasetError(f"the test set of split {data.split} at {data.root} is empty")
    if subset == "val" and splits.val_is_test:
        raise DatasetError("data.val_on_test: this run's validation videos are its test videos")
    if subset == "val" and len(splits.val) < IN_PROCESS_BELOW:
        data = replace(data, num_workers=0)  # starting worker processes costs more than decoding a few videos
    dataset = build_dataset(data, splits, subset, build_cache(data))
    return data, build_loader(dataset, options.batch_size, False, num_workers=data.num_workers)


IN_PROCESS_BELOW = 64  # a validation set this small is decoded in the calling process


def subset_logits(checkpoint: Path, options: EvaluationOptions, subset: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-view logits [N, V, C] (before any temperature) and labels [N] of a subset, with the test views.

    Raises:
        DatasetError: ``val`` asked of a run whose validation videos are its test videos (``data.val_on_test``).
    """
    device = pick_device(options.device)
    restored = restore_model(checkpoint, device)
    data, loader = subset_loader(restored, options, subset)
    if len(loader.loader.dataset) == 0:
        return np.zeros((0, 1, len(restored.classes))), np.zeros(0, dtype=np.int64)
    precision = inference_precision(restored.config.train.precision, device)
    predictions = predict_test_views(restored, loader, device, precision, Preprocessing.from_config(data))
    return predictions.view_logits, predictions.labels


def predict_test_views(
    restored: RestoredModel,
    loader,
    device: torch.device,
    precision: str,
    preprocessing: Preprocessing,
    reverse: bool = False,
) -> Predictions:
    """Per-view probabilities, labels, gates and model time for every video the loader yields.

    Also keeps the MoE head's per-view input and gates (for ``routing_effect``) and, with ``reverse``,
    the predictions for every clip played backwards (untimed).
    """
    probs, labels, gates, router_logits, seconds, counts, logits = [], [], [], [], [], [], []
    features, view_gates, reversed_probs = [], [], []
    channels_last = restored.config.train.channels_last
    for batch in tqdm(loader, desc="testing", unit="batch", leave=False, disable=None):
        clips = preprocessing.on_device(batch["clip"], device, False)  # [B, V, C, T, H, W]
        synchronize(device)
        started = time.perf_counter()
        with capture_head(restored.model) as captured:
            out = predict_views(restored.model, clips, precision, channels_last, restored.temperature)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
        batch_size, views = clips.shape[:2]
        counts.append(batch_size * views)
        probs.append(out.probs.cpu().numpy())
        logits.append(out.logits.cpu().numpy())
        labels.append(batch["label"].numpy())
        if out.gates is not None:
            gates.append(out.gates.cpu().numpy())
            router_logits.append(out.router_logits.cpu().numpy())
        if captured:
            features.append(captured[0][0].view(batch_size, views, -1).numpy())  # [B, V, D]
            view_gates.append(captured[0][1].view(batch_size, views, -1).numpy())  # [B, V, E]
        if reverse:
            backwards = predict_views(  # frames reversed
                restored.model, clips.flip(-3), precision, channels_last, restored.temperature
            )
            reversed_probs.append(backwards.video_probs().cpu().numpy())
    concat = lambda parts: np.concatenate(parts) if parts else None
    return Predictions(
        concat(probs) if probs else np.zeros((0, 1, len(restored.classes))),
        concat(labels) if labels else np.zeros(0, dtype=np.int64),
        concat(gates),
        concat(router_logits),
        seconds,
        counts,
        dict(loader.failures),
        concat(features),
        concat(view_gates),
        concat(reversed_probs),
        concat(logits) if logits else np.zeros((0, 1, len(restored.classes))),
    )


def summarize(
    predictions: Predictions, restored: RestoredModel, data, device: torch.device, views: tuple[int, int]
) -> tuple[dict, np.ndarray]:
    video_scores = aggregate_views(predictions.view_probs)  # [N, C]
    video = classification_metrics(video_scores, predictions.labels, list(restored.classes))
    counts = restored.meta.get("train_class_counts")  # runs since 2026-12-02 record them
    if isinstance(counts, list) and len(counts) == len(restored.classes):
        for name, count in zip(restored.classes, counts):
            video["per_class"][name]["train_videos"] = count
    matrix = video.pop("confusion")
    video["calibration"] = calibration(video_scores, predictions.labels)
    video["risk_coverage"] = risk_coverage(video_scores, predictions.labels)
    num_views = predictions.view_probs.shape[1]
    clip_scores = predictions.view_probs.reshape(-1, predictions.view_probs.shape[2])
    clip_labels = np.repeat(predictions.labels, num_views)
    metrics = {
        "protocol": {
            "dataset": data.dataset,
            "split": data.split,
            "subset": "test",
            "views": f"{views[0]}x{views[1]}",
            "clips_per_video": views[0],
            "crops_per_clip": views[1],
            "frames_per_clip": data.clip_len,
            "resize": list(data.resize),
            "crop_size": data.crop_size,
            "aggregation": "softmax probabilities averaged over a video's views",
        },
        "checkpoint": checkpoint_summary(restored),
        "device": str(device),
        "videos": int(len(predictions.labels)),
        "skipped_videos": predictions.skipped,
        "video_level": video,
        "clip_level": {
            "top1": topk_accuracy(clip_scores, clip_labels, 1),
            "top5": topk_accuracy(clip_scores, clip_labels, 5),
            "clips": int(len(clip_labels)),
            "calibration": {k: v for k, v in calibration(clip_scores, clip_labels).items() if k != "bins"},
        },
        "calibration": temperature_summary(predictions, restored),
        "inference": inference_timing(predictions, num_views),
        "experts": expert_usage(predictions, restored.classes),
        "direction": direction_tests(
            restored.classes,
            predictions.labels,
            video_scores.argmax(axis=1),
            None if predictions.reversed_probs is None else predictions.reversed_probs.argmax(axis=1),
        ),
    }
    if metrics["experts"] is not None and predictions.head_features is not None:
        head = restored.model.head
        metrics["experts"]["routing_effect"] = routing_effect(
            head, predictions.head_features, predictions.view_gates, predictions.labels
        )
    return metrics, matrix


VALIDATION_KEYS = ("videos", "nll_before", "nll_after", "ece_before", "ece_after", "warning")


def temperature_summary(predictions: Predictions, restored: RestoredModel) -> dict:
    """The checkpoint's temperature, where it was fitted, and the test ECE and Brier without it (T = 1)."""
    record = restored.meta.get("calibration", {})
    before = calibration(scaled_video_probs(predictions.view_logits, 1.0), predictions.labels)
    return {
        "temperature": restored.temperature,
        "fitted_on": record.get("fitted_on"),
        "validation": {k: record[k] for k in VALIDATION_KEYS if k in record},
        "before_scaling": {k: v for k, v in before.items() if k != "bins"},
    }


def checkpoint_summary(restored: RestoredModel) -> dict:
    """Where the weights come from and how their run trained; epochs count from 1, as the log lines do."""
    meta = restored.meta
    epoch = meta.get("epoch")
    return {
        "path": str(restored.path),
        "sha256": restored.sha256,
        "epoch": None if epoch is None else epoch + 1,
        "best_val_top1": meta.get("best_metric"),
        "epochs_planned": restored.config.train.epochs,
        "epochs_trained": epochs_trained(restored.path.parent / "metrics.jsonl"),
        "stopped_early": meta.get("stopped_early"),
    }


def epochs_trained(metrics_file: Path) -> int | None:
    """Epochs the run beside a checkpoint logged (None without its metrics.jsonl)."""
    if not metrics_file.exists():
        return None
    epochs = [row["epoch"] for row in read_jsonl(metrics_file, strict=False) if isinstance(row.get("epoch"), int)]
    return max(epochs) + 1 if epochs else 0


def inference_timing(predictions: Predictions, views_per_video: int) -> dict:
    """Model time only (decoding excluded), first batch dropped as warm-up when there are others."""
    seconds, counts = predictions.batch_seconds, predictions.batch_views
    if len(seconds) > 1:
        seconds, counts = seconds[1:], counts[1:]
    per_clip_ms = np.array([1000 * s / c for s, c in zip(seconds, counts)])
    total_clips, total_seconds = sum(counts), sum(seconds)
    return {
        "ms_per_clip": 1000 * total_seconds / max(1, total_clips),
        "ms_per_video": 1000 * total_seconds * views_per_video / max(1, total_clips),
        "clips_per_s": total_clips / total_seconds if total_seconds > 0 else None,
        "p50_ms_per_clip": float(np.percentile(per_clip_ms, 50)) if len(per_clip_ms) else None,
        "p95_ms_per_clip": float(np.percentile(per_clip_ms, 95)) if len(per_clip_ms) else None,
        "batches_timed": len(seconds),
        "warmup_batches_excluded": len(predictions.batch_seconds) - len(seconds),
    }


def expert_usage(predictions: Predictions, classes: tuple[str, ...]) -> dict | None:
    """Fraction of videos routed to each expert and the class x expert mean gate weights."""
    if predictions.gates is None:
        return None
    gates = predictions.gates  # [N, E]
    routed = (gates > 0).mean(axis=0)
    per_class = np.stack(
        [
            gates[predictions.labels == c].mean(axis=0) if (predictions.labels == c).any() else np.zeros(gates.shape[1])
            for c in range(len(classes))
        ]
    )
    return {
        "fraction_routed": routed.tolist(),
        "mean_gate": gates.mean(axis=0).tolist(),
        "unused_experts": int((routed == 0).sum()),
        "class_expert_gate": per_class.tolist(),
        **routing_health(gates, predictions.labels, predictions.router_logits),
    }
