"""Temperature scaling (Guo et al. 2017): one scalar T, fitted on the validation split, kept in the checkpoint.

Every prediction divides the model's logits by T before the softmax (per view; the views'
probabilities are then averaged as always). T > 1 softens an over-confident model, T < 1 sharpens
a timid one; no argmax changes, so top-1 and the confusion matrix stay as they were while the
confidence comes to mean how often the model is right. T minimises the validation negative
log-likelihood of the video-level probabilities, found by a bounded golden-section search over
log T (the NLL is smooth and, in practice, has one minimum there). The test split is never used.

``calibrate_checkpoint`` runs this on a trained checkpoint and writes ``calibration`` (T and the
validation NLL and ECE before and after) into its metadata; ``RestoredModel.temperature`` reads it,
1.0 for checkpoints without one.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from actionmoe.errors import DatasetError
from actionmoe.evaluation.metrics import scaled_video_probs

log = logging.getLogger(__name__)

TEMPERATURE_RANGE = (0.05, 20.0)  # the search bounds; a fit at a bound means the model is degenerate
SEARCH_STEPS = 60  # golden-section steps: the bracket shrinks to 0.618^60 of log(400), far below 1e-6


def nll(view_logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true classes under ``scaled_video_probs``."""
    probs = scaled_video_probs(view_logits, temperature)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(probs, 1e-12, None)).mean())


def fit_temperature(view_logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in ``TEMPERATURE_RANGE`` with the lowest validation NLL (1.0 kept unless another is better).

    Raises:
        ValueError: no videos to fit on.
    """
    if len(labels) == 0:
        raise ValueError("no validation videos to fit a temperature on")
    golden = (math.sqrt(5) - 1) / 2
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    loss = lambda log_t: nll(view_logits, labels, math.exp(log_t))
    a, b = high - golden * (high - low), low + golden * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(SEARCH_STEPS):
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - golden * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + golden * (high - low)
            loss_b = loss(b)
    best = math.exp((low + high) / 2)
    return best if nll(view_logits, labels, best) < nll(view_logits, labels, 1.0) else 1.0


def calibration_record(view_logits: np.ndarray, labels: np.ndarray) -> dict:
    """What ``calibrate_checkpoint`` stores: T and the validation NLL and ECE before and after it."""
    from actionmoe.evaluation.metrics import calibration

    temperature = fit_temperature(view_logits, labels)
    before, after = scaled_video_probs(view_logits, 1.0), scaled_video_probs(view_logits, temperature)
    record = {
        "temperature": temperature,
        "fitted_on": "validation",
        "videos": int(len(labels)),
        "nll_before": nll(view_logits, labels, 1.0),
        "nll_after": nll(view_logits, labels, temperature),
        "ece_before": calibration(before, labels)["ece"],
        "ece_after": calibration(after, labels)["ece"],
    }
    warning = rough_fit(temperature, len(labels))
    return {**record, "warning": warning} if warning else record


FEW_VIDEOS = 50  # below this many validation videos the fitted temperature is a rough estimate


def rough_fit(temperature: float, videos: int) -> str | None:
    """Why a fitted temperature deserves little trust, or None."""
    if any(math.isclose(temperature, bound, rel_tol=1e-3) for bound in TEMPERATURE_RANGE):
        return (
            f"The temperature reached the end of its search range ({temperature:g}): on validation the model is "
            "no better than a uniform guess (T large) or never wrong (T small); its confidences mean little."
        )
    if videos < FEW_VIDEOS:
        return f"Fitted on only {videos} validation videos: a rough estimate."
    return None


def calibrate_checkpoint(checkpoint: Path, root: str | None = None, device: str = "auto", num_workers: int = 2) -> dict:
    """Fit T on the validation split of ``checkpoint``'s own run and write it into its metadata; the record.

    A run without validation videos, or whose validation videos are its test videos
    (``data.val_on_test``), keeps T = 1 and says why (``fitted_on`` is None).
    """
    from actionmoe.evaluation.evaluate import EvaluationOptions, subset_logits
    from actionmoe.runtime.checkpoint import update_metadata

    options = EvaluationOptions(root=root, device=device, num_workers=num_workers)
    try:
        view_logits, labels = subset_logits(checkpoint, options, "val")
    except DatasetError:  # data.val_on_test: fitting there would fit on the test split
        view_logits, labels = None, None
    if labels is None:
        record = {"temperature": 1.0, "fitted_on": None, "reason": "validation is the test split (data.val_on_test)"}
    elif len(labels) == 0:
        record = {"temperature": 1.0, "fitted_on": None, "reason": "no validation videos"}
    else:
        record = calibration_record(view_logits, labels)
    update_metadata(checkpoint, {"calibration": record})
    if record.get("warning"):
        log.warning("calibration: %s", record["warning"])
    if not record["fitted_on"]:
        log.info("no temperature fitted (%s): probabilities stay the softmax of the logits", record["reason"])
    else:
        log.info(
            "temperature %.3f fitted on %d validation videos (NLL %.3f -> %.3f, ECE %.3f -> %.3f)",
            record["temperature"],
            record["videos"],
            record["nll_before"],
            record["nll_after"],
            record["ece_before"],
            record["ece_after"],
        )
    return record
