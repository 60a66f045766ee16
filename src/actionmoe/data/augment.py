"""Training augmentation for small datasets: clip policies, scale-jittered crops, MixUp and CutMix.

- ``augment_clip``: RandAugment or TrivialAugment (``torchvision.transforms.v2``) on a whole clip,
  one draw of operations and magnitudes for all its frames (v2 treats a ``Video`` [T, C, H, W] as
  one sample). Runs in the loader workers, clip by clip, like any per-clip transform.
- ``resized_crop_boxes``: the random-resized-crop box math, shared by the worker path
  (``resized_crop``) and the device path (``device_resized_crops``, one ``roi_align`` per batch).
- ``mix_batch``: MixUp or CutMix of a device batch, batched, as torchvision's references do it
  (the batch mixed with itself rolled by one; soft targets, so label smoothing combines).

Nothing here draws from a global generator: the caller passes a generator seeded from
(seed, epoch, index) or (seed, epoch, rank), so a resumed run draws what an uninterrupted one drew.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CLIP_POLICIES = ("none", "randaugment", "trivialaugment")
CROP_RATIO = (3 / 4, 4 / 3)  # aspect ratios of random resized crops, as torchvision's RandomResizedCrop
RANDAUGMENT_OPS = 2  # operations per clip (RandAugment's N)


def augment_clip(clip: np.ndarray, policy: str, magnitude: int, seed: int) -> np.ndarray:
    """RandAugment (``magnitude`` of 30 bins) or TrivialAugment on every frame of a clip with the same draw.

    Args:
        clip: uint8 [T, H, W, C].
        policy: ``randaugment`` or ``trivialaugment`` (which draws its own magnitude, by design).
        seed: fixes the draw; the caller derives it from the clip's (seed, epoch, index) generator.
    Returns:
        uint8 [T, H, W, C].
    """
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    if policy == "randaugment":
        transform = v2.RandAugment(num_ops=RANDAUGMENT_OPS, magnitude=magnitude)
    elif policy == "trivialaugment":
        transform = v2.TrivialAugmentWide()
    else:
        raise ValueError(f"unknown clip policy {policy!r}; valid: {', '.join(CLIP_POLICIES)}")
    video = tv_tensors.Video(torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2))  # [T, C, H, W]
    with torch.random.fork_rng(devices=[]):  # v2 draws from torch's generator: seed a private copy of it
        torch.manual_seed(seed)
        out = transform(video)
    return out.permute(0, 2, 3, 1).numpy()  # [T, H, W, C]


def resized_crop_boxes(
    uniforms: torch.Tensor, height: int, width: int, scale: tuple[float, float], ratio=CROP_RATIO
) -> torch.Tensor:
    """Random resized crop boxes from uniform draws: [n, 4] in [0, 1) -> [n, 4] (top, left, height, width).

    The area is a fraction of the frame drawn uniformly from ``scale``, the aspect ratio
    log-uniformly from ``ratio``; a box larger than the frame is shrunk to fit rather than
    redrawn, so every draw gives one box (fractional pixels; the caller rounds or interpolates).
    """
    uniforms = uniforms.double()
    area = (scale[0] + (scale[1] - scale[0]) * uniforms[:, 0]) * height * width
    low, high = math.log(ratio[0]), math.log(ratio[1])
    aspect = (low + (high - low) * uniforms[:, 1]).exp()  # width / height
    box_w = (area * aspect).sqrt().clamp(1, width)
    box_h = (area / aspect).sqrt().clamp(1, height)
    top = uniforms[:, 2] * (height - box_h)
    left = uniforms[:, 3] * (width - box_w)
    return torch.stack([top, left, box_h, box_w], dim=1)


def resized_crop(clip: np.ndarray, box: torch.Tensor, size: int) -> np.ndarray:
    """uint8 [T, H, W, C] -> the box resized to [T, size, size, C] (bilinear, antialiased), all frames alike."""
    from torchvision.transforms.v2 import functional as TF

    top, left, box_h, box_w = (round(float(value)) for value in box)
    frames = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2)  # [T, C, H, W]
    out = TF.resized_crop(frames, top, left, max(1, box_h), max(1, box_w), [size, size], antialias=True)
    return out.permute(0, 2, 3, 1).numpy()


def device_resized_crops(batch: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """One box per clip, every frame, in one ``roi_align`` call on the batch's device.

    Args:
        batch: uint8 [B, T, H, W, C].
        boxes: [B, 4] (top, left, height, width) in pixels.
    Returns:
        float [B, T, size, size, C] in the 0-255 range (``normalize_clip`` scales it).
    """
    from torchvision.ops import roi_align

    clips, frames_per_clip, height, width, channels = batch.shape
    frames = batch.movedim(-1, 2).reshape(clips * frames_per_clip, channels, height, width).float()  # [B*T, C, H, W]
    top, left, box_h, box_w = boxes.to(batch.device, torch.float32).repeat_interleave(frames_per_clip, 0).unbind(1)
    index = torch.arange(clips * frames_per_clip, device=batch.device, dtype=torch.float32)
    rois = torch.stack([index, left, top, left + box_w, top + box_h], dim=1)  # [B*T, 5] (frame, x1, y1, x2, y2)
    out = roi_align(frames, rois, output_size=size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return out.view(clips, frames_per_clip, channels, size, size).movedim(2, -1)  # [B, T, s, s, C]


@dataclass(frozen=True)
class MixedLabels:
    """The two labels of every mixed clip and the share ``lam`` of the first."""

    first: torch.Tensor  # [B]
    second: torch.Tensor  # [B]
    lam: float

    def soft_targets(self, num_classes: int) -> torch.Tensor:
        """[B, num_classes] probabilities for ``cross_entropy`` (which then applies label smoothing)."""
        first = F.one_hot(self.first, num_classes).float()
        second = F.one_hot(self.second, num_classes).float()
        return first.mul(self.lam).add_(second, alpha=1.0 - self.lam)


def mix_batch(
    clips: torch.Tensor, labels: torch.Tensor, mixup_alpha: float, cutmix_alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, MixedLabels]:
    """MixUp or CutMix (one of them, evenly, when both alphas are positive) of a batch with itself rolled by one.

    Args:
        clips: float [B, C, T, H, W] on any device; CutMix pastes one box into every frame.
        labels: [B] class indices.
        rng: the epoch's mixing generator (its draws: the choice, lambda, the box).
    Returns:
        the mixed clips [B, C, T, H, W] and their labels; ``lam`` is the first label's share of the
        pixels (CutMix: after clipping the box to the frame).
    """
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    partner = clips.roll(1, 0)
    if not use_cutmix:
        return clips.mul(lam).add_(partner, alpha=1.0 - lam), MixedLabels(labels, labels.roll(1, 0), lam)
    height, width = clips.shape[-2:]
    cut = math.sqrt(1.0 - lam)
    centre_y, centre_x = int(rng.integers(height)), int(rng.integers(width))
    half_h, half_w = int(height * cut) // 2, int(width * cut) // 2
    y1, y2 = max(centre_y - half_h, 0), min(centre_y + half_h, height)
    x1, x2 = max(centre_x - half_w, 0), min(centre_x + half_w, width)
    mixed = clips.clone()
    mixed[..., y1:y2, x1:x2] = partner[..., y1:y2, x1:x2]
    lam = 1.0 - (y2 - y1) * (x2 - x1) / (height * width)
    return mixed, MixedLabels(labels, labels.roll(1, 0), lam)
