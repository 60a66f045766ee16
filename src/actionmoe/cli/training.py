"""``actionmoe demo``, ``train``, ``evaluate`` and ``ablate``: runs from a config, and their test metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from actionmoe.cli.common import (
    add_config_args,
    add_device_arg,
    checkpoint_source,
    default_output_folder,
    examples,
    print_result,
    resolve_config,
)
from actionmoe.errors import UsageError


def add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="offline end-to-end run on the built-in synthetic dataset")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    demo.add_argument("--force", action="store_true", help="train again even if the demo run is finished")
    add_config_args(demo, default="demo")
    demo.set_defaults(handler=cmd_demo)


def add_train(commands) -> None:
    train = commands.add_parser(
        "train",
        help="train one split (resumes from RUN_DIR/last.safetensors), then test it",
        **examples(
            "actionmoe train --split 1 --root data/hmdb51",
            "actionmoe train --config demo --out runs/try --set train.epochs=3",
            "torchrun --nproc-per-node 2 -m actionmoe train --split 1 --root data/hmdb51",
        ),
    )
    train.add_argument("--split", type=int, help="official split 1, 2 or 3 (data.split)")
    train.add_argument("--root", type=Path, help="dataset root (data.root)")
    train.add_argument("--out", type=Path, help="run folder (default runs/<dataset>-split<N>)")
    train.add_argument("--force", action="store_true", help="start over even if the run folder holds a run")
    add_config_args(train, default="hmdb51")
    train.set_defaults(handler=cmd_train)


def add_evaluate(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="metrics, report and plots for a checkpoint on a test split",
        **examples(
            "actionmoe evaluate --checkpoint runs/hmdb51-split1/best.safetensors",
            "actionmoe evaluate --checkpoint best.safetensors --views 10x3 --out eval-10x3",
            "actionmoe evaluate --all-splits runs/",
        ),
    )
    target = evaluate.add_mutually_exclusive_group(required=True)
    target.add_argument("--checkpoint", type=checkpoint_source, help="a best.safetensors / last.safetensors file")
    target.add_argument(
        "--all-splits",
        type=Path,
        metavar="RUN_ROOT",
        help="folder holding *split1*/, *split2*/, *split3*/ runs: mean and std over splits",
    )
    evaluate.add_argument("--split", type=int, help="test split 1, 2 or 3 (default: the checkpoint's)")
    evaluate.add_argument("--views", help="CLIPSxCROPS, e.g. 1x1 (the notebook's protocol) or 10x3")
    evaluate.add_argument("--root", help="dataset root (default: the checkpoint's data.root)")
    evaluate.add_argument("--out", type=Path, help="output folder (default: <checkpoint folder>/evaluation)")
    add_device_arg(evaluate)
    evaluate.add_argument("--batch-size", type=int, default=4, help="videos per batch (default 4)")
    evaluate.add_argument("--workers", type=int, default=2, help="decoding processes (default 2; 0 = in process)")
    evaluate.add_argument("--json", action="store_true", help="print metrics.json instead of the headline")
    evaluate.set_defaults(handler=cmd_evaluate)


def add_ablate(commands) -> None:
    ablate = commands.add_parser("ablate", help="train and test config variants over several seeds, then compare")
    ablate.add_argument(
        "--variant",
        action="append",
        required=True,
        metavar="NAME=KEY=VALUE[,KEY=VALUE]",
        help="a variant of the config (NAME= for the config as it is); repeatable",
    )
    ablate.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    ablate.add_argument("--out", type=Path, required=True, help="folder for the runs and ablation.md/json/png")
    ablate.add_argument(
        "--synthetic",
        action="store_true",
        help="first write the config's synthetic dataset into OUT/hmdb51 and use it as data.root",
    )
    ablate.add_argument(
        "--vary-data",
        action="store_true",
        help="with --synthetic: seed N trains on its own synthetic dataset (synth.seed + N, in OUT/data-seedN) "
        "and validation holdout (data.seed = N), so the spread includes the data's",
    )
    add_config_args(ablate)
    ablate.set_defaults(handler=cmd_ablate)


def cmd_demo(args: argparse.Namespace) -> int:
    from actionmoe.data.splits import format_summary
    from actionmoe.evaluation.reports import headline
    from actionmoe.workflows import run_demo

    config = resolve_config(args)
    result = run_demo(config, args.out, args.force)
    training = result.training
    print(format_summary(result.summary, config.data.split))
    print(training.message)
    print(headline(training.test_metrics))
    print(f"chance level: {1 / result.summary['num_classes']:.3f}")
    print(f"dataset: {result.dataset_root}")
    print(f"run folder: {training.run_dir} (checkpoints, metrics.jsonl, evaluation/ with report.md and plots)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from actionmoe.engine.distributed import is_main_process
    from actionmoe.evaluation.reports import headline
    from actionmoe.workflows import run_training

    config = resolve_config(args, **{"data.split": args.split, "data.root": args.root})
    outcome = run_training(config, args.out, args.force)
    if not is_main_process():
        return 0
    print(outcome.message)
    print(headline(outcome.test_metrics))
    print(f"run folder: {outcome.run_dir} (report: {outcome.evaluation_dir / 'report.md'})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from actionmoe.evaluation.evaluate import EvaluationOptions
    from actionmoe.evaluation.metrics import parse_views
    from actionmoe.evaluation.reports import evaluate_all_splits, evaluate_into, format_split_summary, headline

    views = parse_views(args.views) if args.views else None
    options = EvaluationOptions(args.split, views, args.root, args.device, args.batch_size, args.workers)
    if args.checkpoint is not None:
        out = args.out or default_output_folder(args, "evaluation")
        metrics = evaluate_into(args.checkpoint, out, options)
        print_result(
            metrics, args.json, f"{headline(metrics)}\nreport: {out / 'report.md'} (plots and metrics.json beside it)"
        )
        return 0
    out = args.out or args.all_splits / "evaluation"
    summary = evaluate_all_splits(args.all_splits, out, options)
    print_result(summary, args.json, format_split_summary(summary, out))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from actionmoe.ablation import ablation_markdown, check_variants, parse_variant, run_ablation
    from actionmoe.config import load_config
    from actionmoe.workflows import acquire_demo_dataset

    if args.config is None:
        raise UsageError("ablate needs --config (a TOML file or a built-in name such as motion12)")
    if args.vary_data and not args.synthetic:
        raise UsageError("--vary-data needs --synthetic (it writes one synthetic dataset per seed)")
    variants = [parse_variant(text) for text in args.variant]
    base = list(args.overrides)
    check_variants(args.config, variants, args.seeds, tuple(base))  # before any dataset is written
    per_seed = {}
    if args.vary_data:
        config = resolve_config(args)
        for seed in range(args.seeds):
            synth = f"synth.seed={config.synth.seed + seed}"
            root = acquire_demo_dataset(load_config(args.config, [*base, synth]), args.out / f"data-seed{seed}")
            per_seed[seed] = (synth, f"data.seed={seed}", f"data.root={root}")
    elif args.synthetic:
        base.append(f"data.root={acquire_demo_dataset(resolve_config(args), args.out)}")
    summary = run_ablation(args.config, variants, args.seeds, args.out, tuple(base), per_seed)
    print(ablation_markdown(summary), end="")
    print(f"written: {args.out / 'ablation.md'}, ablation.json, ablation.png")
    return 0
