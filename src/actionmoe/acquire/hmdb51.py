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
import shutil
from dataclasses import dataclass
from pathlib import Path

from actionmoe.acquire.archives import (
    RAR4_MAGIC,
    RAR5_MAGIC,
    ExtractionLimits,
    extract_archive,
    extract_nested_rar,
    list_entries,
    staging_folder,
)
from actionmoe.acquire.download import RetryPolicy, download_file, file_md5, verify_md5
from actionmoe.config import DownloadConfig
from actionmoe.data.splits import builtin_hmdb51_split_dir, differences_from_builtin, find_hmdb51_split_dir
from actionmoe.errors import ArchiveError, DatasetError
from actionmoe.files import ensure_writable, write_atomically

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchiveSpec:
    """One of the two files HMDB51 ships: its name, expected MD5 ('' when unknown) and contents."""

    name: str
    md5: str = ""
    members: int = 0  # entries ending in ``member_suffix`` it must hold; 0 = not checked
    member_suffix: str = ""


@dataclass(frozen=True)
class Hmdb51Source:
    """Where HMDB51 comes from and how every file is checked; built from the config by ``build_source``."""

    videos: ArchiveSpec
    splits: ArchiveSpec
    mirrors: tuple[str, ...] = ()
    policy: RetryPolicy = RetryPolicy()
    limits: ExtractionLimits = ExtractionLimits()
    builtin_splits: bool = False  # install the split files shipped in the package instead of downloading


@dataclass(frozen=True)
class AcquireResult:
    root: Path
    did_work: bool
    classes: tuple[str, ...]
    message: str


ACCEPTED = "accepted.md5"  # beside the downloaded archives: the MD5 of each file accepted, checked on reruns


def build_source(download: DownloadConfig, checksums: dict[str, str] | None = None) -> Hmdb51Source:
    """The HMDB51 source of ``download``, with MD5s from ``checksums`` (a checksum file) over the config's."""
    checksums = checksums or {}
    videos = ArchiveSpec(
        download.videos_archive,
        checksums.get(download.videos_archive, download.videos_md5),
        download.videos_members,
        ".rar",
    )
    splits = ArchiveSpec(
        download.splits_archive,
        checksums.get(download.splits_archive, download.splits_md5),
        download.splits_members,
        ".txt",
    )
    policy = RetryPolicy(
        download.retries,
        download.backoff_s,
        download.timeout_s,
        download.deadline_s,
        download.min_bytes_per_s,
        download.stall_window_s,
    )
    limits = ExtractionLimits(int(download.max_extract_gb * (1 << 30)), download.max_compression_ratio)
    return Hmdb51Source(videos, splits, tuple(download.mirrors), policy, limits, download.splits == "builtin")


def hmdb51_is_complete(root: Path) -> bool:
    """``videos/`` holds class folders with files and ``splits/`` holds split files (empty folders do not count)."""
    videos = root / "videos"
    splits = root / "splits"
    has_videos = videos.is_dir() and any(p.is_dir() and any(p.iterdir()) for p in videos.iterdir())
    return has_videos and splits.is_dir() and any(splits.rglob("*_test_split1.txt"))


def acquire_hmdb51(root: Path, source: Hmdb51Source, archives_dir: Path | None = None) -> AcquireResult:
    """Make ``root`` a complete HMDB51 folder, doing no work when it already is one.

    Args:
        root: target folder, created if needed.
        source: archives, mirrors, retry policy and extraction limits.
        archives_dir: a folder with local copies of the archives; no download then.

    Raises:
        DatasetError: the split files disagree with the official ones shipped in the package.
        DownloadError, ArchiveError: no valid archive could be had, or it cannot be extracted safely.
    """
    if hmdb51_is_complete(root):
        classes = tuple(sorted(p.name for p in (root / "videos").iterdir() if p.is_dir()))
        return AcquireResult(
            root, False, classes, f"{root} is already complete ({len(classes)} classes); nothing to do"
        )
    ensure_writable(root, "--root")
    _remove_empty(root / "videos", root / "splits")
    video_archive = _obtain(source.videos, root, source, archives_dir)
    if not (root / "splits").is_dir():
        _install_splits(root, source, archives_dir)
    if not (root / "videos").is_dir():
        log.info("extracting %s", video_archive)
        extract_nested_rar(video_archive, root / "videos", source.limits)
    classes = tuple(sorted(p.name for p in (root / "videos").iterdir() if p.is_dir()))
    return AcquireResult(root, True, classes, f"extracted {len(classes)} classes into {root}")


