"""One training run's assembly: resolve what it needs, resume or start, train; only rank 0 writes files.

The rules for reading a run written by an earlier version live in ``runtime.compat``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from actionmoe import __version__
from actionmoe.config import Config, TrainConfig, config_to_dict, save_config
from actionmoe.data.builders import build_cache, build_dataset, build_splits
from actionmoe.data.dataset import build_loader
from actionmoe.data.splits import DatasetSplits, class_counts, inverse_frequency
from actionmoe.data.transforms import Preprocessing
from actionmoe.engine.distributed import DistContext, differentiable_sum, init_distributed, shutdown_distributed
from actionmoe.engine.finetune import freeze, initialise_from
from actionmoe.engine.optim import build_optimizer, build_scheduler
from actionmoe.engine.trackers import Trackers, check_trackers, flatten, open_trackers
from actionmoe.engine.trainer import Trainer, TrainState, run_is_finished
from actionmoe.errors import CheckpointError, DatasetError, WeightsError
from actionmoe.files import ensure_writable, exclusive_lock, read_jsonl, remove_stale_temporaries, write_jsonl
from actionmoe.models.recognizer import build_model
from actionmoe.runtime.checkpoint import Checkpoint, load_checkpoint, restore_rng, save_checkpoint
from actionmoe.runtime.compat import check_compatible, preprocessing_record
from actionmoe.runtime.device import machine_record, pick_device, prepare_model, unwrap_model
from actionmoe.runtime.repository import HUB_PREFIX, fetch_model_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    trained: bool  # False: the folder held a finished run and nothing was done
    message: str


def default_run_dir(config: Config) -> Path:
    return Path("runs") / f"{config.data.dataset}-split{config.data.split}"


def train_model(config: Config, out: Path | None = None, force: bool = False) -> TrainResult:
    """Train ``config`` into ``out``, resuming from ``out/last.safetensors`` unless ``force``.

    Raises:
        RunLockedError: another process is training into the same folder.
        CheckpointError: the folder holds a run of another dataset, model or preprocessing.
    """
    context = init_distributed(config.train.device)
    run_dir = out or default_run_dir(config)
    try:
        splits = build_splits(config.data)  # a missing dataset fails before the run folder or its lock exist
        if not splits.train:
            raise DatasetError(f"the training set of split {config.data.split} is empty; check data.root")
        if config.model.init_from.startswith(HUB_PREFIX):  # fetched once, before the run folder is touched
            folder = fetch_model_folder(config.model.init_from)
            config = replace(config, model=replace(config.model, init_from=str(folder)))
        if config.model.init_from and not Path(config.model.init_from).exists():
            raise WeightsError(f"model.init_from {config.model.init_from} does not exist")
        check_trackers(config.train.trackers)
        if not context.is_main:
            return _train(config, splits, run_dir, force, context)
        ensure_writable(run_dir)
        with exclusive_lock(run_dir / ".lock", f"training into {run_dir}"):
            remove_stale_temporaries(run_dir)
            return _train(config, splits, run_dir, force, context)
    finally:
        shutdown_distributed(context)


def _train(config: Config, splits: DatasetSplits, run_dir: Path, force: bool, context: DistContext) -> TrainResult:
    resume = None if force else _resumable(run_dir, config, splits)
    if resume is not None and run_is_finished(resume.meta["epoch"], resume.meta["stopped_early"], config.train.epochs):
        _ensure_best(run_dir, resume, finished=True)
        return TrainResult(
            run_dir,
            False,
            f"{run_dir} holds a finished run (epoch {resume.meta['epoch'] + 1}, "
            f"best val top-1 {resume.meta['best_metric']:.3f}); nothing to do, pass --force to retrain",
        )
    if resume is not None:
        log.info("resuming from %s (epoch %d done)", run_dir / "last.safetensors", resume.meta["epoch"] + 1)
        _ensure_best(run_dir, resume, finished=False)
    if context.is_main:
        save_config(config, run_dir / "config.json")
        _trim_metrics(run_dir / "metrics.jsonl", resume.meta["epoch"] if resume else -1)
    device = pick_device(config.train.device, context.local_rank)
    trackers = Trackers([])
    if context.is_main:
        trackers = open_trackers(config.train.trackers, run_dir, flatten(config_to_dict(config)))
    with trackers:
        trainer, state = _run_trainer(config, splits, run_dir, device, context, resume, trackers)
        state = trainer.fit(state)
    return TrainResult(
        run_dir,
        True,
        f"trained to epoch {state.epoch + 1}; best val top-1 {state.best_metric:.3f} at epoch {state.best_epoch + 1}",
    )


def _resumable(run_dir: Path, config: Config, splits: DatasetSplits) -> Checkpoint | None:
    last = run_dir / "last.safetensors"
    if not last.exists():
        if (run_dir / "best.safetensors").exists():  # deleted to save space: starting over would replace best
            raise CheckpointError(
                f"{run_dir} holds best.safetensors but no last.safetensors, so there is nothing to resume; "
                "pass --force to train again from scratch (replacing best.safetensors), or use another --out"
            )
        return None
    try:
        checkpoint = load_checkpoint(last, training_state=True)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; cannot resume: delete it or pass --force to start over") from exc
    if checkpoint.optimizer is None or not {"epoch", "best_metric", "best_epoch"} <= set(checkpoint.meta):
        raise CheckpointError(
            f"{last} holds no training state (a copy of best.safetensors?); cannot resume: "
            "delete it or pass --force to start over"
        )
    check_compatible(checkpoint.meta, config, splits.classes, last)
    return checkpoint


def _ensure_best(run_dir: Path, last: Checkpoint, finished: bool) -> None:
    """A run whose ``best`` is missing (deleted, or lost to a crash) gets one back.

    When the last epoch was the best, ``last``'s weights are the best weights. Otherwise an
    unfinished run forgets its best score so that the next epoch writes ``best``; a finished
    run falls back to its last weights, and says so.
    """
    best = run_dir / "best.safetensors"
    if best.exists():
        return
    meta = last.meta
    if meta["best_epoch"] == meta["epoch"] or finished:
        if meta["best_epoch"] != meta["epoch"]:
            log.warning("%s is missing; using the last epoch's weights (epoch %d) as the best", best, meta["epoch"] + 1)
        save_checkpoint(best, Checkpoint(last.model, {**meta, "best_epoch": meta["epoch"]}))
        return
    log.warning("%s is missing; the next epoch will write a new one", best)
    meta["best_metric"], meta["best_epoch"] = -1.0, -1


def run_metadata(
    config: Config,
    classes: tuple[str, ...],
    train_counts: list[int] | None = None,
    device: torch.device | None = None,
) -> dict:
    """What every checkpoint of this run records besides its training state."""
    return {
        "machine": None if device is None else machine_record(device),
        "config": config_to_dict(config),
        "classes": list(classes),
        "train_class_counts": train_counts,
        "preprocessing": preprocessing_record(config.data),
        "dataset": {"name": config.data.dataset, "split": config.data.split},
        "actionmoe": __version__,
    }


def build_trainer(
    model: nn.Module,
    train: TrainConfig,
    loaders: dict,
    preprocessing: Preprocessing,
    run_dir: Path,
    *,
    device: torch.device,
    context: DistContext | None = None,
    run_meta: dict | None = None,
    resume: Checkpoint | None = None,
    class_weights: torch.Tensor | None = None,
    trackers: Trackers | None = None,
) -> tuple[Trainer, TrainState]:
    """A Trainer for ``model`` (not yet wrapped), its optimizer and schedule, and where training stands.

    With ``resume``, the weights, optimizer, scheduler, gradient scaler and RNG states continue
    from that checkpoint; the model is then moved to ``device``, converted (sync BN, channels_last),
    wrapped for DDP when ``context`` has several ranks, and compiled when ``train.compile``.
    """
    context = context or DistContext()
    if resume is not None:
        model.load_state_dict(resume.model)
    frozen = freeze(model, train.freeze)
    model = _wrap(model, train, device, context)
    optimizer = build_optimizer(unwrap_model(model), train)
    scheduler = build_scheduler(optimizer, train, max(1, len(loaders["train"]) // train.accumulate))
    trainer = Trainer(
        model,
        optimizer=optimizer,
        scheduler=scheduler,
        loaders=loaders,
        device=device,
        train=train,
        preprocessing=preprocessing,
        context=context,
        run_dir=run_dir,
        run_meta=run_meta or {},
        frozen=frozen,
        class_weights=class_weights,
        trackers=trackers,
    )
    return trainer, TrainState() if resume is None else _continue_from(trainer, resume)


def _continue_from(trainer: Trainer, resume: Checkpoint) -> TrainState:
    """Optimizer, schedule, RNG, loss scale and weight average as the checkpoint left them; where training stands."""
    trainer.optimizer.load_state_dict(resume.optimizer)
    trainer.scheduler.load_state_dict(resume.meta["scheduler"])
    restore_rng(resume.rng)
    if "grad_scaler" in resume.meta and trainer.scaler.is_enabled():
        trainer.scaler.load_state_dict(resume.meta["grad_scaler"])
    if trainer.ema is not None and resume.ema:
        trainer.ema.load_state_dict(resume.ema)
    elif trainer.ema is not None:
        log.info("the run had no weight average (train.ema_decay was 0): it starts from the resumed weights")
    meta = resume.meta
    return TrainState(meta["epoch"], meta["best_metric"], meta["best_epoch"], meta["stopped_early"])


def _run_trainer(
    config: Config,
    splits: DatasetSplits,
    run_dir: Path,
    device: torch.device,
    context: DistContext,
    resume: Checkpoint | None,
    trackers: Trackers,
) -> tuple[Trainer, TrainState]:
    """The run's model, loaders and metadata from ``config``, then ``build_trainer``."""
    torch.manual_seed(config.train.seed)
    loaders = _build_loaders(config, splits, context, device)
    model = build_model(
        config.model,
        len(splits.classes),
        reduce=differentiable_sum if context.enabled else None,
        checkpoint_stages=config.train.activation_checkpointing,
    )
    if resume is None and config.model.init_from:  # a new run seeded by another; a resumed one has its own
        log.info("initialised from %s", initialise_from(model, Path(config.model.init_from), splits.classes))
    return build_trainer(
        model,
        config.train,
        loaders,
        Preprocessing.from_config(config.data),
        run_dir,
        device=device,
        context=context,
        run_meta=run_metadata(config, splits.classes, class_counts(splits.train, len(splits.classes)), device),
        resume=resume,
        class_weights=_loss_weights(config.train, splits),
        trackers=trackers,
    )


