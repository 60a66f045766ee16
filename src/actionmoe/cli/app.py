"""Live use: ``actionmoe app`` (the Gradio app, public with --share) and ``actionmoe stream`` (webcams, streams)."""

from __future__ import annotations

import argparse
from pathlib import Path

from actionmoe.cli.common import add_device_arg, add_min_confidence_arg, checkpoint_source, examples
from actionmoe.errors import UsageError


def add_app(commands) -> None:
    app = commands.add_parser(
        "app",
        help="a Gradio app for a trained model (works inside Colab and Kaggle with --share)",
        **examples(
            "actionmoe app --checkpoint runs/hmdb51-split1/best.safetensors     # http://127.0.0.1:7860/",
            "actionmoe app --checkpoint hf://me/actionmoe-hmdb51 --share        # a public link (Colab, Kaggle)",
        ),
    )
    app.add_argument(
        "--checkpoint", type=checkpoint_source, required=True, help="a checkpoint, a model folder or hf://OWNER/NAME"
    )
    app.add_argument("--share", action="store_true", help="also a public gradio.live link (needs the internet)")
    app.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    app.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    add_device_arg(app)
    app.add_argument("--concurrency", type=int, default=2, help="predictions at once; the rest queue (default 2)")
    app.add_argument("--top-k", type=int, default=5, help="how many classes to show (default 5)")
    app.add_argument("--examples", type=Path, metavar="DIR", help="videos offered as one-click examples")
    app.add_argument(
        "--space", type=Path, metavar="DIR", help="write a Hugging Face Space folder (app, requirements, model) instead"
    )
    add_min_confidence_arg(app)
    app.set_defaults(handler=cmd_app)


def cmd_app(args: argparse.Namespace) -> int:
    if args.concurrency < 1 or args.top_k < 1 or not 0 < args.port < 65536:
        raise UsageError("--concurrency and --top-k must be at least 1 and --port between 1 and 65535")
    from actionmoe.predict.predictor import Predictor, check_min_confidence

    check_min_confidence(args.min_confidence)
    from actionmoe.web.app import build_app, write_space

    if args.space is not None:
        folder = write_space(args.checkpoint, args.space, args.concurrency)
        print(f"Space folder: {folder} (app.py, requirements.txt, README.md, model/); upload it as a Gradio Space")
        return 0
    examples = ()
    if args.examples is not None:
        from actionmoe.predict.inputs import expand_inputs

        examples = tuple(expand_inputs([str(args.examples)]))
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, min_confidence=args.min_confidence)
    app = build_app(predictor, args.concurrency, args.top_k, examples)
    app.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True)
    return 0


def add_stream(commands) -> None:
    stream = commands.add_parser(
        "stream",
        help="classify a webcam, an RTSP/HTTP/UDP stream or a file window by window, as frames arrive",
        **examples(
            "actionmoe stream 0 --checkpoint best.safetensors                  # the first webcam",
            "actionmoe stream rtsp://camera.local/live --checkpoint hf://me/actionmoe-hmdb51 --out live.jsonl",
            "actionmoe stream match.mp4 --realtime --checkpoint best.safetensors   # a file at its own pace",
        ),
    )
    stream.add_argument("source", help="a webcam index or /dev/videoN, a stream URL, or a video file")
    stream.add_argument(
        "--checkpoint", type=checkpoint_source, required=True, help="a checkpoint, a model folder or hf://OWNER/NAME"
    )
    stream.add_argument("--window", default="2.0", help="seconds (2.0) or frames (48f) per window (default 2.0)")
    stream.add_argument("--stride", default="1.0", help="seconds or frames between windows (default 1.0)")
    stream.add_argument("--realtime", action="store_true", help="read a file at its own frame rate, as if live")
    stream.add_argument("--top-k", type=int, default=3, help="classes per window (default 3)")
    stream.add_argument("--reconnects", type=int, default=3, help="reopen a dropped network stream (default 3)")
    stream.add_argument("--out", type=Path, help="JSON lines file (default: standard output)")
    add_device_arg(stream)
    add_min_confidence_arg(stream)
    stream.set_defaults(handler=cmd_stream)


def cmd_stream(args: argparse.Namespace) -> int:
    """One JSON line per window; the summary on stderr; exit 1 when the source could not be read at all."""
    import json
    import sys

    from actionmoe.files import check_output_file
    from actionmoe.predict.predictor import Predictor, check_min_confidence
    from actionmoe.predict.stream import StreamOptions, check_stream_options, run_stream

    options = StreamOptions(args.window, args.stride, args.top_k, args.realtime, args.reconnects)
    check_stream_options(options)
    check_min_confidence(args.min_confidence)
    if args.out is not None:
        check_output_file(args.out, "--out")
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, min_confidence=args.min_confidence)
    out = open(args.out, "a", encoding="utf-8") if args.out is not None else sys.stdout  # noqa: SIM115
    try:

        def emit(row: dict) -> None:
            out.write(json.dumps(row) + "\n")
            out.flush()

        summary = run_stream(predictor, args.source, options, emit)
    finally:
        if out is not sys.stdout:
            out.close()
    print(summary.line(), file=sys.stderr)
    return 0 if summary.windows or summary.ended in ("source ended", "interrupted") else 1
