"""The ``actionmoe`` command line: one module per command group, each subcommand a thin handler.

common.py     options every group shares (--config, --set, --device, dataset flags), resolve_config
about.py      info, config show
data.py       data synth | download | summary | scan | cache
training.py   demo, train, evaluate, ablate
use.py        predict, export, serve (the uses of a trained model)
app.py        app (the Gradio app), stream (webcams, network streams, files as they play)
share.py      push (a model folder with its card, to the Hub)
explain.py    explain (Grad-CAM: where the model looked, per expert)
bench.py      bench data | model | train | predict

A handler resolves its config, checks its arguments before any expensive work, calls one library
function and prints. Exit codes: 0 success, 1 a runtime or data error, 2 a usage error
(argparse's convention); an error a user can cause is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from actionmoe import __version__
from actionmoe.cli import about, app, bench, data, explain, share, training, use
from actionmoe.cli.common import add_verbosity_args, examples, resolve_remote_checkpoint
from actionmoe.errors import ActionMoEError

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
        resolve_remote_checkpoint(args)
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
    parser = argparse.ArgumentParser(
        prog="actionmoe",
        description="Action recognition in video, HMDB51-style.",
        **examples(
            "actionmoe demo                       # the offline demo: synthetic data, train, test (about 7 min)",
            "actionmoe data download hmdb51 --root data/hmdb51 --source hf",
            "actionmoe train --split 1 --root data/hmdb51",
            "actionmoe predict clip.mp4 --checkpoint runs/hmdb51-split1/best.safetensors",
            "actionmoe COMMAND --help             # each command's options and examples",
        ),
    )
    parser.add_argument("--version", action="version", version=f"actionmoe {__version__}")
    add_verbosity_args(parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in (
        about.add_info,
        training.add_demo,
        training.add_ablate,
        about.add_config,
        training.add_train,
        training.add_evaluate,
        use.add_predict,
        use.add_export,
        use.add_serve,
        app.add_app,
        app.add_stream,
        share.add_push,
        explain.add_explain,
        bench.add_bench,
        data.add_data,
    ):
        add(commands)
    return parser
