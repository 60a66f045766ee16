"""Pictures of predictions: a thumbnail grid (one cell per video, its middle frame captioned with the
top classes) and the ranked actions of one video as a bar chart."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from actionmoe.data.decode import read_uniform_frames, resize_frame
from actionmoe.files import pyplot, save_figure
from actionmoe.predict.predictor import VideoPrediction

THUMBNAIL = (120, 160)  # (H, W)


def middle_frame(video: Path) -> np.ndarray:
    """The middle frame of ``video`` fitted into a thumbnail at its own aspect ratio; [H, W, 3] uint8."""
    return letterbox(read_uniform_frames(video, 3, None)[1], THUMBNAIL)


def letterbox(frame: np.ndarray, size: tuple[int, int], fill: int = 24) -> np.ndarray:
    """``frame`` [h, w, 3] scaled to fit ``size`` (H, W) without distortion, centred on dark bands."""
    height, width = size
    scale = min(height / frame.shape[0], width / frame.shape[1])
    fitted = (max(1, round(frame.shape[0] * scale)), max(1, round(frame.shape[1] * scale)))
    canvas = np.full((height, width, 3), fill, dtype=np.uint8)
    top, left = (height - fitted[0]) // 2, (width - fitted[1]) // 2
    canvas[top : top + fitted[0], left : left + fitted[1]] = resize_frame(frame, fitted)
    return canvas


def grid_path(path: Path) -> Path:
    """Where ``--grid PATH`` writes: into PATH when it is a folder, else PATH with a .png suffix."""
    if path.is_dir():
        return path / "prediction_grid.png"
    return path if path.suffix.lower() == ".png" else path.with_name(path.name + ".png")


def save_prediction_grid(
    results: list[VideoPrediction], classes: tuple[str, ...], path: Path, columns: int = 4
) -> Path:
    """Write the grid PNG; returns where it went (see ``grid_path``).

    A video inside a folder named like a class gets a green (right) or red (wrong) title.
    """
    plt = pyplot()
    target = grid_path(path)
    columns = max(1, min(columns, len(results)))
    rows = math.ceil(len(results) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, result in zip(axes.flat, results):
        _draw_cell(ax, result, classes)
    fig.tight_layout()
    return save_figure(fig, target)


def _draw_cell(ax, result: VideoPrediction, classes: tuple[str, ...]) -> None:
    video = Path(result.source)
    name = video.name if len(video.name) <= 28 else video.name[:25] + "..."
    if result.error:
        ax.imshow(np.full((*THUMBNAIL, 3), 230, dtype=np.uint8))
        ax.set_title(f"{name}\nunreadable", fontsize=8, color="grey")
        return
    ax.imshow(middle_frame(video))
    truth = video.parent.name if video.parent.name in classes else None
    best = result.predictions[0]
    colour = "black" if truth is None else ("#2a7d2a" if best.label == truth else "#b22222")
    ranked = "\n".join(f"{p.label} {p.score:.2f}" for p in result.predictions[:3])
    actual = f"\nactual: {truth}" if truth else ""
    ax.set_title(f"{name}{actual}\n{ranked}", fontsize=8, color=colour, loc="left")


def ranked_bars_png(result: VideoPrediction, title: str | None = None) -> bytes:
    """The ranked actions of one video as a horizontal bar chart, best on top; PNG bytes."""
    import io

    plt = pyplot()
    labels = [p.label for p in result.predictions][::-1]
    scores = [p.score for p in result.predictions][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(labels) + 0.9))
    ax.barh(labels, scores, color="#3b6ea8")
    for y, score in enumerate(scores):
        ax.text(min(score + 0.01, 0.9), y, f"{score:.1%}", va="center", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_xlabel("score")
    ax.set_title(title or Path(result.source).name, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, dpi=100, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()
