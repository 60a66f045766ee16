"""The offline demo: the same path as a real HMDB51 run, on the built-in synthetic dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from actionmoe.config import Config, save_config
from actionmoe.data.acquire import ArchiveSpec, acquire_hmdb51, read_checksum_file
from actionmoe.data.builders import build_split_options
from actionmoe.data.splits import load_splits, summarize
from actionmoe.data.synthetic import write_synthetic_hmdb51

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    out: Path
    dataset_root: Path
    summary: dict


def run_demo(config: Config, out: Path) -> DemoResult:
    """synthesise -> acquire from the local archives -> extract -> split summary."""
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.json")
    archives = out / "archives"
    if not (archives / "checksums.md5").is_file():
        log.info("writing the synthetic motion dataset to %s", archives)
        write_synthetic_hmdb51(archives, config.synth)
    checksums = read_checksum_file(archives / "checksums.md5")
    download = config.download
    root = out / "hmdb51"
    result = acquire_hmdb51(
        root,
        ArchiveSpec(download.videos_archive, checksums.get(download.videos_archive, "")),
        ArchiveSpec(download.splits_archive, checksums.get(download.splits_archive, "")),
        archives_dir=archives,
    )
    log.info(result.message)
    splits = load_splits("hmdb51", root, build_split_options(config.data))
    return DemoResult(out, root, summarize(splits))
