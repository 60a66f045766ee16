"""The ``actionmoe`` command line. Each subcommand resolves its config and calls one library function.

Exit codes: 0 success, 1 a runtime or data error, 2 a usage error (argparse's convention); an
error a user can cause is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from actionmoe import __version__
from actionmoe.config import Config, load_config
from actionmoe.errors import ActionMoEError, UsageError
from actionmoe.files import check_output_file

log = logging.getLogger("actionmoe")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    _configure_logging(level, args.verbose)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args) or 0
    except ActionMoEError as exc:
        print(f"actionmoe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("actionmoe: interrupted", file=sys.stderr)
        return 130


class _PlainFormatter(logging.Formatter):
    """Messages as plain lines at the default level; warnings and errors say so; ``-v`` adds level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def _configure_logging(level: int, verbose: bool) -> None:
    """Our lines on stderr, unless a host (a notebook, a test runner) already shows log records."""
    logger = logging.getLogger("actionmoe")
    logger.setLevel(level)
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s") if verbose else _PlainFormatter("%(message)s")
    )
    logger.handlers[:] = [handler]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actionmoe", description="Action recognition in video, HMDB51-style.")
    parser.add_argument("--version", action="version", version=f"actionmoe {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", help="debug output (default: info)")
    loudness.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in (
        _add_info_and_demo,
        _add_ablate,
        _add_config,
        _add_train,
        _add_evaluate,
        _add_predict,
        _add_export,
        _add_serve,
        _add_bench,
        _add_data,
    ):
        add(commands)
    return parser


def _add_config_args(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument(
        "--config",
        default=default,
        metavar="FILE_OR_NAME",
        help=f"TOML file or built-in config name (default: {default or 'the built-in defaults'})",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set data.split=2 (repeatable)",
    )


def _add_info_and_demo(commands) -> None:
    info = commands.add_parser("info", help="versions, device, available decoders and extractors")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(handler=cmd_info)
    demo = commands.add_parser("demo", help="offline end-to-end run on the built-in synthetic dataset")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    demo.add_argument("--force", action="store_true", help="train again even if the demo run is finished")
    _add_config_args(demo, default="demo")
    demo.set_defaults(handler=cmd_demo)


def _add_ablate(commands) -> None:
    ablate = commands.add_parser("ablate", help="train and test config variants over several seeds, then compare")
    ablate.add_argument(
        "--variant",
        action="append",
        required=True,
        metavar="NAME=KEY=VALUE[,KEY=VALUE]",
        help="a variant of the config (NAME= for the config as it is); repeatable",
    )
    ablate.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    ablate.add_argument("--out", type=Path, required=True, help="folder for the runs and ablation.md/json/png")
    ablate.add_argument(
        "--synthetic",
        action="store_true",
        help="first write the config's synthetic dataset into OUT/hmdb51 and use it as data.root",
    )
    _add_config_args(ablate)
    ablate.set_defaults(handler=cmd_ablate)


def _add_config(commands) -> None:
    config = commands.add_parser("config", help="inspect configurations")
    config_commands = config.add_subparsers(title="config commands", metavar="ACTION")
    show = config_commands.add_parser("show", help="print the resolved config as TOML")
    _add_config_args(show)
    show.set_defaults(handler=cmd_config_show)
    config.set_defaults(handler=lambda _: config.print_help(sys.stderr) or 2)


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train one split (resumes from RUN_DIR/last.safetensors), then test it")
    train.add_argument("--split", type=int, help="official split 1, 2 or 3 (data.split)")
    train.add_argument("--root", type=Path, help="dataset root (data.root)")
    train.add_argument("--out", type=Path, help="run folder (default runs/<dataset>-split<N>)")
    train.add_argument("--force", action="store_true", help="start over even if the run folder holds a run")
    _add_config_args(train, default="hmdb51")
    train.set_defaults(handler=cmd_train)


def _add_evaluate(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="metrics, report and plots for a checkpoint on a test split")
    target = evaluate.add_mutually_exclusive_group(required=True)
    target.add_argument("--checkpoint", type=Path, help="a best.safetensors / last.safetensors file")
    target.add_argument(
        "--all-splits",
        type=Path,
        metavar="RUN_ROOT",
        help="folder holding *split1*/, *split2*/, *split3*/ runs: mean and std over splits",
    )
    evaluate.add_argument("--split", type=int, help="test split 1, 2 or 3 (default: the checkpoint's)")
    evaluate.add_argument("--views", help="CLIPSxCROPS, e.g. 1x1 (the notebook's protocol) or 10x3")
    evaluate.add_argument("--root", help="dataset root (default: the checkpoint's data.root)")
    evaluate.add_argument("--out", type=Path, help="output folder (default: <checkpoint folder>/evaluation)")
    _add_runtime_args(evaluate)
    evaluate.add_argument("--batch-size", type=int, default=4, help="videos per batch (default 4)")
    evaluate.add_argument("--workers", type=int, default=2, help="decoding processes (default 2; 0 = in process)")
    evaluate.add_argument("--json", action="store_true", help="print metrics.json instead of the headline")
    evaluate.set_defaults(handler=cmd_evaluate)


def _add_runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")


def _add_predict(commands) -> None:
    predict = commands.add_parser("predict", help="ranked actions for video files, folders or globs, from a checkpoint")
    predict.add_argument("videos", nargs="+", help="video files, folders (searched recursively) or glob patterns")
    predict.add_argument("--checkpoint", type=Path, required=True, help="a best.safetensors file")
    predict.add_argument("--top-k", type=int, default=5, help="how many classes to list (default 5)")
    _add_runtime_args(predict)
    predict.add_argument(
        "--engine",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="auto (default): onnxruntime for a .onnx --checkpoint, else PyTorch",
    )
    predict.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="default: the checkpoint's training policy on this device",
    )
    predict.add_argument(
        "--out",
        type=Path,
        metavar="FILE.csv|FILE.jsonl",
        help="write one row per video (resumable: a rerun skips videos already there)",
    )
    predict.add_argument("--workers", type=int, default=0, help="decoding processes (default 0: in this process)")
    predict.add_argument("--batch-size", type=int, default=8, help="videos per model batch (default 8)")
    predict.add_argument(
        "--window",
        metavar="SECONDS|Nf",
        help="a timeline of one long video: windows of this length (2.0 = seconds, 48f = frames)",
    )
    predict.add_argument(
        "--stride", default="1.0", metavar="SECONDS|Nf", help="with --window: the step between windows (default 1.0 s)"
    )
    predict.add_argument("--json", action="store_true", help="print JSON, one object per video")
    predict.add_argument("--grid", type=Path, metavar="PNG", help="also write a thumbnail grid of the predictions")
    predict.set_defaults(handler=cmd_predict)


