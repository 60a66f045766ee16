"""Clip datasets and loaders: records + sampling + decoding (or the cache) + transforms.

A video that cannot be decoded does not stop an epoch: the dataset returns a ``FailedItem``,
the collate function drops it from the batch, and ``SkippingLoader`` logs it once and never
yields an empty batch. Randomness comes from (seed, epoch, index), so a clip is the same whatever
worker decodes it, and a resumed run sees the same clips as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from actionmoe.data.cache import ClipCache
from actionmoe.data.decode import VideoReader, get_reader, read_clip, resize_frame
from actionmoe.data.sampling import uniform_indices
from actionmoe.data.splits import VideoRecord
from actionmoe.data.transforms import Preprocessing
from actionmoe.errors import VideoDecodeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FailedItem:
    index: int
    path: str
    reason: str


def load_views(
    reader: VideoReader,
    path: Path,
    preprocessing: Preprocessing,
    train: bool,
    rng: np.random.Generator,
    cache: ClipCache | None = None,
) -> np.ndarray:
    """The frames of every view of ``path``: uint8 [V, clip_len, H, W, C], H x W = ``preprocessing.resize``.

    With ``presample_frames`` > 0, ``presample_frames`` uniform frames are read (or taken from the
    cache) and the views are sampled from those; with 0, the views are read from all frames.

    Raises:
        VideoDecodeError: the file cannot be decoded.
    """
    pre = preprocessing
    if pre.presample_frames <= 0:
        frames = read_clip(reader, path, lambda n: pre.indices(n, train, rng).reshape(-1), pre.resize).frames
        return frames.reshape(-1, pre.clip_len, *frames.shape[1:])
    frames = cache.get(path) if cache is not None else None
    if frames is None:
        frames = read_clip(reader, path, lambda n: uniform_indices(n, pre.presample_frames), pre.resize).frames
    return frames[pre.indices(len(frames), train, rng)]  # [V, clip_len, H, W, C]


def views_from_frames(
    frames: np.ndarray, preprocessing: Preprocessing, train: bool, rng: np.random.Generator
) -> np.ndarray:
    """The views of frames already in memory, exactly as ``load_views`` takes them from a file.

    Args:
        frames: uint8 [T, H, W, 3] RGB at any size; resized to ``preprocessing.resize`` here.
    Returns:
        uint8 [V, clip_len, H', W', 3].
    """
    pre = preprocessing
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise VideoDecodeError(f"frames must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}")
    if pre.presample_frames > 0:
        frames = frames[uniform_indices(len(frames), pre.presample_frames)]  # [P, H, W, 3]
    resized = np.stack([resize_frame(frame, pre.resize) for frame in frames])
    return resized[pre.indices(len(resized), train, rng)]  # [V, clip_len, H', W', 3]


class VideoClipDataset(Dataset):
    """Items are ``(clip, label, index)`` or a ``FailedItem``; keys are indices or (epoch, index).

    Args:
        records: the videos and their labels.
        preprocessing: sampling and transforms (its worker half runs here).
        train: random views, crops and flips; otherwise the evaluation views.
        decoder: video reader name (``auto`` picks the fastest installed).
        cache: decoded-frame cache to read from, or None.
        seed: with (epoch, index), fixes every random choice of a clip.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        preprocessing: Preprocessing,
        train: bool,
        decoder: str = "auto",
        cache: ClipCache | None = None,
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.preprocessing, self.train = preprocessing, train
        self.reader = get_reader(decoder)  # resolved once, not per clip
        self.cache, self.seed = cache, seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        record = self.records[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        try:
            views = load_views(self.reader, record.path, self.preprocessing, self.train, rng, self.cache)
        except VideoDecodeError as exc:
            return FailedItem(index, str(record.path), str(exc))
        return self.preprocessing.worker(views, self.train, rng), record.label, index


def collate_clips(items: list) -> dict:
    """Stack the good items; failed ones go to ``failed`` as (path, reason)."""
    good = [item for item in items if not isinstance(item, FailedItem)]
    failed = [(item.path, item.reason) for item in items if isinstance(item, FailedItem)]
    if not good:
        return {"clip": None, "label": None, "index": None, "failed": failed}
    clips, labels, indices = zip(*good)
    return {
        "clip": torch.stack(clips),  # [B, C, T, H, W] or [B, V, C, T, H, W]
        "label": torch.tensor(labels, dtype=torch.long),
        "index": torch.tensor(indices, dtype=torch.long),
        "failed": failed,
    }


class EpochSampler(Sampler):
    """Yields (epoch, index) keys; shuffles with (seed, epoch) and shards across ranks like DistributedSampler."""

    def __init__(
        self,
        num_items: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        weights: Sequence[float] | None = None,
    ) -> None:
        """``weights`` (one per item): draw each epoch's items with replacement in these proportions."""
        self.num_items = num_items
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.weights = None if weights is None else torch.tensor(weights, dtype=torch.double)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.num_items / self.world_size)
        return len(range(self.rank, self.num_items, self.world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is not None:  # every rank draws the same order and takes its share
            order = torch.multinomial(self.weights, self.num_items, replacement=True, generator=generator).tolist()
        elif self.shuffle:
            order = torch.randperm(self.num_items, generator=generator).tolist()
        else:
            order = list(range(self.num_items))
        if self.pad:  # every rank gets the same number of items (training); evaluation counts each once
            order += order[: math.ceil(self.num_items / self.world_size) * self.world_size - len(order)]
        return iter([(self.epoch, index) for index in order[self.rank :: self.world_size]])


class SkippingLoader:
    """Wraps a DataLoader: drops batches left empty by failed videos and logs each failure once."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.failures: dict[str, str] = {}

    @property
    def sampler(self) -> EpochSampler:
        return self.loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            for path, reason in batch["failed"]:
                if path not in self.failures:
                    self.failures[path] = reason
                    log.warning("skipping unreadable video: %s", reason)
            if batch["clip"] is not None:
                yield batch


def build_loader(
    dataset: VideoClipDataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    pad: bool = True,
    weights: Sequence[float] | None = None,
) -> SkippingLoader:
    """Batches of ``batch_size`` (fewer when videos fail); ``pad=False`` for evaluation shards.

    ``weights`` (one per video): each epoch draws its videos in these proportions (class balance).
    """
    sampler = EpochSampler(len(dataset), shuffle, seed, rank, world_size, pad, weights)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_clips,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),  # worker seeds never draw from the global RNG
    )
    return SkippingLoader(loader)
