"""Options every command group shares (--config, --set, --device, dataset flags) and the config they resolve."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from actionmoe.config import Config, load_config
from actionmoe.errors import UsageError


def add_verbosity_args(parser: argparse.ArgumentParser) -> None:
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", help="debug output (default: info)")
    loudness.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def add_config_args(parser: argparse.ArgumentParser, default: str | None = None) -> None:
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


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, required=True, help="dataset root (data.root)")
    parser.add_argument(
        "--dataset",
        choices=["hmdb51", "hmdb51_jsonl", "ucf101", "folder", "list"],
        help="layout of the root (data.dataset)",
    )
    parser.add_argument("--split", type=int, help="split 1, 2 or 3 (data.split)")
    parser.add_argument("--on-missing", choices=["error", "skip"], help="what a listed but absent video does")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_config_args(parser)


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


def data_flags(args: argparse.Namespace) -> dict[str, object]:
    return {
        "data.root": args.root,
        "data.dataset": args.dataset,
        "data.split": args.split,
        "data.on_missing": args.on_missing,
    }


def check_workers(count: int) -> int:
    if count < 1:
        raise UsageError(f"--workers must be at least 1, got {count}")
    return count


def print_result(value: dict | list, as_json: bool, text: str) -> None:
    print(json.dumps(value, indent=2, allow_nan=False) if as_json else text)


def examples(*commands: str) -> dict:
    """``add_parser`` keywords for a help text that ends with worked examples, kept as written."""
    return {
        "epilog": "examples:\n" + "\n".join(f"  {command}" for command in commands),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


def checkpoint_source(text: str) -> Path | str:
    """An argparse type for --checkpoint: a path, or an ``hf://OWNER/NAME[@REV]`` reference kept as text
    (``resolve_remote_checkpoint`` fetches it once the command runs, where its errors are one line)."""
    return text if text.startswith("hf://") else Path(text)


def resolve_remote_checkpoint(args) -> None:
    """Replace an hf:// --checkpoint by the model folder it names, downloaded (cached)."""
    reference = getattr(args, "checkpoint", None)
    if isinstance(reference, str):
        from actionmoe.runtime.repository import fetch_model_folder

        args.checkpoint = fetch_model_folder(reference)
        args.checkpoint_reference = reference  # outputs go beside the working directory, never into the Hub cache


def default_output_folder(args, name: str) -> Path:
    """Where a command writes by default about --checkpoint: beside the checkpoint file, inside a local model
    folder, or for an hf:// model under runs/hub/OWNER--NAME (never inside the Hub's download cache)."""
    reference = getattr(args, "checkpoint_reference", None)
    if reference is not None:
        return Path("runs") / "hub" / reference.removeprefix("hf://").replace("/", "--").replace("@", "--") / name
    checkpoint = Path(args.checkpoint)
    return (checkpoint if checkpoint.is_dir() else checkpoint.parent) / name


def add_min_confidence_arg(parser) -> None:
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        metavar="P",
        help="answer 'unknown' when the top class's probability is not above P (0-1; default 0: always answer); "
        "the report's risk-coverage curve shows what a P costs",
    )