def _add_export(commands) -> None:
    export = commands.add_parser("export", help="a torch.export program (.pt2) or ONNX model of a checkpoint")
    export.add_argument("--checkpoint", type=Path, required=True, help="a best.safetensors file")
    export.add_argument("--out", type=Path, required=True, help="e.g. model.pt2 (a .json sidecar is written beside)")
    export.add_argument("--batch-size", type=int, default=1, help="example batch for tracing; the axis is dynamic")
    export.add_argument(
        "--format",
        choices=["torch", "onnx"],
        help="torch: a torch.export program (.pt2); onnx: an ONNX model for onnxruntime (default: by --out's suffix)",
    )
    export.set_defaults(handler=cmd_export)


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="an upload page and JSON API that predict on posted videos")
    serve.add_argument("--checkpoint", type=Path, required=True, help="a best.safetensors file")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    _add_runtime_args(serve)
    serve.add_argument("--top-k", type=int, default=5, help="how many classes to answer with (default 5)")
    serve.add_argument("--workers", type=int, default=1, help="predictions at once (default 1)")
    serve.add_argument(
        "--queue", type=int, help="complete uploads waiting for a worker; more get 503 (default: 32 or 4 x workers)"
    )
    serve.add_argument("--max-upload-mb", type=int, default=512, help="largest upload accepted (default 512)")
    serve.add_argument("--timeout", type=float, default=300.0, help="time limit of one prediction (default 300 s)")
    serve.set_defaults(handler=cmd_serve)


