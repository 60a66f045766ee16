"""Pre-flight a dataset: decode a clip of every video and list the unreadable ones with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from actionmoe.config import DataConfig
from actionmoe.data.decode import get_reader, read_clip
from actionmoe.data.sampling import uniform_indices
from actionmoe.data.splits import DatasetSplits
from actionmoe.data.workers import ordered_map
from actionmoe.errors import VideoDecodeError

SCAN_SIZE = (64, 64)  # small frames: the scan checks decodability, not pixels


@dataclass(frozen=True)
class ScanResult:
    path: str
    ok: bool
    num_frames: int
    reason: str = ""


def scan_one(job: tuple[str, str, int]) -> ScanResult:
    path, decoder, clip_len = job
    try:
        clip = read_clip(get_reader(decoder), Path(path), lambda n: uniform_indices(n, clip_len), SCAN_SIZE)
    except VideoDecodeError as exc:
        return ScanResult(path, False, 0, str(exc))
    return ScanResult(path, True, clip.num_frames)


def scan_videos(paths: Sequence[Path], decoder: str, clip_len: int, workers: int) -> list[ScanResult]:
    """One ScanResult per path, in the order given."""
    jobs = [(str(p), decoder, clip_len) for p in paths]
    results = ordered_map(scan_one, jobs, max(1, workers))
    return list(tqdm(results, total=len(jobs), desc="scanning", unit="video", disable=None))


def scan_split(splits: DatasetSplits, data: DataConfig, workers: int) -> dict:
    """Scan every video of ``splits`` (missing ones included); {"videos": N, "unreadable": [{path, reason}]}."""
    paths = sorted({r.path for r in (*splits.train, *splits.val, *splits.test)} | set(splits.missing))
    results = scan_videos(paths, data.decoder, data.clip_len, workers)
    return {"videos": len(results), "unreadable": [{"path": r.path, "reason": r.reason} for r in results if not r.ok]}


def format_scan(report: dict) -> str:
    bad = report["unreadable"]
    lines = [f"{report['videos'] - len(bad)} of {report['videos']} videos decode"]
    return "\n".join(lines + [f"unreadable: {item['reason']}" for item in bad])
