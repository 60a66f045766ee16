"""An HMDB51 copy already on disk (a Kaggle dataset under /kaggle/input, a shared drive), found and adopted.

Two layouts are common: the two original RARs side by side, or an extracted tree of
``<class>/<video>.avi`` folders, with or without the split files. ``find_local_hmdb51`` finds
either; the RARs then go through ``acquire_hmdb51`` like local archives, and an extracted tree is
adopted in place by ``adopt_extracted_tree``: ``ROOT/videos`` becomes a link to it (nothing is
copied, so a read-only input works) and ``ROOT/splits`` gets its split files, checked against the
official ones, or the official ones shipped in the package when it has none.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from actionmoe.acquire.archives import staging_folder
from actionmoe.acquire.hmdb51 import AcquireResult, hmdb51_is_complete
from actionmoe.data.splits import builtin_hmdb51_split_dir, differences_from_builtin, hmdb51_class_names
from actionmoe.errors import DatasetError
from actionmoe.files import ensure_writable

log = logging.getLogger(__name__)

ARCHIVE_NAMES = ("hmdb51_org.rar", "test_train_splits.rar")
VIDEO_SUFFIXES = (".avi", ".mp4")
MIN_CLASS_FOLDERS = 2  # folders named like HMDB51 classes, holding videos, that make a tree


@dataclass(frozen=True)
class LocalCopy:
    kind: Literal["archives", "extracted"]
    path: Path  # the folder holding both RARs, or the folder holding the class folders
    split_dir: Path | None = None  # split files found under the same search root (extracted trees)

    def describe(self) -> str:
        if self.kind == "archives":
            return f"the two HMDB51 archives in {self.path}"
        splits = f"split files in {self.split_dir}" if self.split_dir else "no split files"
        return f"an extracted HMDB51 tree at {self.path} ({splits})"


def find_local_hmdb51(search_root: Path, max_depth: int = 4) -> LocalCopy | None:
    """The first HMDB51 copy under ``search_root`` (breadth first, hidden folders skipped), or None.

    Both archives in one folder win over an extracted tree at the same or a deeper level.
    """
    classes = set(hmdb51_class_names(builtin_hmdb51_split_dir()))
    tree = None
    split_dir = None
    for folder in _folders(search_root, max_depth):
        names = {path.name for path in _children(folder)}
        if all(name in names for name in ARCHIVE_NAMES):
            return LocalCopy("archives", folder)
        if split_dir is None and "brush_hair_test_split1.txt" in names:
            split_dir = folder
        if tree is None and _class_folders_with_videos(folder, classes & names) >= MIN_CLASS_FOLDERS:
            tree = folder
    return LocalCopy("extracted", tree, split_dir) if tree is not None else None


def _folders(root: Path, max_depth: int):
    queue = deque([(root, 0)])
    while queue:
        folder, depth = queue.popleft()
        yield folder
        if depth < max_depth:
            queue.extend((child, depth + 1) for child in _children(folder) if child.is_dir())


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(path for path in folder.iterdir() if not path.name.startswith("."))
    except OSError:  # unreadable folders are not where the dataset is
        return []


def _class_folders_with_videos(folder: Path, names: set[str]) -> int:
    return sum(1 for name in names if any(p.suffix.lower() in VIDEO_SUFFIXES for p in _children(folder / name)[:50]))


def adopt_extracted_tree(root: Path, copy: LocalCopy) -> AcquireResult:
    """Make ``root`` a complete HMDB51 folder whose ``videos`` links to ``copy.path``; no work when it is one.

    Raises:
        DatasetError: the tree's split files disagree with the official ones.
        OutputError: ``root`` cannot be written.
    """
    if hmdb51_is_complete(root):
        return AcquireResult(root, False, _classes(root), f"{root} is already complete; nothing to do")
    ensure_writable(root, "the data root")
    if not (root / "splits").is_dir():
        _install_split_files(root / "splits", copy.split_dir)
    videos = root / "videos"
    if videos.is_symlink() or videos.exists():
        raise DatasetError(f"{videos} exists but holds no class folders with videos; remove it and run again")
    link = root / ".videos.link"
    link.unlink(missing_ok=True)
    link.symlink_to(copy.path.resolve(), target_is_directory=True)
    os.replace(link, videos)  # appears whole or not at all
    classes = _classes(root)
    return AcquireResult(root, True, classes, f"linked {len(classes)} classes of {copy.path} into {root}")


def _install_split_files(target: Path, split_dir: Path | None) -> None:
    source = split_dir if split_dir is not None else builtin_hmdb51_split_dir()
    problems = differences_from_builtin(source) if split_dir is not None else []
    if problems is None:
        raise DatasetError(f"the split files in {split_dir} name other classes than HMDB51's")
    if problems:
        raise DatasetError(
            f"the split files in {split_dir} disagree with the official HMDB51 splits in {len(problems)} "
            f"places (e.g. {problems[0]}); remove them from the search folder to use the official files"
        )
    with staging_folder(target) as staging:
        shutil.copytree(source, staging / "testTrainMulti_7030_splits")
    log.info("split files from %s", split_dir or "the official files shipped with actionmoe")


def _classes(root: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in (root / "videos").iterdir() if p.is_dir()))
