"""Accuracy metrics on score arrays: pure NumPy / scikit-learn, no I/O."""

from __future__ import annotations

import numpy as np

from actionmoe.errors import UsageError


def aggregate_views(view_probs: np.ndarray) -> np.ndarray:
    """Video scores from per-view softmax probabilities: [N, V, C] -> [N, C] (mean over views)."""
    return view_probs.mean(axis=1)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores; scores [N, C], labels [N]."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true, predicted]; [C, C] int64."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN for a class with no sample); [C]."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


def mean_class_accuracy(matrix: np.ndarray) -> float:
    return float(np.nanmean(per_class_accuracy(matrix)))


def classification_metrics(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Top-1, top-5, mean class accuracy and per-class precision / recall / F1 (scikit-learn)."""
    from sklearn.metrics import precision_recall_fscore_support

    predictions = scores.argmax(axis=1)
    indices = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=indices, zero_division=0
    )
    matrix = confusion(labels, predictions, len(classes))
    return {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5),
        "mean_class_accuracy": mean_class_accuracy(matrix),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support)
        },
        "confusion": matrix,
    }


def parse_views(text: str) -> tuple[int, int]:
    """``'CLIPSxCROPS'`` -> (clips, crops); clips >= 1, crops 1 or 3."""
    clips, sep, crops = text.lower().partition("x")
    if not (sep and clips.isdigit() and crops.isdigit()) or int(clips) < 1 or int(crops) not in (1, 3):
        raise UsageError(
            f"--views must look like CLIPSxCROPS with CLIPS >= 1 and CROPS 1 or 3 (e.g. 1x1, 10x3), got {text!r}"
        )
    return int(clips), int(crops)
