"""Decoded-clip cache: each video's presampled, resized uint8 frames in one memory-mapped file.

Trade-off: HMDB51 with every frame at 128x171 would take ~45 GB; keeping ``presample_frames``
uniformly spaced frames per video (32 by default, ~14 GB for 6,766 videos; 16 frames ~7 GB) fits
a normal disk, and training samples its clips from those frames, cached or not, so the cache
changes speed and never results. The manifest records the preprocessing; opening the cache with
another one is refused.

Files in the cache folder::

    manifest.json    spec (frames, size, decoder, version) and the relative path of every video
    frames.u8        uint8 [N, F, H, W, 3]
    status.u8        uint8 [N]: 0 not built yet, 1 built, 2 undecodable
    failures.jsonl   {"video": ..., "reason": ...} for status 2
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from actionmoe.data.decode import read_uniform_frames
from actionmoe.data.workers import ordered_map
from actionmoe.errors import CacheError, VideoDecodeError
from actionmoe.files import read_jsonl

log = logging.getLogger(__name__)

CACHE_VERSION = 1
TODO, BUILT, FAILED = 0, 1, 2


@dataclass(frozen=True)
class CacheSpec:
    frames: int
    height: int
    width: int
    decoder: str  # a concrete reader name: decoders differ within codec tolerance
    version: int = CACHE_VERSION

    def describe(self) -> str:
        return f"{self.frames} frames at {self.height}x{self.width} decoded by {self.decoder} (format v{self.version})"


@dataclass(frozen=True)
class CacheReport:
    built: int
    already: int
    failed: dict[str, str]


class ClipCache:
    """Read side. Memory maps are opened lazily, so the object pickles cheaply into loader workers."""

    def __init__(self, folder: Path, root: Path, spec: CacheSpec, videos: Sequence[str]) -> None:
        self.folder, self.root, self.spec = folder, root, spec
        self.videos = list(videos)
        self.position = {video: i for i, video in enumerate(self.videos)}
        self._frames: np.ndarray | None = None
        self._status: np.ndarray | None = None

    @classmethod
    def open(cls, folder: Path, root: Path, spec: CacheSpec) -> ClipCache:
        """Open an existing cache, refusing one built with other preprocessing or cut short."""
        manifest = _read_manifest(folder)
        built_with = manifest["spec"]
        if built_with != spec:
            raise CacheError(
                f"the cache in {folder} holds {built_with.describe()}, but this run needs {spec.describe()}; "
                "rebuild it with `actionmoe data cache --rebuild` or set data.cache=off"
            )
        cache = cls(folder, root, spec, manifest["videos"])
        cache._check_sizes()
        cache._check_status()
        return cache

    def frame_shape(self) -> tuple[int, int, int, int]:
        return (self.spec.frames, self.spec.height, self.spec.width, 3)

    def _check_sizes(self) -> None:
        expected = {
            "frames.u8": len(self.videos) * int(np.prod(self.frame_shape())),
            "status.u8": len(self.videos),
        }
        for name, size in expected.items():
            actual = (self.folder / name).stat().st_size if (self.folder / name).exists() else -1
            if actual != size:
                raise _damaged(self.folder, f"{name}: {max(actual, 0)} of {size} bytes")

    def _check_status(self) -> None:
        _, status = self._maps()
        unknown = int(np.isin(status, (TODO, BUILT, FAILED), invert=True).sum())
        if unknown:
            raise _damaged(self.folder, f"status.u8: {unknown} unknown values")

    def _maps(self, mode: str = "r") -> tuple[np.ndarray, np.ndarray]:
        if self._frames is None or (mode != "r" and not self._frames.flags.writeable):
            shape = (len(self.videos), *self.frame_shape())
            self._frames = np.memmap(self.folder / "frames.u8", dtype=np.uint8, mode=mode, shape=shape)
            self._status = np.memmap(self.folder / "status.u8", dtype=np.uint8, mode=mode, shape=(len(self.videos),))
        return self._frames, self._status

    def key(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def get(self, path: Path) -> np.ndarray | None:
        """The cached frames [F, H, W, C] of ``path``; None when not built; raises for a known-bad video."""
        position = self.position.get(self.key(path))
        if position is None:
            return None
        frames, status = self._maps()
        if status[position] == BUILT:
            return np.array(frames[position])
        if status[position] == FAILED:
            raise VideoDecodeError(self.failures().get(self.videos[position], f"{path}: undecodable (cached)"))
        return None

    def failures(self) -> dict[str, str]:
        path = self.folder / "failures.jsonl"
        if not path.exists():
            return {}
        rows = read_jsonl(path, strict=False)  # a damaged row only loses that video's reason
        return {row["video"]: row["reason"] for row in rows if isinstance(row.get("video"), str) and "reason" in row}

    def counts(self) -> dict[str, int]:
        _, status = self._maps()
        return {
            "videos": len(self.videos),
            "built": int((status == BUILT).sum()),
            "failed": int((status == FAILED).sum()),
        }

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_frames": None, "_status": None}


def _damaged(folder: Path, detail: str) -> CacheError:
    return CacheError(
        f"the cache in {folder} is truncated or damaged ({detail}); rebuild it with `actionmoe data cache --rebuild`"
    )


def _read_manifest(folder: Path) -> dict:
    """The manifest, its spec as a ``CacheSpec`` and its videos as a list of names; anything else is damage."""
    path = folder / "manifest.json"
    if not path.is_file():
        raise CacheError(f"no cache in {folder} (manifest.json missing); build it with `actionmoe data cache`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _damaged(folder, f"manifest.json: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("spec"), dict):
        raise _damaged(folder, "manifest.json has no spec")
    videos = manifest.get("videos")
    if not isinstance(videos, list) or not all(isinstance(video, str) for video in videos):
        raise _damaged(folder, "manifest.json has no list of videos")
    return {"spec": _spec_of(folder, manifest["spec"]), "videos": videos}


def _spec_of(folder: Path, record: dict) -> CacheSpec:
    types = {field.name: field.type for field in fields(CacheSpec)}
    if set(record) != set(types) or not all(
        isinstance(record[name], int if kind in ("int", int) else str) and not isinstance(record[name], bool)
        for name, kind in types.items()
    ):
        raise _damaged(folder, f"manifest.json has an invalid spec {record}")
    return CacheSpec(**record)


def create_cache(folder: Path, root: Path, spec: CacheSpec, videos: Sequence[Path]) -> ClipCache:
    """Lay out an empty cache for ``videos``, its space reserved on the disk first.

    A sparse file would let writes through the memory map fail later with SIGBUS when the disk
    fills; reserving the blocks (``posix_fallocate``) fails now, in one line.

    Raises:
        CacheError: the disk (or a file-size limit) cannot hold the cache.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cache = ClipCache(folder, root, spec, sorted({Path(os.path.relpath(v, root)).as_posix() for v in videos}))
    _reserve(folder / "frames.u8", len(cache.videos) * int(np.prod(cache.frame_shape())))
    _reserve(folder / "status.u8", len(cache.videos))
    (folder / "failures.jsonl").write_text("")
    manifest = {"spec": asdict(spec), "videos": cache.videos}
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, folder / "manifest.json")  # written last: a cache without it does not exist
    return cache


