"""``actionmoe predict``, ``export`` and ``serve``: the uses of a trained model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from actionmoe.cli.common import (
    add_device_arg,
    add_min_confidence_arg,
    checkpoint_source,
    examples,
    print_result,
)
from actionmoe.errors import UsageError
from actionmoe.files import check_output_file


def add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="ranked actions for video files, folders or globs, from a checkpoint",
        **examples(
            "actionmoe predict clip.mp4 --checkpoint best.safetensors",
            "actionmoe predict footage/ --checkpoint best.safetensors --out predictions.csv --workers 4",
            "actionmoe predict match.mp4 --checkpoint best.safetensors --window 2.0 --stride 1.0 --out timeline.json",
            "actionmoe predict clip.avi --checkpoint model.onnx --top-k 3 --json",
        ),
    )
    predict.add_argument("videos", nargs="+", help="video files, folders (searched recursively) or glob patterns")
    predict.add_argument(
        "--checkpoint",
        type=checkpoint_source,
        required=True,
        help="a best.safetensors file, a model folder or hf://OWNER/NAME",
    )
    predict.add_argument("--top-k", type=int, default=5, help="how many classes to list (default 5)")
    add_device_arg(predict)
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
    predict.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array, one object per video (with --window: the timeline object)",
    )
    predict.add_argument("--grid", type=Path, metavar="PNG", help="also write a thumbnail grid of the predictions")
    add_min_confidence_arg(predict)
    predict.set_defaults(handler=cmd_predict)


def add_export(commands) -> None:
    export = commands.add_parser(
        "export",
        help="a torch.export program (.pt2) or ONNX model of a checkpoint",
        **examples(
            "actionmoe export --checkpoint best.safetensors --out model.onnx",
            "actionmoe export --checkpoint best.safetensors --out model.pt2",
        ),
    )
    export.add_argument(
        "--checkpoint",
        type=checkpoint_source,
        required=True,
        help="a best.safetensors file, a model folder or hf://OWNER/NAME",
    )
    export.add_argument("--out", type=Path, required=True, help="e.g. model.pt2 (a .json sidecar is written beside)")
    export.add_argument("--batch-size", type=int, default=1, help="example batch for tracing; the axis is dynamic")
    export.add_argument(
        "--format",
        choices=["torch", "onnx"],
        help="torch: a torch.export program (.pt2); onnx: an ONNX model for onnxruntime (default: by --out's suffix)",
    )
    export.set_defaults(handler=cmd_export)


def add_serve(commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="an upload page and JSON API that predict on posted videos",
        **examples(
            "actionmoe serve --checkpoint best.safetensors   # then open http://127.0.0.1:8000/ (API: /docs)",
            "actionmoe serve --checkpoint model.onnx --workers 2 --top-k 3",
        ),
    )
    serve.add_argument(
        "--checkpoint",
        type=checkpoint_source,
        required=True,
        help="a best.safetensors file, a model folder or hf://OWNER/NAME",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    add_device_arg(serve)
    serve.add_argument("--top-k", type=int, default=5, help="how many classes to answer with (default 5)")
    serve.add_argument("--workers", type=int, default=1, help="predictions at once (default 1)")
    serve.add_argument(
        "--queue", type=int, help="complete uploads waiting for a worker; more get 503 (default: 32 or 4 x workers)"
    )
    serve.add_argument("--max-upload-mb", type=int, default=512, help="largest upload accepted (default 512)")
    serve.add_argument("--timeout", type=float, default=300.0, help="time limit of one prediction (default 300 s)")
    add_min_confidence_arg(serve)
    serve.set_defaults(handler=cmd_serve)


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict every video; an unreadable one is reported on its own line (or row) and makes the exit code 1."""
    from actionmoe.predict.batch import check_batch_output, predict_to_file
    from actionmoe.predict.inputs import expand_inputs
    from actionmoe.predict.predictor import Predictor, check_batch_options, check_min_confidence, choose_engine

    check_batch_options(args.top_k, args.workers, args.batch_size)
    check_min_confidence(args.min_confidence)
    choose_engine(args.checkpoint, args.engine)
    videos = expand_inputs(args.videos)
    if args.window is not None:
        return _predict_timeline(args, videos)
    if args.out is not None:
        check_batch_output(args.out)
    if args.grid is not None and not args.grid.is_dir():
        check_output_file(args.grid.with_suffix(".png"), "--grid")
    predictor = Predictor.from_checkpoint(
        args.checkpoint, args.device, args.precision, args.engine, args.min_confidence
    )
    if args.out is not None:
        summary = predict_to_file(predictor, videos, args.out, args.top_k, args.workers, args.batch_size)
        print(summary.line(), file=sys.stderr)
        return 1 if summary.unreadable else 0
    results = predictor.predict_many(videos, args.top_k, args.workers, args.batch_size, progress=False)
    lines = [
        f"{r.source}: error: {r.error}"
        if r.error
        else f"{r.source}: "
        + ("unknown (none above the minimum confidence; ranked: " if r.answer == "unknown" else "")
        + ", ".join(f"{p.label} {p.score:.3f}" for p in r.predictions)
        + (")" if r.answer == "unknown" else "")
        for r in results
    ]
    print_result([r.to_json() for r in results], args.json, "\n".join(lines))
    if args.grid:
        from actionmoe.predict.visualize import save_prediction_grid

        print(f"grid: {save_prediction_grid(results, predictor.classes, args.grid)}", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


def _predict_timeline(args: argparse.Namespace, videos: list[Path]) -> int:
    from actionmoe.predict.predictor import Predictor
    from actionmoe.predict.timeline import (
        check_timeline_output,
        parse_span,
        predict_timeline,
        timeline_json,
        timeline_summary,
        write_timeline,
    )

    if len(videos) != 1:
        raise UsageError(f"--window makes a timeline of one video; got {len(videos)}")
    parse_span(args.window, "window")  # usage errors before anything is loaded
    parse_span(args.stride, "stride")
    if args.out is not None:
        check_timeline_output(args.out)
    predictor = Predictor.from_checkpoint(
        args.checkpoint, args.device, args.precision, args.engine, args.min_confidence
    )
    timeline = predict_timeline(predictor, videos[0], args.window, args.stride, args.top_k, args.batch_size)
    print(timeline_json(timeline) if args.json else timeline_summary(timeline))
    if args.out is not None:
        print(f"timeline: {', '.join(map(str, write_timeline(timeline, args.out)))}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from actionmoe.predict.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.out, args.batch_size, args.format)
    print(f"{result.model_path} (input {list(result.input_shape)}); classes and preprocessing: {result.sidecar_path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from actionmoe.predict.predictor import Predictor, check_min_confidence
    from actionmoe.web.server import ServiceLimits, check_limits, serve

    queue = args.queue if args.queue is not None else max(32, 4 * args.workers)
    limits = ServiceLimits(max(0, args.max_upload_mb) << 20, args.workers, queue, args.timeout)
    check_limits(limits)
    check_min_confidence(args.min_confidence)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, min_confidence=args.min_confidence)
    serve(predictor, args.host, args.port, args.top_k, limits)
    return 0
