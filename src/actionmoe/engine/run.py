"""``actionmoe train``: resolve everything a run needs, resume or start, train, test the best model."""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from actionmoe import __version__
from actionmoe.config import Config, DataConfig, config_to_dict, save_config
from actionmoe.data.acquire import ensure_writable
from actionmoe.data.builders import build_cache, build_dataset, build_splits
from actionmoe.data.dataset import build_loader
from actionmoe.data.splits import DatasetSplits
from actionmoe.engine.checkpoint import Checkpoint, CheckpointError, load_checkpoint, restore_rng
from actionmoe.engine.device import pick_device, prepare_model, resolve_precision
from actionmoe.engine.distributed import DistContext, differentiable_sum, init_distributed, shutdown_distributed
from actionmoe.engine.optim import build_optimizer, build_scheduler
from actionmoe.engine.trainer import BatchPolicy, LoopSettings, Trainer, TrainState, unwrap_model
from actionmoe.errors import ActionMoEError, ConfigError
from actionmoe.models.recognizer import build_model

log = logging.getLogger(__name__)

PREPROCESSING_KEYS = ("clip_len", "resize", "crop_size", "mean", "std", "presample_frames", "decoder",
                      "test_clips", "test_crops")


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    trained: bool
    message: str


def default_run_dir(config: Config) -> Path:
    return Path("runs") / f"{config.data.dataset}-split{config.data.split}"


def run_training(config: Config, out: Path | None = None, force: bool = False) -> TrainResult:
    """Train ``config`` into ``out`` (resuming from ``out/last.safetensors`` unless ``force``)."""
    check_train_config(config)
    context = init_distributed(config.train.device)
    try:
        return _train(config, out or default_run_dir(config), force, context)
    finally:
        shutdown_distributed(context)


def check_train_config(config: Config) -> None:
    train = config.train
    for name in ("epochs", "batch_size", "accumulate"):
        if getattr(train, name) < 1:
            raise ConfigError(f"train.{name} must be at least 1, got {getattr(train, name)}")
    if train.lr <= 0:
        raise ConfigError(f"train.lr must be positive, got {train.lr}")


def _train(config: Config, run_dir: Path, force: bool, context: DistContext) -> TrainResult:
    if context.is_main:
        ensure_writable(run_dir)
    splits = build_splits(config.data)
    if not splits.train:
        raise ActionMoEError(f"the training set of split {config.data.split} is empty; check data.root")
    resume = None if force else _resumable(run_dir, config, splits)
    if resume is not None and is_finished(resume.meta, config):
        return TrainResult(run_dir, False, f"{run_dir} holds a finished run (epoch {resume.meta['epoch'] + 1}, "
                           f"best val top-1 {resume.meta['best_metric']:.3f}); nothing to do, pass --force to retrain")
    if resume is not None:
        log.info("resuming from %s (epoch %d done)", run_dir / "last.safetensors", resume.meta["epoch"] + 1)
    if context.is_main:
        save_config(config, run_dir / "config.json")
        _trim_metrics(run_dir / "metrics.jsonl", resume.meta["epoch"] if resume else -1)
    device = pick_device(config.train.device, context.local_rank)
    trainer, state = _build_trainer(config, splits, run_dir, device, context, resume)
    state = trainer.fit(state)
    return TrainResult(run_dir, True, f"trained to epoch {state.epoch + 1}; best val top-1 {state.best_metric:.3f} "
                       f"at epoch {state.best_epoch + 1}")


def _resumable(run_dir: Path, config: Config, splits: DatasetSplits) -> Checkpoint | None:
    last = run_dir / "last.safetensors"
    if not last.exists():
        return None
    checkpoint = load_checkpoint(last, training_state=True)
    check_compatible(checkpoint.meta, config, splits.classes, last)
    return checkpoint