def _add_bench(commands) -> None:
    bench = commands.add_parser("bench", help="benchmarks: print a table (or --json) with machine and date")
    bench_commands = bench.add_subparsers(title="benchmarks", metavar="WHAT")
    bench_data = bench_commands.add_parser("data", help="decoder and cache clips/s")
    bench_data.add_argument("--videos", type=Path, help="folder of real videos to include (default: none)")
    bench_data.add_argument("--count", type=int, default=16, help="synthetic HMDB-like videos (default 16)")
    bench_data.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    bench_data.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench_data.set_defaults(handler=cmd_bench_data)
    bench_model = bench_commands.add_parser("model", help="training clips/s against plain R(2+1)D-18")
    bench_model.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    bench_model.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    bench_model.add_argument("--no-compile", action="store_true", help="skip the torch.compile row on CUDA")
    bench_model.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_config_args(bench_model)
    bench_model.set_defaults(handler=cmd_bench_model)
    bench_train = bench_commands.add_parser("train", help="end-to-end training clips/s from a clip cache vs the model")
    bench_train.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    bench_train.add_argument("--videos", type=int, help="synthetic videos in the cache (default 48 CPU, 256 CUDA)")
    bench_train.add_argument("--repeats", type=int, default=3, help="alternating timed blocks (default 3)")
    bench_train.add_argument("--compile", action="store_true", help="torch.compile the model")
    bench_train.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_config_args(bench_train, default="hmdb51")
    bench_train.set_defaults(handler=cmd_bench_train)
    bench_predict = bench_commands.add_parser("predict", help="predict_many videos/s and onnxruntime vs PyTorch")
    bench_predict.add_argument("--checkpoint", type=Path, required=True, help="a best.safetensors file")
    bench_predict.add_argument("--videos", required=True, help="a folder (or glob) of videos to predict")
    bench_predict.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    bench_predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench_predict.set_defaults(handler=cmd_bench_predict)
    bench.set_defaults(handler=lambda _: bench.print_help(sys.stderr) or 2)


def _add_data(commands) -> None:
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
    _add_config_args(synth)
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
    _add_config_args(download)
    download.set_defaults(handler=cmd_download)


def _add_dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, required=True, help="dataset root (data.root)")
    parser.add_argument(
        "--dataset", choices=["hmdb51", "hmdb51_jsonl", "ucf101", "folder"], help="layout of the root (data.dataset)"
    )
    parser.add_argument("--split", type=int, help="split 1, 2 or 3 (data.split)")
    parser.add_argument("--on-missing", choices=["error", "skip"], help="what a listed but absent video does")
    parser.add_argument("--json", action="store_true", help="print JSON")
    _add_config_args(parser)


def _add_inspection(commands) -> None:
    summary = commands.add_parser("summary", help="classes and train/val/test counts of one split")
    _add_dataset_args(summary)
    summary.set_defaults(handler=cmd_summary)
    scan = commands.add_parser("scan", help="decode every video of a split and list the unreadable ones")
    _add_dataset_args(scan)
    scan.add_argument("--workers", type=int, default=os.cpu_count(), help="decoding processes (default: all cores)")
    scan.set_defaults(handler=cmd_scan)
    cache = commands.add_parser("cache", help="decode a split once into the memory-mapped clip cache")
    _add_dataset_args(cache)
    cache.add_argument("--workers", type=int, default=os.cpu_count(), help="decoding processes (default: all cores)")
    cache.add_argument("--rebuild", action="store_true", help="discard an existing cache first")
    cache.set_defaults(handler=cmd_cache)


def resolve_config(args: argparse.Namespace, **cli_values: object) -> Config:
    """Config file, then --set overrides, then explicit command-line flags (None = not given)."""
    overrides = list(args.overrides)
    overrides += [f"{key}={_toml_value(value)}" for key, value in cli_values.items() if value is not None]
    return load_config(args.config, overrides)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return json.dumps([str(v) for v in value])
    return str(value)


def _data_flags(args: argparse.Namespace) -> dict[str, object]:
    return {
        "data.root": args.root,
        "data.dataset": args.dataset,
        "data.split": args.split,
        "data.on_missing": args.on_missing,
    }


def _workers(count: int) -> int:
    if count < 1:
        raise UsageError(f"--workers must be at least 1, got {count}")
    return count


