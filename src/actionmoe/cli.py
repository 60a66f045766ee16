"""The ``actionmoe`` command line. Each subcommand resolves its config and calls one library function."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from actionmoe import __version__
from actionmoe.config import Config, load_config
from actionmoe.errors import ActionMoEError

log = logging.getLogger("actionmoe")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * args.verbose, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("libarchive").setLevel(logging.WARNING)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except ActionMoEError as exc:
        print(f"actionmoe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("actionmoe: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actionmoe", description="Action recognition in video, HMDB51-style.")
    parser.add_argument("--version", action="version", version=f"actionmoe {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=1, help="more log output (-vv for debug)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in (_add_info_and_demo, _add_train, _add_evaluate, _add_predict, _add_export, _add_serve, _add_bench,
                _add_data):
        add(commands)
    return parser


def _add_info_and_demo(commands) -> None:
    info = commands.add_parser("info", help="versions, device, available decoders and extractors")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=cmd_info)
    demo = commands.add_parser("demo", help="offline end-to-end run on the built-in synthetic dataset")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    _add_config_args(demo, default="demo")
    demo.set_defaults(handler=cmd_demo)


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train one split (resumes from RUN_DIR/last.safetensors)")
    train.add_argument("--split", type=int)
    train.add_argument("--root", type=Path, help="dataset root (data.root)")
    train.add_argument("--out", type=Path, help="run folder (default runs/<dataset>-split<N>)")
    train.add_argument("--force", action="store_true", help="start over even if the run folder holds a run")
    _add_config_args(train, default="hmdb51")
    train.set_defaults(handler=cmd_train)


def _add_evaluate(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="metrics, report and plots for a checkpoint on a test split")
    target = evaluate.add_mutually_exclusive_group(required=True)
    target.add_argument("--checkpoint", type=Path, help="a best.safetensors / last.safetensors file")
    target.add_argument("--all-splits", type=Path, metavar="RUN_ROOT",
                        help="folder holding *split1*/, *split2*/, *split3*/ runs: mean and std over splits")
    evaluate.add_argument("--split", type=int, help="default: the checkpoint's split")
    evaluate.add_argument("--views", help="CLIPSxCROPS, e.g. 1x1 (the notebook's protocol) or 10x3")
    evaluate.add_argument("--root", help="dataset root (default: the checkpoint's data.root)")
    evaluate.add_argument("--out", type=Path, help="default: <checkpoint folder>/evaluation")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--batch-size", type=int, default=4)
    evaluate.add_argument("--workers", type=int, default=2)
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_evaluate)


def _add_predict(commands) -> None:
    predict = commands.add_parser("predict", help="ranked actions for video files, from a checkpoint")
    predict.add_argument("videos", type=Path, nargs="+")
    predict.add_argument("--checkpoint", type=Path, required=True)
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--device", default="auto")
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--grid", type=Path, metavar="PNG", help="also write a thumbnail grid of the predictions")
    predict.set_defaults(handler=cmd_predict)


def _add_export(commands) -> None:
    export = commands.add_parser("export", help="a torch.export program (.pt2) of a checkpoint, for deployment")
    export.add_argument("--checkpoint", type=Path, required=True)
    export.add_argument("--out", type=Path, required=True, help="e.g. model.pt2 (a .json sidecar is written beside)")
    export.add_argument("--batch-size", type=int, default=1)
    export.set_defaults(handler=cmd_export)


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="an upload page and JSON API that predict on posted videos")
    serve.add_argument("--checkpoint", type=Path, required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--device", default="auto")
    serve.add_argument("--top-k", type=int, default=5)
    serve.set_defaults(handler=cmd_serve)


def _add_bench(commands) -> None:
    bench = commands.add_parser("bench", help="benchmarks: print a table (or --json) with machine and date")
    bench_commands = bench.add_subparsers(title="benchmarks", metavar="WHAT")
    bench_data = bench_commands.add_parser("data", help="decoder and cache clips/s")
    bench_data.add_argument("--videos", type=Path, default=Path("../shared/data/videos"),
                            help="folder of real videos to include")
    bench_data.add_argument("--count", type=int, default=16, help="synthetic HMDB-like videos")
    bench_data.add_argument("--repeats", type=int, default=3)
    bench_data.add_argument("--json", action="store_true")
    bench_data.set_defaults(handler=cmd_bench_data)
    bench_model = bench_commands.add_parser("model", help="training clips/s against plain R(2+1)D-18")
    bench_model.add_argument("--device", choices=["cpu", "cuda"])
    bench_model.add_argument("--repeats", type=int, default=3)
    bench_model.add_argument("--no-compile", action="store_true", help="skip the torch.compile row on CUDA")
    bench_model.add_argument("--json", action="store_true")
    _add_config_args(bench_model)
    bench_model.set_defaults(handler=cmd_bench_model)
    bench.set_defaults(handler=lambda _: bench.print_help() or 2)


def _add_data(commands) -> None:
    data = commands.add_parser("data", help="acquire and inspect datasets")
    data_commands = data.add_subparsers(title="data commands", metavar="ACTION")
    _add_synth(data_commands)
    _add_download(data_commands)
    _add_summary(data_commands)
    data.set_defaults(handler=lambda _: data.print_help() or 2)


def _add_config_args(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--config", default=default, help="TOML file or built-in config name")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set data.split=2 (repeatable)")


def _add_synth(commands) -> None:
    synth = commands.add_parser("synth", help="write the synthetic motion dataset as HMDB51-format archives")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--classes", type=int)
    synth.add_argument("--videos-per-class", type=int)
    synth.add_argument("--frames", type=int)
    synth.add_argument("--size", help="WxH, e.g. 160x120")
    synth.add_argument("--seed", type=int)
    synth.add_argument("--rar-format", choices=["rar4", "rar5"])
    synth.add_argument("--solid", action="store_true", default=None)
    _add_config_args(synth)
    synth.set_defaults(handler=cmd_synth)


def _add_download(commands) -> None:
    download = commands.add_parser("download", help="download (or take local copies of) HMDB51 and extract it")
    download.add_argument("dataset", choices=["hmdb51"])
    download.add_argument("--root", type=Path, required=True)
    download.add_argument("--mirror", action="append", default=[], metavar="BASE_URL",
                          help="base URL holding the archives; repeat to try several in order")
    download.add_argument("--archives", type=Path, help="folder with local copies of both archives")
    download.add_argument("--checksums", type=Path, help="md5sum-style file overriding the expected MD5s")
    _add_config_args(download)
    download.set_defaults(handler=cmd_download)


def _add_dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--dataset", choices=["hmdb51", "ucf101", "folder"])
    parser.add_argument("--split", type=int)
    parser.add_argument("--on-missing", choices=["error", "skip"])
    parser.add_argument("--json", action="store_true")
    _add_config_args(parser)


def _data_flags(args: argparse.Namespace) -> dict[str, object]:
    return {"data.root": args.root, "data.dataset": args.dataset, "data.split": args.split,
            "data.on_missing": args.on_missing}


def _add_summary(commands) -> None:
    summary = commands.add_parser("summary", help="classes and train/val/test counts of one split")
    _add_dataset_args(summary)
    summary.set_defaults(handler=cmd_summary)
    scan = commands.add_parser("scan", help="decode every video of a split and list the unreadable ones")
    _add_dataset_args(scan)
    scan.add_argument("--workers", type=int, default=os.cpu_count())
    scan.set_defaults(handler=cmd_scan)
    cache = commands.add_parser("cache", help="decode a split once into the memory-mapped clip cache")
    _add_dataset_args(cache)
    cache.add_argument("--workers", type=int, default=os.cpu_count())
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
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return json.dumps([str(v) for v in value])
    return str(value)


def cmd_info(args: argparse.Namespace) -> int:
    from actionmoe.info import environment_report, format_report

    report = environment_report()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from actionmoe.data.synthetic import write_synthetic_hmdb51

    width, height = _parse_size(args.size) if args.size else (None, None)
    config = resolve_config(
        args, **{"synth.classes": args.classes, "synth.videos_per_class": args.videos_per_class,
                 "synth.frames": args.frames, "synth.width": width, "synth.height": height, "synth.seed": args.seed,
                 "synth.rar_format": args.rar_format, "synth.solid": args.solid}
    )
    files = write_synthetic_hmdb51(args.out, config.synth)
    for path in files.values():
        print(path)
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()) or int(width) < 16 or int(height) < 16:
        raise ActionMoEError(f"--size must look like 160x120 (each side at least 16), got {text!r}")
    return int(width), int(height)


def cmd_download(args: argparse.Namespace) -> int:
    from actionmoe.data.acquire import acquire_hmdb51, read_checksum_file
    from actionmoe.data.builders import build_archive_specs
    from actionmoe.data.download import RetryPolicy

    config = resolve_config(args, **{"download.mirrors": args.mirror or None})
    spec = config.download
    videos, splits = build_archive_specs(spec, read_checksum_file(args.checksums) if args.checksums else {})
    result = acquire_hmdb51(args.root, videos, splits, mirrors=spec.mirrors, archives_dir=args.archives,
                            policy=RetryPolicy(spec.retries, spec.backoff_s, spec.timeout_s))
    print(result.message)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from actionmoe.data.builders import build_splits
    from actionmoe.data.splits import summarize

    config = resolve_config(args, **_data_flags(args))
    splits = build_splits(config.data)
    summary = summarize(splits)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary, config.data.split))
    return 0


def format_summary(summary: dict, split: int) -> str:
    counts = summary["counts"]
    val_note = " (validation = test, as in the original notebook)" if summary["val_is_test"] else ""
    lines = [
        f"split {split}: {summary['num_classes']} classes, train {counts['train']}, val {counts['val']}, "
        f"test {counts['test']}{val_note}",
    ]
    if summary["missing"]:
        lines.append(f"missing videos skipped: {len(summary['missing'])} (e.g. {summary['missing'][0]})")
    if summary["unreadable"]:
        lines.append(f"unreadable videos: {len(summary['unreadable'])} (e.g. {summary['unreadable'][0]})")
    return "\n".join(lines)


def cmd_scan(args: argparse.Namespace) -> int:
    from actionmoe.data.builders import build_splits
    from actionmoe.data.scan import scan_videos

    config = resolve_config(args, **{**_data_flags(args), "data.on_missing": args.on_missing or "skip"})
    splits = build_splits(config.data)
    paths = sorted({r.path for r in (*splits.train, *splits.val, *splits.test)} | set(splits.missing))
    results = scan_videos(paths, config.data.decoder, config.data.clip_len, args.workers)
    bad = [r for r in results if not r.ok]
    if args.json:
        print(json.dumps({"videos": len(results), "unreadable": [{"path": r.path, "reason": r.reason} for r in bad]},
                         indent=2))
    else:
        print(f"{len(results) - len(bad)} of {len(results)} videos decode")
        for result in bad:
            print(f"unreadable: {result.reason}")
    return 1 if bad else 0


def cmd_cache(args: argparse.Namespace) -> int:
    from actionmoe.data.builders import run_cache_build

    config = resolve_config(args, **_data_flags(args))
    cache, report = run_cache_build(config.data, rebuild=args.rebuild, workers=args.workers)
    summary = {"folder": str(cache.folder), "spec": cache.spec.describe(), "built_now": report.built,
               "already_built": report.already, "failed": report.failed, **cache.counts()}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"cache {cache.folder}: {summary['built']} of {summary['videos']} videos built "
              f"({report.built} now, {report.already} before), {len(report.failed)} unreadable; {cache.spec.describe()}")
        for reason in report.failed.values():
            print(f"unreadable: {reason}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from actionmoe.engine.run import run_training

    config = resolve_config(args, **{"data.split": args.split, "data.root": args.root})
    result = run_training(config, args.out, args.force)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(result.message)
    best = result.run_dir / "best.safetensors"
    if result.trained or not (result.run_dir / "evaluation" / "metrics.json").exists():
        evaluate_into(best, result.run_dir / "evaluation", EvaluationArgs(workers=config.data.num_workers))
    print(f"run folder: {result.run_dir}")
    return 0


@dataclass(frozen=True)
class EvaluationArgs:
    split: int | None = None
    views: str | None = None
    root: str | None = None
    device: str = "auto"
    batch_size: int = 4
    workers: int = 2


def evaluate_into(checkpoint: Path, out: Path, args: EvaluationArgs, quiet: bool = False) -> dict:
    """Evaluate ``checkpoint`` on its test split, write the report into ``out``, print the headline."""
    from actionmoe.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint
    from actionmoe.evaluation.metrics import parse_views
    from actionmoe.evaluation.reports import headline, write_report

    try:
        views = parse_views(args.views) if args.views else None
    except ValueError as exc:
        raise ActionMoEError(str(exc)) from exc
    options = EvaluationOptions(args.split, views, args.root, args.device, args.batch_size, args.workers)
    evaluation = evaluate_checkpoint(checkpoint, options)
    write_report(evaluation, out)
    if not quiet:
        print(headline(evaluation.metrics))
        print(f"report: {out / 'report.md'} (plots and metrics.json beside it)")
    return evaluation.metrics


def cmd_evaluate(args: argparse.Namespace) -> int:
    options = EvaluationArgs(args.split, args.views, args.root, args.device, args.batch_size, args.workers)
    if args.checkpoint is not None:
        out = args.out or args.checkpoint.parent / "evaluation"
        metrics = evaluate_into(args.checkpoint, out, options, quiet=args.json)
        if args.json:
            print(json.dumps(metrics, indent=2))
        return 0
    return _evaluate_all_splits(args.all_splits, args.out or args.all_splits / "evaluation", options, args.json)


def _evaluate_all_splits(run_root: Path, out: Path, options: EvaluationArgs, as_json: bool) -> int:
    from actionmoe.evaluation.reports import find_split_checkpoints, split_summary, split_summary_markdown

    checkpoints = find_split_checkpoints(run_root)
    if not checkpoints:
        raise ActionMoEError(f"no */best.safetensors under {run_root} in folders named like hmdb51-split1")
    per_split = {split: evaluate_into(path, out / f"split{split}", replace(options, split=split), quiet=as_json)
                 for split, path in checkpoints.items()}
    summary = split_summary(per_split)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(split_summary_markdown(summary))
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        top1 = summary["top1"]
        print(f"splits {summary['splits']}: top-1 {top1['mean']:.4f} +- {top1['std']:.4f}; summary: {out / 'summary.md'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict every video; an unreadable one is reported on its own line and makes the exit code 1."""
    from actionmoe.errors import VideoDecodeError
    from actionmoe.inference import Predictor

    predictor = Predictor.from_checkpoint(args.checkpoint, args.device)
    results, failed = {}, 0
    for video in args.videos:
        try:
            results[str(video)] = [p.__dict__ for p in predictor.predict(video, args.top_k)]
        except VideoDecodeError as exc:
            results[str(video)] = {"error": str(exc)}
            failed += 1
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for video, result in results.items():
            if isinstance(result, dict):
                print(f"{video}: error: {result['error']}")
            else:
                ranked = ", ".join(f"{p['label']} {p['score']:.3f}" for p in result)
                print(f"{video}: {ranked}")
    if args.grid:
        _write_grid(results, predictor.classes, args.grid)
    return 1 if failed else 0


