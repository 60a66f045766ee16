"""``actionmoe info`` and ``actionmoe config show``: what this installation can do, what a config resolves to."""

from __future__ import annotations

import argparse
import sys

from actionmoe.cli.common import (
    add_config_args,
    print_result,
    resolve_config,
)


def add_info(commands) -> None:
    info = commands.add_parser("info", help="versions, device, available decoders and extractors")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(handler=cmd_info)


def add_config(commands) -> None:
    config = commands.add_parser("config", help="inspect configurations")
    config_commands = config.add_subparsers(title="config commands", metavar="ACTION")
    show = config_commands.add_parser(
        "show", help="print the resolved config as TOML (default: hmdb51, the config `train` uses)"
    )
    add_config_args(show, default="hmdb51")
    show.set_defaults(handler=cmd_config_show)
    config.set_defaults(handler=lambda _: config.print_help(sys.stderr) or 2)


def cmd_info(args: argparse.Namespace) -> int:
    from actionmoe.cli.environment import environment_report, format_report

    report = environment_report()
    print_result(report, args.json, format_report(report))
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from actionmoe.config import config_to_toml

    print(config_to_toml(resolve_config(args)), end="")
    return 0
