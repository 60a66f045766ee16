"""``actionmoe bench explain``: does the Grad-CAM map fall on the moving object?

For each synthetic motion class the checkpoint knows, ``videos`` new videos of that motion are
drawn with the object kept in the left half of the model's view (the centre crop), and as many
with it in the right half: the class's trajectory squeezed into that half (horizontal motion at half
its speed), the object at 0.6 of its usual size, on the usual random background, drawn at twice
the model's decode size as the demo's videos are. Each video is explained for its true class. Reported
per side: top-1, and the share of the map's mass (summed over frames and pixels) on the
object's half, over all videos and over the rightly predicted ones. A map that follows the object
puts more than half on the object's side on both sides; a map with a fixed lean passes one side
and fails the other, which is why both are measured.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from actionmoe.acquire.synthetic import MOTIONS, Pose, render_video
from actionmoe.bench.common import machine, table
from actionmoe.data.decode import write_video
from actionmoe.errors import UsageError
from actionmoe.predict.explain import MODEL_MAP, explain
from actionmoe.predict.predictor import Predictor

SIDES = ("left", "right")
FPS = 12.0


def run_explain_benchmark(checkpoint: Path, videos: int = 4, seed: int = 0) -> dict:
    """Explain ``videos`` one-sided videos per synthetic class and side; the map's share on the object's half.

    Raises:
        UsageError: the checkpoint has no synthetic motion class (``actionmoe data synth`` names).
    """
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", precision="fp32")
    classes = [name for name in predictor.classes if name in MOTIONS]
    if not classes:
        raise UsageError(
            f"bench explain needs a model trained on the synthetic motion classes ({', '.join(list(MOTIONS)[:4])}, "
            f"...): {Path(checkpoint).name} knows none of them"
        )
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for side in SIDES:
            results = [
                _explain_one(predictor, Path(scratch) / f"{side}-{name}-{k}.avi", name, side, rng)
                for name in classes
                for k in range(videos)
            ]
            rows.append(_side_row(side, results))
    return {"machine": machine(), "checkpoint": str(checkpoint), "classes": classes, "videos": videos, "rows": rows}


def _explain_one(predictor: Predictor, path: Path, motion: str, side: str, rng) -> tuple[bool, float]:
    """(predicted right, share of the map on the object's half) for one new video of ``motion`` on ``side``."""
    pre = predictor.preprocessing
    frames = max(2 * pre.clip_len, 16)
    size, crop = (2 * pre.resize[0], 2 * pre.resize[1]), 2 * pre.crop_size  # drawn at twice the decode size
    write_video(path, one_sided_video(motion, side, rng, frames, size, crop), FPS)
    right = predictor.predict(path, top_k=1).predictions[0].label == motion
    heat = explain(predictor, path, class_name=motion).maps[MODEL_MAP]  # [T, s, s]
    return right, side_share(heat, side)


def one_sided_video(
    motion: str, side: str, rng, frames: int, size: tuple[int, int], crop: int
) -> np.ndarray:  # uint8 [T, H, W, 3]
    """A video of ``motion`` at ``size`` (H, W) whose object stays in one half of the centre ``crop``."""
    height, width = size
    return render_video(motion, rng, frames, height, width, place=_squeeze(side, height, width, crop))


def _squeeze(side: str, height: int, width: int, crop: int) -> Callable[[Pose], Pose]:
    """Map a pose over the whole frame into one half of the centre crop (fractions of the frame)."""
    left_edge, top_edge = (width - crop) / 2, (height - crop) / 2  # the crop's corner in pixels
    half = crop / 2
    offset = left_edge + (half if side == "right" else 0.0)
    size_fix = 0.6  # the object a little smaller than in training, so it fits a half

    def place(pose: Pose) -> Pose:
        x = (offset + pose.x * half) / width  # the horizontal motion halved
        y = (top_edge + pose.y * crop) / height
        return Pose(x, y, pose.angle, pose.scale * size_fix)

    return place


def side_share(heat: np.ndarray, side: str) -> float:
    """Share of ``heat`` [T, H, W] (non-negative) on the ``side`` half of the frame; nan for an all-zero map."""
    total = float(heat.sum())
    if total <= 0:
        return float("nan")
    half = heat.shape[2] // 2
    part = heat[:, :, :half] if side == "left" else heat[:, :, heat.shape[2] - half :]
    return float(part.sum()) / total


def _side_row(side: str, results: list[tuple[bool, float]]) -> dict:
    right = np.array([r for r, _ in results])
    shares = np.array([s for _, s in results])
    mapped = ~np.isnan(shares)
    return {
        "object on": side,
        "videos": len(results),
        "top1": float(right.mean()),
        "share on object's half": _mean(shares[mapped]),
        "share, right predictions": _mean(shares[mapped & right]),
        "videos above 0.5": float((shares[mapped] > 0.5).mean()) if mapped.any() else None,
        "empty maps": int((~mapped).sum()),
    }


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def format_explain_benchmark(result: dict) -> str:
    m = result["machine"]
    columns = list(result["rows"][0])
    return "\n".join(
        [
            f"Grad-CAM on one-sided videos: {result['checkpoint']}, {result['videos']} per class and side "
            f"({', '.join(result['classes'])})",
            f"{m['date']} | {m['cpu']} ({m['cores']} cores) | torch {m['torch']}",
            "",
            table(result["rows"], columns),
            "",
            "A map that follows the object puts more than 0.5 on the object's half on both sides.",
        ]
    )