def _write_grid(results: dict, classes: tuple[str, ...], path: Path) -> None:
    from actionmoe.inference import Prediction
    from actionmoe.visualize import GridCell, save_prediction_grid

    cells = [GridCell(Path(video), None, result["error"]) if isinstance(result, dict)
             else GridCell(Path(video), [Prediction(**p) for p in result]) for video, result in results.items()]
    save_prediction_grid(cells, classes, path)
    print(f"grid: {path}", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    from actionmoe.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.out, args.batch_size)
    print(f"{result.model_path} (input {list(result.input_shape)}); classes and preprocessing: {result.sidecar_path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from actionmoe.inference import Predictor
    from actionmoe.web.server import PredictionServer

    server = PredictionServer((args.host, args.port), Predictor.from_checkpoint(args.checkpoint, args.device),
                              args.top_k)
    print(f"serving {args.checkpoint} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_bench_data(args: argparse.Namespace) -> int:
    from actionmoe.bench.data import format_data_benchmark, run_data_benchmark

    result = run_data_benchmark(args.videos, args.count, args.repeats)
    print(json.dumps(result, indent=2) if args.json else format_data_benchmark(result))
    return 0


def cmd_bench_model(args: argparse.Namespace) -> int:
    from actionmoe.bench.model import format_model_benchmark, run_model_benchmark

    config = resolve_config(args)
    result = run_model_benchmark(config.model, args.device, args.repeats, compile_too=not args.no_compile)
    print(json.dumps(result, indent=2) if args.json else format_model_benchmark(result))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from actionmoe.demo import run_demo

    config = resolve_config(args)
    result = run_demo(config, args.out)
    print(format_summary(result.summary, config.data.split))
    print(result.training.message)
    run_dir = result.training.run_dir
    evaluate_into(run_dir / "best.safetensors", run_dir / "evaluation", EvaluationArgs(workers=config.data.num_workers))
    print(f"chance level: {1 / result.summary['num_classes']:.3f}")
    print(f"dataset: {result.dataset_root}")
    print(f"run folder: {run_dir} (checkpoints, metrics.jsonl, evaluation/ with report.md and plots)")
    return 0
