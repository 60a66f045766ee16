"""Get HMDB51 onto disk: download (or take local archives), verify, extract.

Layout of a complete root::

    ROOT/archives/hmdb51_org.rar, test_train_splits.rar   (only when downloaded)
    ROOT/videos/<class>/<video>.avi
    ROOT/splits/testTrainMulti_7030_splits/<class>_test_split<N>.txt

``videos`` and ``splits`` are each renamed into place only when fully extracted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from actionmoe.acquire.archives import extract_archive, extract_nested_rar
from actionmoe.acquire.download import RetryPolicy, download_file, verify_md5
from actionmoe.config import DownloadConfig
from actionmoe.errors import DatasetError
from actionmoe.files import ensure_writable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchiveSpec:
    """One of the two files HMDB51 ships, with its expected MD5 ('' when unknown)."""

    name: str
    md5: str = ""


@dataclass(frozen=True)
class AcquireResult:
    root: Path
    did_work: bool
    classes: tuple[str, ...]
    message: str


def build_archive_specs(download: DownloadConfig, checksums: dict[str, str]) -> tuple[ArchiveSpec, ArchiveSpec]:
    """The video and split archives, with MD5s from ``checksums`` (a checksum file) or the config."""
    return (
        ArchiveSpec(download.videos_archive, checksums.get(download.videos_archive, download.videos_md5)),
        ArchiveSpec(download.splits_archive, checksums.get(download.splits_archive, download.splits_md5)),
    )


def hmdb51_is_complete(root: Path) -> bool:
    return (root / "videos").is_dir() and (root / "splits").is_dir()


def acquire_hmdb51(
    root: Path,
    videos: ArchiveSpec,
    splits: ArchiveSpec,
    mirrors: Sequence[str] = (),
    archives_dir: Path | None = None,
    policy: RetryPolicy = RetryPolicy(),
) -> AcquireResult:
    """Make ``root`` a complete HMDB51 folder, doing no work when it already is one.

    Args:
        root: target folder, created if needed.
        videos, splits: the video and split archives (names and MD5s).
        mirrors: base URLs tried in order; ``BASE/<archive name>`` is fetched.
        archives_dir: a folder with local copies of both archives; no download then.
    """
    if hmdb51_is_complete(root):
        classes = tuple(sorted(p.name for p in (root / "videos").iterdir() if p.is_dir()))
        return AcquireResult(
            root, False, classes, f"{root} is already complete ({len(classes)} classes); nothing to do"
        )
    ensure_writable(root, "--root")
    video_archive = _obtain(videos, root, mirrors, archives_dir, policy)
    split_archive = _obtain(splits, root, mirrors, archives_dir, policy)
    if not (root / "splits").is_dir():
        extract_archive(split_archive, root / "splits")
    if not (root / "videos").is_dir():
        log.info("extracting %s", video_archive)
        extract_nested_rar(video_archive, root / "videos")
    classes = tuple(sorted(p.name for p in (root / "videos").iterdir() if p.is_dir()))
    return AcquireResult(root, True, classes, f"extracted {len(classes)} classes into {root}")


def _obtain(
    spec: ArchiveSpec, root: Path, mirrors: Sequence[str], archives_dir: Path | None, policy: RetryPolicy
) -> Path:
    if archives_dir is not None:
        local = archives_dir / spec.name
        if not local.is_file():
            raise DatasetError(f"{local} not found: --archives must be a folder holding {spec.name}")
        verify_md5(local, spec.md5)
        return local
    target = root / "archives" / spec.name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    urls = [f"{mirror.rstrip('/')}/{spec.name}" for mirror in mirrors]
    log.info("downloading %s", spec.name)
    return download_file(urls, target, spec.md5, policy)


def read_checksum_file(path: Path) -> dict[str, str]:
    """Read an ``md5sum``-style file (``<hex>  <name>`` per line) into {name: md5}."""
    if not path.is_file():
        raise DatasetError(f"checksum file {path} does not exist")
    checksums = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, name = line.strip().partition(" ")
        if len(digest) != 32 or not name.strip():
            raise DatasetError(f"{path}:{number}: expected '<md5>  <file name>', got {line!r}")
        checksums[os.path.basename(name.strip().lstrip("*"))] = digest.lower()
    return checksums
