"""``actionmoe app``: the Gradio app (upload or webcam, ranked actions, timeline), public with --share."""

from __future__ import annotations

import argparse
from pathlib import Path

from actionmoe.cli.common import add_device_arg, checkpoint_source, examples
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
    app.add_argument(
        "--space", type=Path, metavar="DIR", help="write a Hugging Face Space folder (app, requirements, model) instead"
    )
    app.set_defaults(handler=cmd_app)


def cmd_app(args: argparse.Namespace) -> int:
    if args.concurrency < 1 or args.top_k < 1 or not 0 < args.port < 65536:
        raise UsageError("--concurrency and --top-k must be at least 1 and --port between 1 and 65535")
    from actionmoe.predict.predictor import Predictor
    from actionmoe.web.app import build_app, write_space

    if args.space is not None:
        folder = write_space(args.checkpoint, args.space, args.concurrency)
        print(f"Space folder: {folder} (app.py, requirements.txt, README.md, model/); upload it as a Gradio Space")
        return 0
    app = build_app(Predictor.from_checkpoint(args.checkpoint, args.device), args.concurrency, args.top_k)
    app.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True)
    return 0
