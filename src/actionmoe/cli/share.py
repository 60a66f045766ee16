"""``actionmoe push``: a trained model as a Hub model repository (or, with --dry-run, that folder on disk)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from actionmoe.cli.common import examples


def add_push(commands) -> None:
    push = commands.add_parser(
        "push",
        help="share a trained model on the Hugging Face Hub (weights, config.json, a model card)",
        **examples(
            "actionmoe push runs/hmdb51-split1 --repo me/actionmoe-hmdb51",
            "actionmoe push runs/hmdb51-split1 --repo me/actionmoe-hmdb51 --dry-run shared/   # the folder only",
        ),
    )
    push.add_argument("source", type=Path, help="a run folder (its best.safetensors) or a checkpoint file")
    push.add_argument("--repo", required=True, help="OWNER/NAME of the model repository (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--revision", help="branch to commit to (default: main)")
    push.add_argument(
        "--dry-run", type=Path, metavar="DIR", help="write the repository folder into DIR and upload nothing"
    )
    push.set_defaults(handler=cmd_push)


def cmd_push(args: argparse.Namespace) -> int:
    from actionmoe.predict.share import check_repo_id, push_model_folder, write_model_folder

    check_repo_id(args.repo)
    if args.dry_run is not None:
        folder = write_model_folder(args.source, args.dry_run, args.repo)
        print(f"model folder for {args.repo}: {folder} (model.safetensors, config.json, README.md); nothing uploaded")
        return 0
    with tempfile.TemporaryDirectory(prefix="actionmoe-push-") as scratch:
        folder = write_model_folder(args.source, Path(scratch) / "model", args.repo)
        url = push_model_folder(folder, args.repo, args.private, args.revision)
    print(f"pushed {args.source} to {args.repo}: {url}")
    return 0
