"""The offline demo: the same path as a real HMDB51 run, on the built-in synthetic dataset.

synthesise archives -> acquire from the local archives -> extract -> cache -> train -> test.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from actionmoe.config import Config, save_config
from actionmoe.data.acquire import acquire_hmdb51, read_checksum_file
from actionmoe.data.builders import build_archive_specs, build_splits, run_cache_build
from actionmoe.data.splits import summarize
from actionmoe.data.synthetic import write_synthetic_hmdb51
from actionmoe.engine.run import TrainResult, run_training

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    out: Path
    dataset_root: Path
    summary: dict
    training: TrainResult


def run_demo(config: Config, out: Path) -> DemoResult:
    out.mkdir(parents=True, exist_ok=True)
    root = acquire_demo_dataset(config, out)
    config = replace(config, data=replace(config.data, root=str(root)))
    save_config(config, out / "config.json")
    summary = summarize(build_splits(config.data))
    cache, report = run_cache_build(config.data)
    log.info("clip cache %s: %d videos built now, %d before", cache.folder, report.built, report.already)
    training = run_training(config, out / "run")
    return DemoResult(out, root, summary, training)


def acquire_demo_dataset(config: Config, out: Path) -> Path:
    """Write the synthetic archives (once) and acquire them exactly as real HMDB51 archives."""
    archives = out / "archives"
    if not (archives / "checksums.md5").is_file():
        log.info("writing the synthetic motion dataset to %s", archives)
        write_synthetic_hmdb51(archives, config.synth)
    videos, splits = build_archive_specs(config.download, read_checksum_file(archives / "checksums.md5"))
    result = acquire_hmdb51(out / "hmdb51", videos, splits, archives_dir=archives)
    log.info(result.message)
    return result.root