def check_compatible(meta: dict, config: Config, classes: tuple[str, ...], path: Path) -> None:
    """Refuse to continue a run whose classes, model or preprocessing differ from this config."""
    if list(meta["classes"]) != list(classes):
        raise CheckpointError(
            f"{path} was trained on {len(meta['classes'])} classes ({', '.join(meta['classes'][:3])}, ...) but this "
            f"dataset has {len(classes)} ({', '.join(classes[:3])}, ...); use another --out or --force")
    current = config_to_dict(config)
    if meta["config"]["model"] != current["model"]:
        raise CheckpointError(f"{path} was trained with another model config; use another --out or --force")
    if meta["preprocessing"] != preprocessing(config):
        raise CheckpointError(f"{path} was trained with other preprocessing; use another --out or --force")


def is_finished(meta: dict, config: Config) -> bool:
    return bool(meta.get("stopped_early")) or meta["epoch"] + 1 >= config.train.epochs


def preprocessing(config: Config) -> dict:
    data = config_to_dict(config)["data"]
    return {key: data[key] for key in PREPROCESSING_KEYS}


def describe_run(config: Config, classes: tuple[str, ...]):
    def describe(state: TrainState) -> dict:
        return {
            "epoch": state.epoch, "best_metric": state.best_metric, "best_epoch": state.best_epoch,
            "stopped_early": state.stopped_early,
            "finished": state.stopped_early or state.epoch + 1 >= config.train.epochs,
            "config": config_to_dict(config), "classes": list(classes), "preprocessing": preprocessing(config),
            "dataset": {"name": config.data.dataset, "split": config.data.split},
            "actionmoe": __version__, "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        }

    return describe


def _build_trainer(config: Config, splits: DatasetSplits, run_dir: Path, device: torch.device,
                   context: DistContext, resume: Checkpoint | None) -> tuple[Trainer, TrainState]:
    data, train = config.data, config.train
    torch.manual_seed(train.seed)
    loaders = _build_loaders(config, splits, context, device)
    model = build_model(config.model, len(splits.classes))
    if resume is not None:
        model.load_state_dict(resume.model)
    model = _wrap(model, config, device, context)
    optimizer = build_optimizer(unwrap_model(model), train)
    steps = max(1, len(loaders["train"]) // train.accumulate)
    scheduler = build_scheduler(optimizer, train, steps)
    state = TrainState()
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.meta["scheduler"])
        restore_rng(resume.rng)
        meta = resume.meta
        state = TrainState(meta["epoch"], meta["best_metric"], meta["best_epoch"], meta["stopped_early"])
    settings = LoopSettings(train.epochs, train.accumulate, train.grad_clip, train.label_smoothing,
                            train.early_stop_patience, train.scheduler == "cosine", train.channels_last,
                            resolve_precision(train.precision, device), train.freeze_bn)
    trainer = Trainer(model, optimizer, scheduler, loaders, device, settings, build_batch_policy(data), context, run_dir,
                      describe_run(config, splits.classes))
    return trainer, state


def build_batch_policy(data: DataConfig) -> BatchPolicy:
    return BatchPolicy(data.normalize_on_device, data.augment_on_device, data.crop_size, data.flip,
                       tuple(data.mean), tuple(data.std))


def _build_loaders(config: Config, splits: DatasetSplits, context: DistContext, device: torch.device) -> dict:
    data, train = config.data, config.train
    cache = build_cache(data)
    common = dict(num_workers=data.num_workers, seed=train.seed, rank=context.rank,
                  world_size=context.world_size, pin_memory=device.type == "cuda")
    loaders = {"train": build_loader(build_dataset(data, splits, "train", cache), train.batch_size, True, **common)}
    for subset in ("val", "test"):
        loaders[subset] = build_loader(build_dataset(data, splits, subset, cache), train.batch_size, False,
                                       pad=False, **common)
    return loaders


def _wrap(model: nn.Module, config: Config, device: torch.device, context: DistContext) -> nn.Module:
    train = config.train
    if context.enabled and device.type == "cuda" and train.sync_bn and not train.freeze_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = prepare_model(model, device, train.channels_last)
    if context.enabled:
        if hasattr(model.head, "reduce"):
            model.head.reduce = differentiable_sum
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if train.compile else model


def _trim_metrics(path: Path, last_epoch: int) -> None:
    """Keep only the epochs the checkpoint holds (a run killed after logging redoes that epoch)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in rows if json.loads(line)["epoch"] <= last_epoch]
    path.write_text("".join(line + "\n" for line in kept))
