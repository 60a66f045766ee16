"""Video file I/O: the only module that imports a video library.

Frames are RGB uint8 arrays shaped [T, H, W, C].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from actionmoe.errors import VideoDecodeError


def write_video(path: Path, frames: np.ndarray, fps: float, fourcc: str = "XVID") -> None:
    """Encode RGB frames [T, H, W, 3] uint8 to ``path`` (AVI with XviD by default, as HMDB51 ships)."""
    import cv2

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height))
    if not writer.isOpened():
        raise VideoDecodeError(f"OpenCV cannot write {fourcc} video to {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def available_decoders() -> list[str]:
    """Video libraries importable here, in order of preference."""
    found = []
    for name, module in (("torchcodec", "torchcodec.decoders"), ("pyav", "av"), ("opencv", "cv2")):
        try:
            __import__(module)
        except Exception:  # torchcodec raises RuntimeError/OSError when system FFmpeg is absent
            continue
        found.append(name)
    return found
