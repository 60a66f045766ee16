"""Figures for an evaluation: confusion matrix, per-class accuracy, expert usage, routing, training curves.

Sized for HMDB51's 51 classes: one figure inch per ~4 class labels, labels never overlap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from actionmoe.files import pyplot, read_jsonl, save_figure

DPI = 110


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (each row sums to 1: recall on the diagonal)."""
    plt = pyplot()
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, np.maximum(totals, 1))
    side = max(6.0, 0.24 * len(classes) + 3)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(classes))
    font = 10 if len(classes) <= 15 else 7
    ax.set_xticks(ticks, classes, rotation=90, fontsize=font)
    ax.set_yticks(ticks, classes, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if len(classes) <= 15:
        for (row, col), value in np.ndenumerate(normalised):
            if matrix[row, col]:
                ax.text(
                    col,
                    row,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if value > 0.5 else "black",
                )
    fig.colorbar(image, ax=ax, fraction=0.025, shrink=0.6, pad=0.02, label="fraction of the true class")
    fig.tight_layout()
    save_figure(fig, path, DPI)


def plot_per_class_accuracy(accuracy: np.ndarray, classes: list[str], path: Path, mean: float) -> None:
    plt = pyplot()
    order = np.argsort(np.nan_to_num(accuracy, nan=-1))
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.22 * len(classes) + 1.2)))
    ax.barh(np.arange(len(classes)), np.nan_to_num(accuracy[order]), color="#4C72B0")
    ax.set_yticks(np.arange(len(classes)), [classes[i] for i in order], fontsize=8 if len(classes) > 15 else 10)
    ax.set_ylim(-0.7, len(classes) - 0.3)
    ax.axvline(mean, color="#C44E52", linestyle="--", label=f"mean class accuracy {mean:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (recall) on the test videos of the class")
    ax.set_title("Per-class accuracy")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, DPI)


def plot_reliability(bins: list[dict], ece: float, path: Path) -> None:
    """Accuracy against mean confidence per confidence bin, bar widths the bins; the diagonal is perfect."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    used = [b for b in bins if b["videos"]]
    ax.bar([b["low"] for b in used], [b["accuracy"] for b in used], width=[b["high"] - b["low"] for b in used],
           align="edge", color="#4C72B0", edgecolor="white", label="accuracy in the bin")  # fmt: skip
    ax.plot([0, 1], [0, 1], color="#C44E52", linestyle="--", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("top-1 confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (video level), ECE {ece:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, DPI)


def plot_risk_coverage(curve: dict, chance: float, path: Path) -> None:
    """Accuracy of the answered videos against the share answered (most confident first); full coverage = top-1."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot(curve["coverage"], curve["accuracy"], marker="o", markersize=3, color="#4C72B0", label="answered videos")
    ax.axhline(curve["accuracy"][-1], color="grey", linestyle=":", label="top-1 (everything answered)")
    ax.axhline(chance, color="#C44E52", linestyle="--", linewidth=1, label="chance")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("coverage (share of videos answered)")
    ax.set_ylabel("accuracy of the answered videos")
    ax.set_title("Risk-coverage (video level)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, DPI)


def plot_expert_usage(fraction: list[float], mean_gate: list[float], path: Path) -> None:
    plt = pyplot()
    experts = np.arange(len(fraction))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(fraction) + 2), 3.6))
    width = 0.4
    ax.bar(experts - width / 2, fraction, width, label="fraction of videos routed to the expert", color="#4C72B0")
    ax.bar(experts + width / 2, mean_gate, width, label="mean gate weight", color="#DD8452")
    ax.axhline(1 / len(fraction), color="grey", linestyle=":", label="uniform gate weight")
    ax.set_xticks(experts, [f"expert {i}" for i in experts])
    ax.set_ylim(0, 1.05)
    ax.set_title("Expert usage on the test split")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    save_figure(fig, path, DPI)


def plot_class_expert_routing(weights: np.ndarray, classes: list[str], path: Path) -> None:
    """Classes x experts heatmap of the mean gate weight: how the experts divide the classes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.7 * weights.shape[1] + 3), max(3.0, 0.22 * len(classes) + 1.5)))
    image = ax.imshow(weights, cmap="viridis", vmin=0, vmax=max(1e-6, float(weights.max())), aspect="auto")
    ax.set_xticks(np.arange(weights.shape[1]), [f"expert {i}" for i in range(weights.shape[1])])
    ax.set_yticks(np.arange(len(classes)), classes, fontsize=8 if len(classes) > 15 else 10)
    ax.set_xlabel("expert")
    ax.set_title("Mean gate weight per class")
    fig.colorbar(image, ax=ax, label="mean gate weight")
    fig.tight_layout()
    save_figure(fig, path, DPI)


def plot_training_curves(metrics_log: Path, path: Path) -> bool:
    """Loss and accuracy per epoch from a run's metrics.jsonl; False when there is no log."""
    if not metrics_log.is_file():
        return False
    keys = ("epoch", "task_loss", "val_loss", "train_top1", "val_top1")
    rows = [row for row in read_jsonl(metrics_log, strict=False) if all(key in row for key in keys)]
    if not rows:
        return False
    plt = pyplot()
    epochs = [r["epoch"] + 1 for r in rows]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    loss_ax.plot(epochs, [r["task_loss"] for r in rows], marker="o", label="train (cross-entropy)")
    loss_ax.plot(epochs, [r["val_loss"] for r in rows], marker="o", label="validation")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend(fontsize=8)
    acc_ax.plot(epochs, [r["train_top1"] for r in rows], marker="o", label="train top-1")
    acc_ax.plot(epochs, [r["val_top1"] for r in rows], marker="o", label="validation top-1")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_ylim(0, 1.02)
    acc_ax.legend(fontsize=8)
    for ax in (loss_ax, acc_ax):  # whole epochs, with room around a run of one or two
        ax.set_xlim(0.5, max(epochs) + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle("Training curves")
    fig.tight_layout()
    save_figure(fig, path, DPI)
    return True