def _print(value: dict | list, as_json: bool, text: str) -> None:
    print(json.dumps(value, indent=2, allow_nan=False) if as_json else text)


def cmd_info(args: argparse.Namespace) -> int:
    from actionmoe.info import environment_report, format_report

    report = environment_report()
    _print(report, args.json, format_report(report))
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from actionmoe.config import config_to_toml

    print(config_to_toml(resolve_config(args)), end="")
    return 0


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

    config = resolve_config(args, **_data_flags(args))
    summary = summarize(build_splits(config.data))
    _print(summary, args.json, format_summary(summary, config.data.split))
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from actionmoe.data.builders import build_splits
    from actionmoe.data.scan import format_scan, scan_split

    config = resolve_config(args, **{**_data_flags(args), "data.on_missing": args.on_missing or "skip"})
    report = scan_split(build_splits(config.data), config.data, _workers(args.workers))
    _print(report, args.json, format_scan(report))
    return 1 if report["unreadable"] else 0


def cmd_cache(args: argparse.Namespace) -> int:
    from actionmoe.data.builders import format_cache_report, run_cache_build

    config = resolve_config(args, **_data_flags(args))
    cache, report = run_cache_build(config.data, rebuild=args.rebuild, workers=_workers(args.workers))
    summary = {
        "folder": str(cache.folder),
        "spec": cache.spec.describe(),
        "built_now": report.built,
        "already_built": report.already,
        "unreadable": report.failed,
        **cache.counts(),
    }
    _print(summary, args.json, format_cache_report(summary))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from actionmoe.engine.distributed import is_main_process
    from actionmoe.evaluation.reports import headline
    from actionmoe.workflows import run_training

    config = resolve_config(args, **{"data.split": args.split, "data.root": args.root})
    outcome = run_training(config, args.out, args.force)
    if not is_main_process():
        return 0
    print(outcome.message)
    print(headline(outcome.test_metrics))
    print(f"run folder: {outcome.run_dir} (report: {outcome.evaluation_dir / 'report.md'})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from actionmoe.evaluation.evaluate import EvaluationOptions
    from actionmoe.evaluation.metrics import parse_views
    from actionmoe.evaluation.reports import evaluate_all_splits, evaluate_into, format_split_summary, headline

    views = parse_views(args.views) if args.views else None
    options = EvaluationOptions(args.split, views, args.root, args.device, args.batch_size, args.workers)
    if args.checkpoint is not None:
        out = args.out or args.checkpoint.parent / "evaluation"
        metrics = evaluate_into(args.checkpoint, out, options)
        _print(
            metrics, args.json, f"{headline(metrics)}\nreport: {out / 'report.md'} (plots and metrics.json beside it)"
        )
        return 0
    out = args.out or args.all_splits / "evaluation"
    summary = evaluate_all_splits(args.all_splits, out, options)
    _print(summary, args.json, format_split_summary(summary, out))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict every video; an unreadable one is reported on its own line (or row) and makes the exit code 1."""
    from actionmoe.batch import check_batch_output, expand_inputs, predict_to_file
    from actionmoe.inference import Predictor, check_batch_options, choose_engine

    check_batch_options(args.top_k, args.workers, args.batch_size)
    choose_engine(args.checkpoint, args.engine)
    videos = expand_inputs(args.videos)
    if args.window is not None:
        return _predict_timeline(args, videos)
    if args.out is not None:
        check_batch_output(args.out)
    if args.grid is not None and not args.grid.is_dir():
        check_output_file(args.grid.with_suffix(".png"), "--grid")
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, args.precision, args.engine)
    if args.out is not None:
        summary = predict_to_file(predictor, videos, args.out, args.top_k, args.workers, args.batch_size)
        print(summary.line(), file=sys.stderr)
        return 1 if summary.unreadable else 0
    results = predictor.predict_many(videos, args.top_k, args.workers, args.batch_size, progress=False)
    lines = [
        f"{r.source}: error: {r.error}"
        if r.error
        else f"{r.source}: " + ", ".join(f"{p.label} {p.score:.3f}" for p in r.predictions)
        for r in results
    ]
    _print([r.to_json() for r in results], args.json, "\n".join(lines))
    if args.grid:
        from actionmoe.visualize import save_prediction_grid

        print(f"grid: {save_prediction_grid(results, predictor.classes, args.grid)}", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


def _predict_timeline(args: argparse.Namespace, videos: list[Path]) -> int:
    from actionmoe.inference import Predictor
    from actionmoe.timeline import (
        check_timeline_output,
        parse_span,
        predict_timeline,
        timeline_json,
        timeline_summary,
        write_timeline,
    )

    if len(videos) != 1:
        raise UsageError(f"--window makes a timeline of one video; got {len(videos)}")
    parse_span(args.window, "window"), parse_span(args.stride, "stride")  # usage errors before loading anything
    if args.out is not None:
        check_timeline_output(args.out)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, args.precision, args.engine)
    timeline = predict_timeline(predictor, videos[0], args.window, args.stride, args.top_k, args.batch_size)
    print(timeline_json(timeline) if args.json else timeline_summary(timeline))
    if args.out is not None:
        print(f"timeline: {', '.join(map(str, write_timeline(timeline, args.out)))}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from actionmoe.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.out, args.batch_size, args.format)
    print(f"{result.model_path} (input {list(result.input_shape)}); classes and preprocessing: {result.sidecar_path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from actionmoe.inference import Predictor
    from actionmoe.web.server import ServiceLimits, check_limits, serve

    queue = args.queue if args.queue is not None else max(32, 4 * args.workers)
    limits = ServiceLimits(max(0, args.max_upload_mb) << 20, args.workers, queue, args.timeout)
    check_limits(limits)
    serve(Predictor.from_checkpoint(args.checkpoint, args.device), args.host, args.port, args.top_k, limits)
    return 0


def cmd_bench_data(args: argparse.Namespace) -> int:
    from actionmoe.bench.data import format_data_benchmark, run_data_benchmark

    result = run_data_benchmark(args.videos, args.count, args.repeats)
    _print(result, args.json, format_data_benchmark(result))
    return 0


def cmd_bench_model(args: argparse.Namespace) -> int:
    from actionmoe.bench.model import format_model_benchmark, run_model_benchmark

    config = resolve_config(args)
    result = run_model_benchmark(config.model, args.device, args.repeats, compile_too=not args.no_compile)
    _print(result, args.json, format_model_benchmark(result))
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from actionmoe.bench.train import format_train_benchmark, run_train_benchmark

    if args.videos is not None and args.videos < 1 or args.repeats < 1:
        raise UsageError("--videos and --repeats must be at least 1")
    result = run_train_benchmark(resolve_config(args).model, args.device, args.videos, args.repeats, args.compile)
    _print(result, args.json, format_train_benchmark(result))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from actionmoe.ablation import ablation_markdown, parse_variant, run_ablation
    from actionmoe.workflows import acquire_demo_dataset

    if args.config is None:
        raise UsageError("ablate needs --config (a TOML file or a built-in name such as motion12)")
    variants = [parse_variant(text) for text in args.variant]
    base = list(args.overrides)
    if args.synthetic:
        base.append(f"data.root={acquire_demo_dataset(resolve_config(args), args.out)}")
    summary = run_ablation(args.config, variants, args.seeds, args.out, tuple(base))
    print(ablation_markdown(summary), end="")
    print(f"written: {args.out / 'ablation.md'}, ablation.json, ablation.png")
    return 0


def cmd_bench_predict(args: argparse.Namespace) -> int:
    from actionmoe.bench.predict import format_predict_benchmark, run_predict_benchmark

    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    result = run_predict_benchmark(args.checkpoint, Path(args.videos), args.repeats)
    _print(result, args.json, format_predict_benchmark(result))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from actionmoe.data.splits import format_summary
    from actionmoe.evaluation.reports import headline
    from actionmoe.workflows import run_demo

    config = resolve_config(args)
    result = run_demo(config, args.out, args.force)
    training = result.training
    print(format_summary(result.summary, config.data.split))
    print(training.message)
    print(headline(training.test_metrics))
    print(f"chance level: {1 / result.summary['num_classes']:.3f}")
    print(f"dataset: {result.dataset_root}")
    print(f"run folder: {training.run_dir} (checkpoints, metrics.jsonl, evaluation/ with report.md and plots)")
    return 0