def _remove_empty(*folders: Path) -> None:
    """An empty ``videos/`` or ``splits/`` (a user's mkdir, a copy that failed) is redone, not taken as complete."""
    for folder in folders:
        if folder.is_dir() and not any(path.is_file() for path in folder.rglob("*")):
            shutil.rmtree(folder)


def _install_splits(root: Path, source: Hmdb51Source, archives_dir: Path | None) -> None:
    """The split files, from the package (``builtin``) or the split archive checked against the package's."""
    target = root / "splits"
    if source.builtin_splits:
        with staging_folder(target) as staging:
            shutil.copytree(builtin_hmdb51_split_dir(), staging / "testTrainMulti_7030_splits")
        log.info("installed the official split files shipped with actionmoe")
        return
    extract_archive(_obtain(source.splits, root, source, archives_dir), target, source.limits)
    problems = differences_from_builtin(find_hmdb51_split_dir(target))
    if problems:
        shutil.rmtree(target)
        raise DatasetError(
            f"the split archive disagrees with the official HMDB51 split files in {len(problems)} places "
            f"(e.g. {problems[0]}); it is damaged or not the official release. Use --splits builtin to use "
            "the official files shipped with actionmoe"
        )


def _obtain(spec: ArchiveSpec, root: Path, source: Hmdb51Source, archives_dir: Path | None) -> Path:
    if archives_dir is not None:
        local = archives_dir / spec.name
        if not local.is_file():
            raise DatasetError(f"{local} not found: --archives must be a folder holding {spec.name}")
        verify_md5(local, spec.md5)
        return local
    target = root / "archives" / spec.name
    if target.is_file() and _still_as_accepted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    urls = [f"{mirror.rstrip('/')}/{spec.name}" for mirror in source.mirrors]
    log.info("downloading %s", spec.name)
    download_file(urls, target, spec.md5, source.policy, lambda path: validate_archive(path, spec))
    _record_accepted(target)
    return target


def validate_archive(path: Path, spec: ArchiveSpec) -> None:
    """Signature, a full listing of the entries, and their expected count when known.

    Raises:
        ArchiveError: not an archive, corrupt or truncated, or another number of members.
    """
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head.startswith((RAR4_MAGIC, RAR5_MAGIC)):
        raise ArchiveError(f"{spec.name} is not a RAR archive (it starts with {head!r}; an error page?)")
    entries = list_entries(path)
    if spec.members:
        count = sum(1 for entry in entries if entry.name.lower().endswith(spec.member_suffix))
        if count != spec.members:
            raise ArchiveError(
                f"{spec.name} holds {count} {spec.member_suffix} files, the official release {spec.members}"
            )


def _record_accepted(archive: Path) -> None:
    record = archive.parent / ACCEPTED
    known = read_checksum_file(record) if record.is_file() else {}
    known[archive.name] = file_md5(archive)
    write_atomically(record, "".join(f"{digest}  {name}\n" for name, digest in sorted(known.items())))


def _still_as_accepted(archive: Path) -> bool:
    """A downloaded archive is reused only if its MD5 still equals the one recorded when it was accepted."""
    record = archive.parent / ACCEPTED
    expected = read_checksum_file(record).get(archive.name) if record.is_file() else None
    if expected is not None and file_md5(archive) == expected:
        return True
    log.warning("%s differs from the file accepted earlier (or was not recorded); downloading it again", archive)
    archive.unlink()
    return False


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
