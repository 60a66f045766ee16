"""Accuracy, confusion and routing metrics on score arrays: pure tensors / NumPy / scikit-learn, no I/O.

Shared by training (top-k hits per batch) and evaluation; nothing here imports the engine.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from actionmoe.errors import UsageError


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose label is among the top-k scores, for each k; scores [B, C]."""
    ranked = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices  # [B, k]
    hits = ranked == labels[:, None]
    return [int(hits[:, :k].any(dim=1).sum()) for k in ks]


def aggregate_views(view_probs: np.ndarray) -> np.ndarray:
    """Video scores from per-view softmax probabilities: [N, V, C] -> [N, C] (mean over views)."""
    return view_probs.mean(axis=1)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores; scores [N, C], labels [N]."""
    if len(labels) == 0:
        return float("nan")
    (correct,) = topk_correct(torch.from_numpy(np.asarray(scores)), torch.from_numpy(np.asarray(labels)), (k,))
    return correct / len(labels)


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
        "chance_top1": 1 / len(classes),  # always guessing one class, on a balanced test set
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support)
        },
        "confusion": matrix,
    }


CALIBRATION_BINS = 15  # equal-width bins of top-1 confidence, the common report (Guo et al. 2017)


def calibration(scores: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """How far confidence is from accuracy: probabilities [N, C] (rows sum to 1) and labels [N].

    - ``ece``: expected calibration error, top-1 confidence in ``bins`` equal-width bins
      (``torchmetrics``' multiclass calibration error, L1);
    - ``brier``: mean over videos of sum_c (p_c - y_c)^2 (0 = certain and right, 2 = certain and wrong);
    - ``bins``: per bin its range, videos, mean confidence and accuracy (the reliability diagram).
    """
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs, target = torch.from_numpy(np.asarray(scores, dtype=np.float32)), torch.from_numpy(np.asarray(labels))
    ece = float(multiclass_calibration_error(probs, target.long(), scores.shape[1], n_bins=bins, norm="l1"))
    brier = float(((scores - np.eye(scores.shape[1])[labels]) ** 2).sum(axis=1).mean())
    confidence, correct = scores.max(axis=1), scores.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)  # (low, high] as torchmetrics
    table = [
        {
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "videos": int((index == b).sum()),
            "confidence": float(confidence[index == b].mean()) if (index == b).any() else None,
            "accuracy": float(correct[index == b].mean()) if (index == b).any() else None,
        }
        for b in range(bins)
    ]
    return {"ece": ece, "brier": brier, "bins": table}


def scaled_video_probs(view_logits: np.ndarray, temperature: float) -> np.ndarray:
    """Logits [N, V, C] -> video probabilities [N, C]: softmax(logits / T) per view, averaged over the views."""
    scaled = torch.from_numpy(np.asarray(view_logits, dtype=np.float64)) / temperature
    return scaled.softmax(dim=2).mean(dim=1).numpy()


COVERAGE_STEPS = 20  # the risk-coverage curve at 5%, 10%, ..., 100% of the videos answered


def risk_coverage(scores: np.ndarray, labels: np.ndarray, steps: int = COVERAGE_STEPS) -> dict:
    """Accuracy of the answered videos against the share answered, answering the most confident first.

    Scores [N, C], labels [N]. At each coverage c in 1/steps ... 1 the ceil(c N) most confident
    videos are answered; ``min_confidence`` is the ``--min-confidence`` that answers exactly those
    (the top score of the most confident video left out; 0 at full coverage, where the accuracy is
    the plain top-1). Ties keep the videos' order.
    """
    confidence = scores.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    correct = (scores.argmax(axis=1) == labels)[order]
    ranked = confidence[order]
    coverage, accuracy, threshold = [], [], []
    for step in range(1, steps + 1):
        answered = max(1, math.ceil(step * len(labels) / steps - 1e-9))
        coverage.append(round(step / steps, 6))
        accuracy.append(float(correct[:answered].mean()))
        threshold.append(float(ranked[answered]) if answered < len(labels) else 0.0)
    return {"coverage": coverage, "accuracy": accuracy, "min_confidence": threshold}


def parse_views(text: str) -> tuple[int, int]:
    """``'CLIPSxCROPS'`` -> (clips, crops); clips >= 1, crops 1 or 3."""
    clips, sep, crops = text.lower().partition("x")
    if not (sep and clips.isdigit() and crops.isdigit()) or int(clips) < 1 or int(crops) not in (1, 3):
        raise UsageError(
            f"--views must look like CLIPSxCROPS with CLIPS >= 1 and CROPS 1 or 3 (e.g. 1x1, 10x3), got {text!r}"
        )
    return int(clips), int(crops)


def normalized_entropy(distribution: np.ndarray) -> float:
    """Entropy of a probability vector divided by log(len): 1 = even, 0 = all mass on one entry."""
    if len(distribution) < 2:
        return 1.0
    p = np.clip(distribution / max(distribution.sum(), 1e-12), 1e-12, None)
    return float(-(p * np.log(p)).sum() / np.log(len(p)))


def normalized_mutual_information(labels: np.ndarray, assigned: np.ndarray) -> float:
    """I(class; expert) / min(H(class), H(expert)) from paired integer labels [N]; 0 when either is constant.

    1 when the expert determines the class or the class the expert (one-to-one routing gives 1),
    0 when they are independent.
    """
    if len(labels) == 0:
        return 0.0
    _, class_index = np.unique(labels, return_inverse=True)
    _, expert_index = np.unique(assigned, return_inverse=True)
    joint = np.zeros((class_index.max() + 1, expert_index.max() + 1))
    np.add.at(joint, (class_index, expert_index), 1.0)
    return _normalized_mi(joint)


def gate_mutual_information(labels: np.ndarray, gates: np.ndarray) -> float:
    """Normalised I(class; expert) when each video's expert is drawn from its gate weights [N, E].

    Unlike the mutual information of the top expert, a near-tie cannot count as a choice: videos
    whose gates are 0.501/0.499 and 0.499/0.501 are routed alike, and give (almost) 0.
    """
    if len(labels) == 0:
        return 0.0
    _, class_index = np.unique(labels, return_inverse=True)
    weights = gates / np.maximum(gates.sum(axis=1, keepdims=True), 1e-12)  # [N, E], rows sum to 1
    joint = np.zeros((class_index.max() + 1, gates.shape[1]))
    np.add.at(joint, class_index, weights)
    return _normalized_mi(joint)


def _normalized_mi(joint: np.ndarray) -> float:
    """I / min(H(class), H(expert)) of a joint count table [classes, experts]; 0 when either side is constant."""
    joint = joint / joint.sum()
    p_class, p_expert = joint.sum(axis=1), joint.sum(axis=0)
    entropy = lambda p: float(-(p[p > 0] * np.log(p[p > 0])).sum())
    denominator = min(entropy(p_class), entropy(p_expert))
    if denominator < 1e-9:  # a constant side: rounding can leave ~1e-16 where the entropy is 0
        return 0.0
    nonzero = joint > 0
    mutual = float((joint[nonzero] * np.log(joint[nonzero] / np.outer(p_class, p_expert)[nonzero])).sum())
    return min(1.0, max(0.0, mutual / denominator))


def router_logit_spread(logits: np.ndarray) -> dict:
    """Whether the router's preferences depend on the video, from its test-time logits [N, E].

    Each video's logits are centred over the experts (softmax ignores a shared shift). Their mean
    square splits into a part shared by all videos (the square of each expert's mean over videos)
    and a part that varies with the video (each expert's variance over videos):

    - ``router_input_share``: the varying part's share; 0 = every video gets the same preferences
      (the same experts win whatever the input), 1 = no expert is preferred regardless of the input;
    - ``router_logit_scale``: the root mean square of the centred logits, to set against the noise
      std that training adds (a router whose logits stay far below it is routed by the noise).
    """
    centred = logits - logits.mean(axis=1, keepdims=True)  # [N, E]
    shared = float((centred.mean(axis=0) ** 2).mean())
    varying = float(centred.var(axis=0).mean())
    total = shared + varying
    return {
        "router_input_share": varying / total if total > 0 else 0.0,
        "router_logit_scale": float(np.sqrt(total)),
    }


def routing_health(
    gates: np.ndarray, labels: np.ndarray, logits: np.ndarray | None = None, seed: int = 0, shuffles: int = 200
) -> dict:
    """How a router uses its experts at test time, from per-video gate weights [N, E] and class labels [N].

    - ``normalized_entropy_of_mean_gate``: 1 = the experts share the videos evenly;
    - ``experts_under_5_percent``: experts that take part in routing fewer than 5% of the videos;
    - ``class_expert_mi``: normalised mutual information between a video's class and the expert its
      gate weights draw (``gate_mutual_information``: near-ties cannot count as a choice), and
      ``class_expert_mi_random``: the same with the classes shuffled over the videos (the mean over
      ``shuffles`` permutations), the baseline it must clearly exceed, and ``class_expert_mi_p``: the
      share of those shuffles (counting the observed one) whose MI reaches the observed (a permutation p);
    - ``class_top_expert_mi``: the mutual information of the top expert alone (argmax of the gates),
      as earlier reports gave it; a 0.501/0.499 split counts as a choice there;
    - with the router's logits [N, E], ``router_input_share`` and ``router_logit_scale``
      (``router_logit_spread``): why a router collapses.
    """
    routed = (gates > 0).mean(axis=0)
    rng = np.random.default_rng(seed)
    baseline = [gate_mutual_information(rng.permutation(labels), gates) for _ in range(shuffles)]
    observed = gate_mutual_information(labels, gates)
    return {
        "normalized_entropy_of_mean_gate": normalized_entropy(gates.mean(axis=0)),
        "experts_under_5_percent": int((routed < 0.05).sum()),
        "class_expert_mi": observed,
        "class_expert_mi_random": float(np.mean(baseline)) if baseline else 0.0,
        "class_expert_mi_p": (1 + sum(value >= observed - 1e-12 for value in baseline)) / (1 + len(baseline)),
        "class_top_expert_mi": normalized_mutual_information(labels, gates.argmax(axis=1)),
        **(router_logit_spread(logits) if logits is not None else {}),
    }
