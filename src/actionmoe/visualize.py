"""A thumbnail grid of predictions: one cell per video, its middle frame captioned with the top classes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actionmoe.data.decode import read_uniform_frames
from actionmoe.inference import Prediction

THUMBNAIL = (120, 160)  # (H, W)


@dataclass(frozen=True)
class GridCell:
    video: Path
    predictions: list[Prediction] | None  # None: the video could not be decoded
    error: str = ""


def middle_frame(video: Path) -> np.ndarray:
    """The middle frame of ``video`` resized for a thumbnail; [H, W, 3] uint8."""
    return read_uniform_frames(video, 3, THUMBNAIL)[1]


def save_prediction_grid(cells: list[GridCell], classes: tuple[str, ...], path: Path, columns: int = 4) -> None:
    """Write the grid PNG. A video inside a folder named like a class gets a green (right) or red (wrong) title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(1, min(columns, len(cells)))
    rows = math.ceil(len(cells) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, cell in zip(axes.flat, cells):
        _draw_cell(ax, cell, classes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _draw_cell(ax, cell: GridCell, classes: tuple[str, ...]) -> None:
    name = cell.video.name if len(cell.video.name) <= 28 else cell.video.name[:25] + "..."
    if cell.predictions is None:
        ax.imshow(np.full((*THUMBNAIL, 3), 230, dtype=np.uint8))
        ax.set_title(f"{name}\nunreadable", fontsize=8, color="grey")
        return
    ax.imshow(middle_frame(cell.video))
    truth = cell.video.parent.name if cell.video.parent.name in classes else None
    best = cell.predictions[0]
    colour = "black" if truth is None else ("#2a7d2a" if best.label == truth else "#b22222")
    ranked = "\n".join(f"{p.label} {p.score:.2f}" for p in cell.predictions[:3])
    ax.set_title(f"{name}\n{ranked}", fontsize=8, color=colour, loc="left")