def _loss_weights(train: TrainConfig, splits: DatasetSplits) -> torch.Tensor | None:
    if train.class_balance != "weights":
        return None
    return torch.tensor(inverse_frequency(class_counts(splits.train, len(splits.classes))))


def _build_loaders(config: Config, splits: DatasetSplits, context: DistContext, device: torch.device) -> dict:
    data = config.data
    train = config.train
    cache = build_cache(data)
    common = dict(
        num_workers=data.num_workers,
        seed=train.seed,
        rank=context.rank,
        world_size=context.world_size,
        pin_memory=device.type == "cuda",
    )
    weights = None
    if train.class_balance == "sampler":  # a video's chance is 1 / (its class's count): classes come evenly
        counts = class_counts(splits.train, len(splits.classes))
        weights = [1.0 / counts[record.label] for record in splits.train]
    return {
        "train": build_loader(
            build_dataset(data, splits, "train", cache), train.batch_size, True, weights=weights, **common
        ),
        "val": build_loader(build_dataset(data, splits, "val", cache), train.batch_size, False, pad=False, **common),
    }


def _wrap(model: nn.Module, train: TrainConfig, device: torch.device, context: DistContext) -> nn.Module:
    if context.enabled and device.type == "cuda" and train.sync_bn and not train.freeze_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = prepare_model(model, device, train.channels_last)
    if context.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if train.compile else model


def _trim_metrics(path: Path, last_epoch: int) -> None:
    """Keep only the epochs the checkpoint holds (a run killed after logging redoes that epoch)."""
    if path.exists():
        rows = read_jsonl(path, strict=False)  # a damaged row is dropped with a warning, not a stop
        write_jsonl(path, [row for row in rows if isinstance(row.get("epoch"), int) and row["epoch"] <= last_epoch])
