"""``actionmoe bench ...``: benchmarks that print a table (or JSON) with machine and date."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from actionmoe.cli.common import (
    add_config_args,
    checkpoint_source,
    print_result,
    resolve_config,
)
from actionmoe.errors import UsageError


def add_bench(commands) -> None:
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
    add_config_args(bench_model)
    bench_model.set_defaults(handler=cmd_bench_model)
    bench_train = bench_commands.add_parser("train", help="end-to-end training clips/s from a clip cache vs the model")
    bench_train.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    bench_train.add_argument("--videos", type=int, help="synthetic videos in the cache (default 48 CPU, 256 CUDA)")
    bench_train.add_argument("--repeats", type=int, default=3, help="alternating timed blocks (default 3)")
    bench_train.add_argument("--compile", action="store_true", help="torch.compile the model")
    bench_train.add_argument(
        "--recipe",
        action="store_true",
        help="a second row with the small-dataset augmentations on (RandAugment, resized crops, MixUp/CutMix, EMA)",
    )
    bench_train.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_config_args(bench_train, default="hmdb51")
    bench_train.set_defaults(handler=cmd_bench_train)
    bench_predict = bench_commands.add_parser("predict", help="predict_many videos/s and onnxruntime vs PyTorch")
    bench_predict.add_argument(
        "--checkpoint",
        type=checkpoint_source,
        required=True,
        help="a best.safetensors file, a model folder or hf://OWNER/NAME",
    )
    bench_predict.add_argument("--videos", required=True, help="a folder (or glob) of videos to predict")
    bench_predict.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    bench_predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench_predict.set_defaults(handler=cmd_bench_predict)
    bench_stream = bench_commands.add_parser("stream", help="live classification against real time, PyTorch vs ONNX")
    bench_stream.add_argument(
        "--checkpoint", type=checkpoint_source, help="default: the recipe's model, random weights"
    )
    bench_stream.add_argument("--seconds", type=float, default=20.0, help="length of the streamed video (default 20)")
    bench_stream.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_config_args(bench_stream, default="hmdb51")
    bench_stream.set_defaults(handler=cmd_bench_stream)
    bench_explain = bench_commands.add_parser("explain", help="does Grad-CAM fall on the object? (synthetic models)")
    bench_explain.add_argument(
        "--checkpoint", type=checkpoint_source, required=True, help="a model trained on the synthetic motion data"
    )
    bench_explain.add_argument("--videos", type=int, default=4, help="new videos per class and side (default 4)")
    bench_explain.add_argument("--seed", type=int, default=0, help="seed of the new videos (default 0)")
    bench_explain.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench_explain.set_defaults(handler=cmd_bench_explain)
    bench.set_defaults(handler=lambda _: bench.print_help(sys.stderr) or 2)


def cmd_bench_data(args: argparse.Namespace) -> int:
    from actionmoe.bench.data import format_data_benchmark, run_data_benchmark

    result = run_data_benchmark(args.videos, args.count, args.repeats)
    print_result(result, args.json, format_data_benchmark(result))
    return 0


def cmd_bench_model(args: argparse.Namespace) -> int:
    from actionmoe.bench.model import format_model_benchmark, run_model_benchmark

    config = resolve_config(args)
    result = run_model_benchmark(config.model, args.device, args.repeats, compile_too=not args.no_compile)
    print_result(result, args.json, format_model_benchmark(result))
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from actionmoe.bench.train import PLAIN, SMALL_DATA_RECIPE, format_train_benchmark, run_train_benchmark

    if args.videos is not None and args.videos < 1 or args.repeats < 1:
        raise UsageError("--videos and --repeats must be at least 1")
    augmentations = (PLAIN, SMALL_DATA_RECIPE) if args.recipe else (PLAIN,)
    config = resolve_config(args)
    result = run_train_benchmark(
        config.model, args.device, args.videos, args.repeats, args.compile, augmentations=augmentations
    )
    print_result(result, args.json, format_train_benchmark(result))
    return 0


def cmd_bench_predict(args: argparse.Namespace) -> int:
    from actionmoe.bench.predict import format_predict_benchmark, run_predict_benchmark

    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    result = run_predict_benchmark(args.checkpoint, Path(args.videos), args.repeats)
    print_result(result, args.json, format_predict_benchmark(result))
    return 0


def cmd_bench_stream(args: argparse.Namespace) -> int:
    from actionmoe.bench.stream import format_stream_benchmark, run_stream_benchmark

    if not 3.0 <= args.seconds <= 600.0:
        raise UsageError("--seconds must be between 3 and 600")
    result = run_stream_benchmark(resolve_config(args), args.checkpoint, args.seconds)
    print_result(result, args.json, format_stream_benchmark(result))
    return 0


def cmd_bench_explain(args: argparse.Namespace) -> int:
    from actionmoe.bench.explain import format_explain_benchmark, run_explain_benchmark
    from actionmoe.predict.explain import check_explainable_source

    if args.videos < 1:
        raise UsageError("--videos must be at least 1")
    check_explainable_source(args.checkpoint)
    result = run_explain_benchmark(args.checkpoint, args.videos, args.seed)
    print_result(result, args.json, format_explain_benchmark(result))
    return 0
