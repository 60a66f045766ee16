"""Which frames make a clip: pure index arithmetic, no I/O.

A video shorter than the clip has frames repeated in order (nearest-frame stretching), which
keeps the direction of motion; looping would add a jump back to the start.
"""

from __future__ import annotations

import numpy as np


def _check(num_frames: int, clip_len: int) -> None:
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    if clip_len < 1:
        raise ValueError(f"clip_len must be positive, got {clip_len}")


def uniform_indices(num_frames: int, clip_len: int) -> np.ndarray:
    """``clip_len`` indices spread evenly from the first to the last frame; [clip_len] int64."""
    _check(num_frames, clip_len)
    return np.linspace(0, num_frames - 1, clip_len).round().astype(np.int64)


def segment_random_indices(num_frames: int, clip_len: int, rng: np.random.Generator) -> np.ndarray:
    """Split the video into ``clip_len`` equal segments and pick one random frame in each; [clip_len]."""
    _check(num_frames, clip_len)
    edges = np.linspace(0, num_frames, clip_len + 1)
    picks = edges[:-1] + rng.random(clip_len) * (edges[1:] - edges[:-1])
    return np.clip(np.floor(picks), 0, num_frames - 1).astype(np.int64)


def multi_clip_indices(num_frames: int, clip_len: int, num_clips: int) -> np.ndarray:
    """``num_clips`` evenly spaced views for testing; [num_clips, clip_len].

    One clip is ``uniform_indices``. With more, clip k takes the frame at fraction (k + 0.5) / num_clips
    of each of the ``clip_len`` segments, so the views interleave and together cover the video.
    """
    _check(num_frames, clip_len)
    if num_clips < 1:
        raise ValueError(f"num_clips must be positive, got {num_clips}")
    if num_clips == 1:
        return uniform_indices(num_frames, clip_len)[None]
    segment = num_frames / clip_len
    offsets = (np.arange(num_clips)[:, None] + 0.5) / num_clips  # [num_clips, 1]
    picks = (np.arange(clip_len)[None, :] + offsets) * segment
    return np.clip(np.floor(picks), 0, num_frames - 1).astype(np.int64)
