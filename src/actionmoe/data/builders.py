"""From a resolved config to splits, cache and datasets (the only data code that reads config)."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from actionmoe.config import DataConfig
from actionmoe.data.cache import CacheReport, CacheSpec, ClipCache, create_cache, fill_cache
from actionmoe.data.dataset import VideoClipDataset
from actionmoe.data.decode import get_reader
from actionmoe.data.lists import load_list_splits
from actionmoe.data.splits import DatasetSplits, SplitOptions, load_splits
from actionmoe.data.transforms import Preprocessing
from actionmoe.errors import CacheError, DatasetError, UsageError
from actionmoe.files import ensure_writable

log = logging.getLogger(__name__)


def build_split_options(data: DataConfig, on_missing: str | None = None) -> SplitOptions:
    return SplitOptions(
        data.split, data.val_fraction, data.val_on_test, on_missing or data.on_missing, data.seed, data.split_csv
    )


def build_splits(data: DataConfig, on_missing: str | None = None) -> DatasetSplits:
    """The records of ``data``'s split: from list files (``data.dataset = "list"``) or a dataset layout."""
    if data.dataset == "list":
        lists = {"train": data.train_list, "val": data.val_list, "test": data.test_list}
        root = Path(data.root)
        if not root.is_dir():
            raise DatasetError(f"dataset root {root} does not exist")
        return load_list_splits(
            root, lists, data.classes_file, on_missing or data.on_missing, data.val_fraction, data.seed
        )
    return load_splits(data.dataset, Path(data.root), build_split_options(data, on_missing))


def build_cache_spec(data: DataConfig) -> CacheSpec:
    if data.presample_frames <= 0:
        raise CacheError("the clip cache needs data.presample_frames > 0")
    return CacheSpec(data.presample_frames, data.resize[0], data.resize[1], get_reader(data.decoder).name)


def cache_folder(data: DataConfig) -> Path | None:
    if data.cache == "off":
        return None
    return Path(data.root) / ".actionmoe-cache" if data.cache == "auto" else Path(data.cache)


def build_cache(data: DataConfig) -> ClipCache | None:
    """The cache to read from: None when off, or when ``auto`` and nothing was built yet."""
    folder = cache_folder(data)
    if folder is None or data.presample_frames <= 0:
        return None
    if data.cache == "auto" and not (folder / "manifest.json").exists():
        return None
    return ClipCache.open(folder, Path(data.root), build_cache_spec(data))


def build_dataset(data: DataConfig, splits: DatasetSplits, subset: str, cache: ClipCache | None) -> VideoClipDataset:
    """``subset`` is train, val or test; train gets random views, crops (and flips when enabled)."""
    records = {"train": splits.train, "val": splits.val, "test": splits.test}[subset]
    return VideoClipDataset(records, Preprocessing.from_config(data), subset == "train", data.decoder, cache, data.seed)


def run_cache_build(
    data: DataConfig, rebuild: bool = False, workers: int | None = None
) -> tuple[ClipCache, CacheReport]:
    """Build (or resume) the cache for the videos of ``data.split``; the index covers all three splits."""
    folder = cache_folder(data)
    if folder is None:
        raise UsageError("data.cache is off; set it to auto or a folder to build a cache")
    root = Path(data.root)
    spec = build_cache_spec(data)
    ensure_writable(folder, "data.cache folder")
    if rebuild and folder.exists():
        for name in ("manifest.json", "frames.u8", "status.u8", "failures.jsonl"):
            (folder / name).unlink(missing_ok=True)
    options = build_split_options(data, "skip")
    splits = build_splits(data, "skip")
    wanted = [r.path for r in (*splits.train, *splits.val, *splits.test)]
    if (folder / "manifest.json").exists():
        cache = ClipCache.open(folder, root, spec)
    else:
        splits_of_layout = () if data.dataset == "list" else (1, 2, 3)  # list files have no official splits
        others = [
            load_splits(data.dataset, root, replace(options, split=n)) for n in splits_of_layout if n != data.split
        ]
        videos = {r.path for s in others for r in (*s.train, *s.val, *s.test)} | set(wanted)
        cache = create_cache(folder, root, spec, sorted(v for v in videos if v.exists()))
    return cache, fill_cache(cache, wanted, workers or os.cpu_count() or 1)


def format_cache_report(summary: dict) -> str:
    """The lines ``actionmoe data cache`` prints for a build's summary."""
    lines = [
        f"cache {summary['folder']}: {summary['built']} of {summary['videos']} videos built "
        f"({summary['built_now']} now, {summary['already_built']} before), {summary['failed']} unreadable; "
        f"{summary['spec']}"
    ]
    return "\n".join(lines + [f"unreadable: {reason}" for reason in summary["unreadable"].values()])
