"""``actionmoe explain``: where the model looked in a video (Grad-CAM), for the whole head and per expert."""

from __future__ import annotations

import argparse
from pathlib import Path

from actionmoe.cli.common import add_device_arg, checkpoint_source, examples
from actionmoe.errors import UsageError


def add_explain(commands) -> None:
    explain = commands.add_parser(
        "explain",
        help="Grad-CAM heat maps of where the model looked: a frame strip PNG and a GIF",
        **examples(
            "actionmoe explain clip.mp4 --checkpoint best.safetensors",
            "actionmoe explain clip.mp4 --checkpoint best.safetensors --class run --per-expert --out explain/",
        ),
    )
    explain.add_argument("video", type=Path, help="a video file")
    explain.add_argument(
        "--checkpoint", type=checkpoint_source, required=True, help="a checkpoint, a model folder or hf://OWNER/NAME"
    )
    explain.add_argument("--class", dest="class_name", help="the class to explain (default: the predicted one)")
    explain.add_argument(
        "--per-expert", action="store_true", help="also one map per expert (the shared one and each routed one)"
    )
    explain.add_argument("--out", type=Path, default=Path("explain"), help="folder for the files (default explain/)")
    add_device_arg(explain)
    explain.set_defaults(handler=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from actionmoe.files import check_output_folder
    from actionmoe.predict.explain import (
        check_explainable,
        check_explainable_source,
        explain,
        save_animation,
        save_strip,
    )
    from actionmoe.predict.predictor import Predictor

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a folder; choose a folder")
    check_explainable_source(args.checkpoint)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, precision="fp32")
    check_explainable(predictor, args.class_name)
    explanation = explain(predictor, args.video, args.class_name, args.per_expert)
    check_output_folder(args.out, "--out")  # created only now: a refused or unreadable video leaves nothing
    stem = args.video.stem
    strip = save_strip(explanation, args.out / f"{stem}.gradcam.png")
    animation = save_animation(explanation, args.out / f"{stem}.gradcam.gif")
    gates = "" if explanation.gates is None else "; gates " + " ".join(f"{g:.2f}" for g in explanation.gates)
    print(f"{args.video}: {explanation.class_name} {explanation.score:.3f}{gates}")
    print(f"maps ({', '.join(explanation.maps)}): {strip}, {animation}")
    return 0
