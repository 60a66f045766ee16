"""``actionmoe bench data``: clips/s of each decoder, cold decoding against the clip cache.

Workloads: the real videos beside the project (when given) and synthetic HMDB-like AVIs
(320x240 XviD, 90 frames). A clip is 16 uniformly sampled frames resized to 128x171.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from pathlib import Path

import numpy as np

from actionmoe.acquire.synthetic import MOTIONS, render_video
from actionmoe.bench.common import best_time, machine, table
from actionmoe.data.cache import CacheSpec, create_cache, fill_cache
from actionmoe.data.decode import available_decoders, read_uniform_frames, write_video

CLIP_FRAMES = 16
SIZE = (128, 171)


def hmdb_like_videos(folder: Path, count: int, frames: int = 90) -> list[Path]:
    names = list(MOTIONS)
    paths = []
    for i in range(count):
        video = render_video(names[i % len(names)], np.random.default_rng(i), frames, 240, 320)
        paths.append(folder / f"hmdb_like_{i}.avi")
        write_video(paths[-1], video, fps=30)
    return paths


def _decode_all(paths: list[Path], decoder: str) -> None:
    for path in paths:
        read_uniform_frames(path, CLIP_FRAMES, SIZE, decoder)


def _decode_one(job: tuple[str, str]) -> None:
    read_uniform_frames(Path(job[0]), CLIP_FRAMES, SIZE, job[1])


def _decode_parallel(paths: list[Path], decoder: str, workers: int, pool) -> None:
    pool.map(_decode_one, [(str(p), decoder) for p in paths], chunksize=1)


def run_data_benchmark(real_videos: Path | None, count: int = 16, repeats: int = 3) -> dict:
    """Measure and return {machine, rows, ratios}."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        synthetic = hmdb_like_videos(Path(scratch), count)
        workloads = {"hmdb-like 320x240 avi": synthetic}
        if real_videos is not None and real_videos.is_dir():
            workloads["real videos"] = sorted(p for p in real_videos.iterdir() if p.is_file())
        for workload, paths in workloads.items():
            for decoder in available_decoders():
                seconds = best_time(lambda paths=paths, decoder=decoder: _decode_all(paths, decoder), repeats)
                rows.append(
                    {
                        "workload": workload,
                        "method": f"{decoder} decode",
                        "workers": 1,
                        "clips_per_s": len(paths) / seconds,
                    }
                )
        best = max((r for r in rows if r["workload"] == "hmdb-like 320x240 avi"), key=lambda r: r["clips_per_s"])
        decoder = best["method"].split()[0]
        workers = os.cpu_count() or 1
        with multiprocessing.get_context().Pool(workers) as pool:
            many = synthetic * 4
            seconds = best_time(lambda: _decode_parallel(many, decoder, workers, pool), repeats)
        rows.append(
            {
                "workload": "hmdb-like 320x240 avi",
                "method": f"{decoder} decode",
                "workers": workers,
                "clips_per_s": len(many) / seconds,
            }
        )
        rows.append(_cache_row(Path(scratch), synthetic, decoder, repeats))
    return {"machine": machine(), "rows": rows, "ratios": _ratios(rows)}


def _cache_row(scratch: Path, paths: list[Path], decoder: str, repeats: int) -> dict:
    cache = create_cache(scratch / "cache", scratch, CacheSpec(CLIP_FRAMES, *SIZE, decoder), paths)
    fill_cache(cache, paths, workers=1)
    reads = paths * 20

    def read_all() -> None:
        for path in reads:
            cache.get(path)

    seconds = best_time(read_all, repeats)
    return {
        "workload": "hmdb-like 320x240 avi",
        "method": "cache read",
        "workers": 1,
        "clips_per_s": len(reads) / seconds,
    }


def _ratios(rows: list[dict]) -> dict:
    single = {
        r["method"]: r["clips_per_s"] for r in rows if r["workload"] == "hmdb-like 320x240 avi" and r["workers"] == 1
    }
    decoders = {k: v for k, v in single.items() if k.endswith("decode")}
    best_decoder = max(decoders, key=decoders.get)
    ratios = {"cache_vs_best_cold_decode": single["cache read"] / decoders[best_decoder], "best_decoder": best_decoder}
    if "opencv decode" in decoders:
        ratios["best_decoder_vs_opencv"] = decoders[best_decoder] / decoders["opencv decode"]
    return ratios


def format_data_benchmark(result: dict) -> str:
    m = result["machine"]
    header = f"bench data on {m['cpu']} ({m['cores']} cores), {m['date']}"
    ratios = ", ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in result["ratios"].items())
    return "\n".join([header, table(result["rows"], ["workload", "method", "workers", "clips_per_s"]), ratios])
