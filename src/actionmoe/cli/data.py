"""``actionmoe data ...``: write the synthetic dataset, acquire HMDB51, inspect a split, build the clip cache."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from actionmoe.cli.common import (
    add_config_args,
    add_dataset_args,
    check_workers,
    data_flags,
    print_result,
    resolve_config,
)
from actionmoe.errors import UsageError


def add_data(commands) -> None:
    data = commands.add_parser("data", help="acquire and inspect datasets")
    data_commands = data.add_subparsers(title="data commands", metavar="ACTION")
    _add_synth(data_commands)
    _add_download(data_commands)
    _add_inspection(data_commands)
    data.set_defaults(handler=lambda _: data.print_help(sys.stderr) or 2)


def _add_synth(commands) -> None:
    synth = commands.add_parser("synth", help="write the synthetic motion dataset as HMDB51-format archives")
    synth.add_argument("--out", type=Path, required=True, help="folder for the archives and checksums.md5")
    synth.add_argument("--classes", type=int, help="number of motion classes, 2-12 (synth.classes)")
    synth.add_argument("--videos-per-class", type=int, help="videos per class, at least 4 (synth.videos_per_class)")
    synth.add_argument("--frames", type=int, help="frames per video (synth.frames)")
    synth.add_argument("--size", help="WxH, e.g. 160x120 (synth.width, synth.height)")
    synth.add_argument("--seed", type=int, help="random seed; the output is byte-identical for a seed")
    synth.add_argument("--rar-format", choices=["rar4", "rar5"], help="RAR version of the archives")
    synth.add_argument("--solid", action="store_true", default=None, help="write solid RAR archives")
    add_config_args(synth)
    synth.set_defaults(handler=cmd_synth)


def _add_download(commands) -> None:
    download = commands.add_parser("download", help="download (or take local copies of) HMDB51 and extract it")
    download.add_argument("dataset", choices=["hmdb51"], help="the dataset to acquire")
    download.add_argument("--root", type=Path, required=True, help="dataset folder to create")
    download.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="BASE_URL",
        help="base URL holding the archives; repeat to try several in order",
    )
    download.add_argument("--archives", type=Path, help="folder with local copies of both archives")
    download.add_argument("--checksums", type=Path, help="md5sum-style file overriding the expected MD5s")
    download.add_argument(
        "--find",
        type=Path,
        metavar="DIR",
        help="search DIR for both RARs or an extracted tree of class folders (a Kaggle input) and use it in place",
    )
    download.add_argument(
        "--source",
        default="rar",
        metavar="rar|hf[:REPO[@REVISION]]",
        help="rar: the original archives from --mirror or --archives (default); hf: the Hugging Face Hub copy "
        "(default repository CVML-TueAI/HMDB51; needs the 'hub' extra)",
    )
    download.add_argument(
        "--on-missing", choices=["error", "skip"], help="what a video the metadata names but lacks does (--source hf)"
    )
    download.add_argument(
        "--splits",
        choices=["download", "builtin"],
        help="builtin: use the official split files shipped with actionmoe, skip the split archive",
    )
    add_config_args(download)
    download.set_defaults(handler=cmd_download)


def _add_inspection(commands) -> None:
    summary = commands.add_parser("summary", help="classes and train/val/test counts of one split")
    add_dataset_args(summary)
    summary.set_defaults(handler=cmd_summary)
    scan = commands.add_parser("scan", help="decode every video of a split and list the unreadable ones")
    add_dataset_args(scan)
    scan.add_argument("--workers", type=int, default=os.cpu_count(), help="decoding processes (default: all cores)")
    scan.set_defaults(handler=cmd_scan)
    cache = commands.add_parser("cache", help="decode a split once into the memory-mapped clip cache")
    add_dataset_args(cache)
    cache.add_argument("--workers", type=int, default=os.cpu_count(), help="decoding processes (default: all cores)")
    cache.add_argument("--rebuild", action="store_true", help="discard an existing cache first")
    cache.set_defaults(handler=cmd_cache)


def cmd_synth(args: argparse.Namespace) -> int:
    from actionmoe.acquire.synthetic import write_synthetic_hmdb51

    width, height = _parse_size(args.size) if args.size else (None, None)
    config = resolve_config(
        args,
        **{
            "synth.classes": args.classes,
            "synth.videos_per_class": args.videos_per_class,
            "synth.frames": args.frames,
            "synth.width": width,
            "synth.height": height,
            "synth.seed": args.seed,
            "synth.rar_format": args.rar_format,
            "synth.solid": args.solid,
        },
    )
    for path in write_synthetic_hmdb51(args.out, config.synth).values():
        print(path)
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise UsageError(f"--size must look like 160x120, got {text!r}")
    return int(width), int(height)


def cmd_download(args: argparse.Namespace) -> int:
    from actionmoe.acquire.hmdb51 import acquire_hmdb51, build_source, read_checksum_file

    if args.source != "rar":
        from actionmoe.acquire.hub import acquire_from_hub, parse_hub_source

        source = parse_hub_source(args.source)
        config = resolve_config(args, **{"data.on_missing": args.on_missing})
        print(acquire_from_hub(args.root, source, config.data.on_missing).message)
        return 0
    config = resolve_config(args, **{"download.mirrors": args.mirror or None, "download.splits": args.splits})
    if args.find is not None:
        from actionmoe.workflows import acquire_hmdb51_copy

        print(acquire_hmdb51_copy(config, str(args.find), args.root))
        return 0
    checksums = read_checksum_file(args.checksums) if args.checksums else {}
    result = acquire_hmdb51(args.root, build_source(config.download, checksums), args.archives)
    print(result.message)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from actionmoe.data.builders import build_splits
    from actionmoe.data.splits import format_summary, summarize

    config = resolve_config(args, **data_flags(args))
    summary = summarize(build_splits(config.data))
    print_result(summary, args.json, format_summary(summary, config.data.split))
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from actionmoe.data.builders import build_splits
    from actionmoe.data.scan import format_scan, scan_split

    config = resolve_config(args, **{**data_flags(args), "data.on_missing": args.on_missing or "skip"})
    report = scan_split(build_splits(config.data), config.data, check_workers(args.workers))
    print_result(report, args.json, format_scan(report))
    return 1 if report["unreadable"] else 0


def cmd_cache(args: argparse.Namespace) -> int:
    from actionmoe.data.builders import format_cache_report, run_cache_build

    config = resolve_config(args, **data_flags(args))
    cache, report = run_cache_build(config.data, rebuild=args.rebuild, workers=check_workers(args.workers))
    summary = {
        "folder": str(cache.folder),
        "spec": cache.spec.describe(),
        "built_now": report.built,
        "already_built": report.already,
        "unreadable": report.failed,
        **cache.counts(),
    }
    print_result(summary, args.json, format_cache_report(summary))
    return 0