def _reserve(path: Path, size: int) -> None:
    try:
        with open(path, "wb") as handle:
            if size:
                os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise CacheError(
            f"the clip cache needs {size / 1e9:.2f} GB in {path.parent} and the disk cannot hold it "
            f"({exc.strerror or exc}); free space, choose another data.cache folder or lower data.presample_frames"
        ) from None


def _decode_job(job: tuple[int, str, CacheSpec]) -> tuple[int, np.ndarray | None, str]:
    position, path, spec = job
    try:
        return position, read_uniform_frames(Path(path), spec.frames, (spec.height, spec.width), spec.decoder), ""
    except VideoDecodeError as exc:
        return position, None, str(exc)


def fill_cache(cache: ClipCache, videos: Sequence[Path], workers: int, flush_every: int = 32) -> CacheReport:
    """Decode every not-yet-built video of ``videos`` into ``cache``; resumable at video granularity.

    A video's status byte is set only after its frames were flushed to disk, so an interrupted
    build never marks a half-written clip as built.
    """
    frames, status = cache._maps("r+")
    wanted = sorted({cache.position[cache.key(v)] for v in videos if cache.key(v) in cache.position})
    todo = [p for p in wanted if status[p] == TODO]
    jobs = [(p, str(cache.root / cache.videos[p]), cache.spec) for p in todo]
    failed: dict[str, str] = {}
    pending: list[int] = []
    with open(cache.folder / "failures.jsonl", "a") as failure_log:
        progress = tqdm(
            ordered_map(_decode_job, jobs, max(1, workers)),
            total=len(jobs),
            desc="caching",
            unit="video",
            disable=None,
        )
        for position, clip, reason in progress:
            if clip is None:
                failed[cache.videos[position]] = reason
                failure_log.write(json.dumps({"video": cache.videos[position], "reason": reason}) + "\n")
                failure_log.flush()
                status[position] = FAILED
                continue
            frames[position] = clip
            pending.append(position)
            if len(pending) >= flush_every:
                _commit(frames, status, pending)
        _commit(frames, status, pending)
    return CacheReport(built=len(todo) - len(failed), already=len(wanted) - len(todo), failed=failed)


def _commit(frames: np.ndarray, status: np.ndarray, pending: list[int]) -> None:
    frames.flush()
    for position in pending:
        status[position] = BUILT
    status.flush()
    pending.clear()
