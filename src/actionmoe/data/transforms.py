"""Crop, flip and normalise clips.

Input clips are uint8 [..., T, H, W, C] already resized at decode time (see ``decode.resize_frame``),
so a cached clip and a freshly decoded one go through identical steps. The layout changes from
THWC to CTHW exactly once, in ``normalize_clip``, which also runs on uint8 batches on the GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from actionmoe.config import KINETICS_MEAN, KINETICS_STD


def crop(clip: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """[..., T, H, W, C] -> [..., T, size, size, C]."""
    return clip[..., top : top + size, left : left + size, :]


def random_crop_box(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    _check_crop(height, width, size)
    return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int]:
    _check_crop(height, width, size)
    return (height - size) // 2, (width - size) // 2


def three_crop_boxes(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """Start, centre and end along the longer side (the usual 3-crop test)."""
    _check_crop(height, width, size)
    top, left = center_crop_box(height, width, size)
    if width >= height:
        return [(top, 0), (top, left), (top, width - size)]
    return [(0, left), (top, left), (height - size, left)]


def _check_crop(height: int, width: int, size: int) -> None:
    if size > min(height, width):
        raise ValueError(f"crop {size} does not fit frames of {height}x{width}")


def normalize_clip(
    clip: torch.Tensor, mean: Sequence[float] = KINETICS_MEAN, std: Sequence[float] = KINETICS_STD
) -> torch.Tensor:
    """uint8 [..., T, H, W, C] -> float32 [..., C, T, H, W], scaled to [0, 1] then standardised."""
    x = clip.float().div_(255.0)
    x = x.movedim(-1, -4)  # [..., C, T, H, W]
    shape = (len(mean), 1, 1, 1)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - mean_t) / std_t


def device_augment(batch: torch.Tensor, crop_size: int, flip: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (and flip) per clip of a uint8 batch on its own device; [B, T, H, W, C] -> [B, T, s, s, C].

    For ``augment_on_device``: loader workers then only decode, and the GPU does the rest.
    """
    batch_size, _, height, width, _ = batch.shape
    _check_crop(height, width, crop_size)
    tops = torch.randint(0, height - crop_size + 1, (batch_size,), generator=generator)
    lefts = torch.randint(0, width - crop_size + 1, (batch_size,), generator=generator)
    flips = torch.rand(batch_size, generator=generator) < 0.5 if flip else torch.zeros(batch_size, dtype=torch.bool)
    crops = []
    for clip, top, left, mirror in zip(batch, tops.tolist(), lefts.tolist(), flips.tolist()):
        view = clip[:, top : top + crop_size, left : left + crop_size]
        crops.append(view.flip(2) if mirror else view)
    return torch.stack(crops)


@dataclass(frozen=True)
class ClipTransform:
    """Training: random crop + optional flip. Evaluation: centre crop or 3 crops per clip.

    Call with uint8 views [V, T, H, W, C]; returns [C, T, s, s] when training and
    [V * crops, C, T, s, s] when evaluating. With ``normalize=False`` the result stays uint8 THWC
    ([T, s, s, C] / [V * crops, T, s, s, C]) for ``normalize_clip`` on the device; with
    ``augment=False`` training clips are returned uncropped uint8 [T, H, W, C] for ``device_augment``.
    """

    crop_size: int = 112
    train: bool = False
    flip: bool = True
    num_crops: int = 1
    normalize: bool = True
    augment: bool = True
    mean: tuple[float, ...] = KINETICS_MEAN
    std: tuple[float, ...] = KINETICS_STD

    def __call__(self, views: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        height, width = views.shape[-3:-1]
        if self.train and not self.augment:
            return torch.from_numpy(np.ascontiguousarray(views[0]))
        if self.train:
            top, left = random_crop_box(height, width, self.crop_size, rng)
            clip = crop(views[0], top, left, self.crop_size)
            if self.flip and rng.random() < 0.5:
                clip = clip[:, :, ::-1]
        else:
            boxes = [center_crop_box(height, width, self.crop_size)] if self.num_crops == 1 else three_crop_boxes(
                height, width, self.crop_size)
            clip = np.stack([crop(view, t, l, self.crop_size) for view in views for t, l in boxes])
        tensor = torch.from_numpy(np.ascontiguousarray(clip))
        return normalize_clip(tensor, self.mean, self.std) if self.normalize else tensor
