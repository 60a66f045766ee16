"""Crop, flip and normalise clips: the one preprocessing object and the pure helpers it uses.

Input clips are uint8 [..., T, H, W, C] already resized at decode time (see ``decode.resize_frame``),
so a cached clip and a freshly decoded one go through identical steps. The layout changes from
THWC to CTHW exactly once, in ``normalize_clip``, which also runs on uint8 batches on the GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from actionmoe.config import KINETICS_MEAN, KINETICS_STD, DataConfig
from actionmoe.data.augment import augment_clip, device_resized_crops, resized_crop, resized_crop_boxes
from actionmoe.data.sampling import multi_clip_indices, segment_random_indices, uniform_indices


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


def device_augment(
    batch: torch.Tensor,
    crop_size: int,
    flip: bool,
    generator: torch.Generator | None = None,
    crop_scale: tuple[float, ...] = (),
) -> torch.Tensor:
    """Random crop (and flip) per clip of a uint8 batch on its own device; [B, T, H, W, C] -> [B, T, s, s, C].

    For ``augment_on_device``: loader workers then only decode, and the device does the rest. With
    ``crop_scale`` the crops are random resized crops (one ``roi_align`` for the batch) and come out
    float in the 0-255 range; without, plain ``crop_size`` crops stay uint8.
    """
    batch_size, _, height, width, _ = batch.shape
    no_flips = torch.zeros(batch_size, dtype=torch.bool)
    if crop_scale:
        boxes = resized_crop_boxes(torch.rand(batch_size, 4, generator=generator), height, width, crop_scale)
        mirror = torch.rand(batch_size, generator=generator) < 0.5 if flip else no_flips
        crops = device_resized_crops(batch, boxes, crop_size)  # [B, T, s, s, C]
        return torch.where(mirror.to(batch.device).view(-1, 1, 1, 1, 1), crops.flip(3), crops)
    _check_crop(height, width, crop_size)
    tops = torch.randint(0, height - crop_size + 1, (batch_size,), generator=generator)
    lefts = torch.randint(0, width - crop_size + 1, (batch_size,), generator=generator)
    flips = torch.rand(batch_size, generator=generator) < 0.5 if flip else no_flips
    crops = []
    for clip, top, left, mirror in zip(batch, tops.tolist(), lefts.tolist(), flips.tolist()):
        view = clip[:, top : top + crop_size, left : left + crop_size]
        crops.append(view.flip(2) if mirror else view)
    return torch.stack(crops)


@dataclass(frozen=True)
class Preprocessing:
    """Decoded frames -> model input, exactly as the weights expect; one object built from the config.

    Worker half (DataLoader workers, NumPy): ``indices`` chooses the frames of each view (decoding
    resizes to ``resize``), ``worker`` crops, flips and normalises them, except what is left to
    the device. Device half: ``on_device`` moves a loader batch to the device and does the rest
    there (uint8 -> float; crop and flip of training clips with ``augment_on_device``; normalisation
    with ``normalize_on_device`` or ``augment_on_device``). Evaluation clips are always cropped in
    the worker.

    Shapes out of ``worker``: training [C, T, s, s] float, or uint8 [T, s, s, C] when the device
    normalises, or uint8 [T, H, W, C] when the device also augments; evaluation [V, C, T, s, s]
    float or uint8 [V, T, s, s, C], V = test_clips * test_crops. ``on_device`` always returns float
    [B, C, T, s, s] (training) or [B, V, C, T, s, s] (evaluation).
    """

    clip_len: int = 16
    resize: tuple[int, int] = (128, 171)  # (H, W) at decode time
    presample_frames: int = 32  # frames kept per video before clip sampling; 0 = all
    train_sampling: str = "random"  # random | uniform
    crop_size: int = 112
    flip: bool = True
    test_clips: int = 1
    test_crops: int = 1
    mean: tuple[float, ...] = KINETICS_MEAN
    std: tuple[float, ...] = KINETICS_STD
    normalize_on_device: bool = False
    augment_on_device: bool = False  # implies normalisation on the device
    crop_scale: tuple[float, ...] = ()  # (min, max) area fraction: random resized crops; () = plain crops
    augment: str = "none"  # clip policy in training: none | randaugment | trivialaugment
    augment_magnitude: int = 9  # RandAugment's magnitude (0-30)

    @classmethod
    def from_config(cls, data: DataConfig) -> Preprocessing:
        """The preprocessing of ``data``: the only place its fields are read from config."""
        return cls(
            clip_len=data.clip_len,
            resize=tuple(data.resize),
            presample_frames=data.presample_frames,
            train_sampling=data.train_sampling,
            crop_size=data.crop_size,
            flip=data.flip,
            test_clips=data.test_clips,
            test_crops=data.test_crops,
            mean=tuple(data.mean),
            std=tuple(data.std),
            normalize_on_device=data.normalize_on_device,
            augment_on_device=data.augment_on_device,
            crop_scale=tuple(data.crop_scale),
            augment=data.augment,
            augment_magnitude=data.augment_magnitude,
        )

    @property
    def device_normalizes(self) -> bool:
        return self.normalize_on_device or self.augment_on_device

    def indices(self, num_frames: int, train: bool, rng: np.random.Generator) -> np.ndarray:
        """[V, clip_len] frame indices: one random (or uniform) view in training, ``test_clips`` in evaluation."""
        if not train:
            return multi_clip_indices(num_frames, self.clip_len, self.test_clips)
        if self.train_sampling == "random":
            return segment_random_indices(num_frames, self.clip_len, rng)[None]
        return uniform_indices(num_frames, self.clip_len)[None]

    def worker(self, views: np.ndarray, train: bool, rng: np.random.Generator) -> torch.Tensor:
        """uint8 views [V, T, H, W, C] -> one item of a loader batch (shapes in the class docstring)."""
        if train and self.augment_on_device:  # the clip policy here, crops and flips on the device
            return torch.from_numpy(np.ascontiguousarray(self._clip_policy(views[0], rng)))
        clip = self._train_clip(views[0], rng) if train else self._test_crops(views)
        tensor = torch.from_numpy(np.ascontiguousarray(clip))
        return tensor if self.device_normalizes else normalize_clip(tensor, self.mean, self.std)

    def on_device(
        self, batch: torch.Tensor, device: torch.device, train: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A loader batch -> float model input on ``device``; ``generator`` drives device-side augmentation."""
        batch = batch.to(device, non_blocking=True)
        if train and self.augment_on_device:
            batch = device_augment(batch, self.crop_size, self.flip, generator, self.crop_scale)
        if self.device_normalizes:
            batch = normalize_clip(batch, self.mean, self.std)
        return batch

    def _train_clip(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 [T, H, W, C] -> [T, s, s, C]: a random (resized) crop, a flip, the clip policy."""
        height, width = clip.shape[1:3]
        if self.crop_scale:
            box = resized_crop_boxes(torch.from_numpy(rng.random((1, 4))), height, width, self.crop_scale)[0]
            clip = resized_crop(clip, box, self.crop_size)
        else:
            top, left = random_crop_box(height, width, self.crop_size, rng)
            clip = crop(clip, top, left, self.crop_size)  # [T, s, s, C]
        clip = clip[:, :, ::-1] if self.flip and rng.random() < 0.5 else clip
        return self._clip_policy(clip, rng)

    def _clip_policy(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.augment == "none":
            return clip
        return augment_clip(clip, self.augment, self.augment_magnitude, int(rng.integers(2**63)))

    def _test_crops(self, views: np.ndarray) -> np.ndarray:
        height, width = views.shape[-3:-1]
        if self.test_crops == 1:
            boxes = [center_crop_box(height, width, self.crop_size)]
        else:
            boxes = three_crop_boxes(height, width, self.crop_size)
        return np.stack([crop(view, top, left, self.crop_size) for view in views for top, left in boxes])
