"""The training loop: epochs of optimisation, validation, checkpoints, logs, early stopping."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from actionmoe.data.transforms import device_augment, normalize_clip
from actionmoe.engine.checkpoint import Checkpoint, rng_state, save_checkpoint
from actionmoe.engine.device import autocast, to_device
from actionmoe.engine.distributed import DistContext, all_reduce_sum, broadcast_flag
from actionmoe.engine.metrics import Meter, topk_correct
from actionmoe.errors import ActionMoEError

log = logging.getLogger(__name__)


class TrainingError(ActionMoEError):
    """Training cannot continue (non-finite loss, no decodable clip)."""


@dataclass(frozen=True)
class BatchPolicy:
    """What the engine does to a loader batch on the device."""

    normalize: bool  # the loader yields uint8 THWC clips
    augment: bool  # ... uncropped, for device_augment
    crop_size: int
    flip: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class TrainState:
    epoch: int = -1  # last completed epoch
    best_metric: float = -1.0
    best_epoch: int = -1
    stopped_early: bool = False


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    accumulate: int
    grad_clip: float
    label_smoothing: float
    early_stop_patience: int
    per_step_scheduler: bool
    channels_last: bool
    precision: str
    freeze_bn: bool = False


class Trainer:
    def __init__(self, model: nn.Module, optimizer, scheduler, loaders: dict, device: torch.device,
                 settings: LoopSettings, policy: BatchPolicy, context: DistContext, run_dir: Path,
                 describe: Callable[[TrainState], dict]) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.loaders, self.device, self.settings, self.policy = loaders, device, settings, policy
        self.context, self.run_dir, self.describe = context, run_dir, describe
        self.augment_generator = torch.Generator().manual_seed(0)
        self.tensorboard = tensorboard_writer(run_dir / "tensorboard") if context.is_main else None

    def fit(self, state: TrainState) -> TrainState:
        """Train from ``state.epoch + 1`` to the last epoch, or until early stopping."""
        for epoch in range(state.epoch + 1, self.settings.epochs):
            train = self.train_epoch(epoch)
            val = self.evaluate(self.loaders["val"])
            improved = val["top1"] > state.best_metric
            if improved:
                state.best_metric, state.best_epoch = val["top1"], epoch
            state.epoch = epoch
            patience = self.settings.early_stop_patience
            state.stopped_early = bool(patience) and epoch - state.best_epoch >= patience
            if not self.settings.per_step_scheduler:
                self.scheduler.step(val["top1"])
            self.save(state, improved)
            self.log_epoch({"epoch": epoch, **train, **{f"val_{k}": v for k, v in val.items()}})
            if broadcast_flag(state.stopped_early, self.context):
                log.info("early stop: no validation improvement for %d epochs", patience)
                break
        if self.tensorboard is not None:
            self.tensorboard.close()
        return state

    def train_epoch(self, epoch: int) -> dict:
        self.model.train()
        self._freeze_bn_if_asked()
        loader = self.loaders["train"]
        loader.sampler.set_epoch(epoch)
        self.augment_generator.manual_seed(epoch)
        meter, started = Meter(), time.perf_counter()
        batches = tqdm(loader, desc=f"epoch {epoch + 1}/{self.settings.epochs}", unit="batch", leave=False,
                       disable=None if self.context.is_main else True)
        step = -1
        for step, batch in enumerate(batches):
            self.train_step(batch, step, len(loader), meter)
            elapsed = time.perf_counter() - started
            batches.set_postfix(loss=f"{meter.sums['loss'] / max(1, meter.sums['clips']):.3f}",
                                clips_per_s=f"{meter.sums['clips'] / max(elapsed, 1e-9):.1f}")
        if step < 0:
            raise TrainingError(
                f"no training clip could be decoded in epoch {epoch + 1} ({len(loader.failures)} unreadable videos); "
                "run `actionmoe data scan` to list them")
        totals = meter.reduced(self.context)
        seconds = time.perf_counter() - started
        clips = max(1.0, totals["clips"])
        return {"loss": totals["loss"] / clips, "task_loss": totals["task_loss"] / clips,
                "aux_loss": totals["aux_loss"] / clips, "train_top1": totals["correct"] / clips,
                "lr": max(group["lr"] for group in self.optimizer.param_groups), "clips_per_s": totals["clips"] / seconds,
                "seconds": seconds, "expert_fraction": meter.vector_mean(), "skipped_videos": len(loader.failures)}

    def _freeze_bn_if_asked(self) -> None:
        if self.settings.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def train_step(self, batch: dict, step: int, steps: int, meter: Meter) -> None:
        clip = self.prepare(batch["clip"], train=True)
        labels = batch["label"].to(self.device)
        accumulate = self.settings.accumulate
        boundary = (step + 1) % accumulate == 0 or step + 1 == steps
        sync = self.model.no_sync() if self.context.enabled and not boundary else contextlib.nullcontext()
        with sync:
            with autocast(self.device, self.settings.precision):
                out = self.model(clip)
                task = F.cross_entropy(out.logits.float(), labels, label_smoothing=self.settings.label_smoothing)
                loss = task + out.aux_loss
            self._check_finite(loss, step)
            (loss / accumulate).backward()
        if boundary:
            self._optimizer_step()
        size = len(labels)
        meter.add(loss=loss.item() * size, task_loss=task.item() * size, aux_loss=float(out.aux_loss.detach()) * size,
                  correct=topk_correct(out.logits.detach(), labels, (1,))[0], clips=size)
        if out.routing is not None:
            meter.add_vector(out.routing.fraction_routed)

    def _check_finite(self, loss: torch.Tensor, step: int) -> None:
        bad = all_reduce_sum(torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0]), self.context)
        if bad.item() > 0:
            raise TrainingError(
                f"the loss became {loss.item()} at step {step + 1}; stopped without saving, so the last good "
                f"checkpoint in {self.run_dir} is kept. Lower train.lr or enable train.grad_clip")

    def _optimizer_step(self) -> None:
        if self.settings.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.settings.per_step_scheduler:
            self.scheduler.step()

    def prepare(self, clip: torch.Tensor, train: bool) -> torch.Tensor:
        return prepare_batch(clip, self.policy, self.device, self.settings.channels_last,
                             self.augment_generator if train else None)

    @torch.no_grad()
    def evaluate(self, loader) -> dict:
        """Video-level accuracy: softmax averaged over each video's views.

        Runs the unwrapped model: ranks hold different numbers of evaluation batches, so no
        collective may happen inside the loop; the sums are reduced once at the end.
        """
        model = unwrap_model(self.model)
        model.eval()
        meter = Meter()
        for batch in loader:
            clip = self.prepare(batch["clip"], train=False)  # [B, V, C, T, H, W]
            batch_size, views = clip.shape[:2]
            with autocast(self.device, self.settings.precision):
                logits = model(clip.flatten(0, 1)).logits.float()  # [B * V, classes]
            probs = logits.softmax(dim=1).view(batch_size, views, -1).mean(dim=1)
            labels = batch["label"].to(self.device)
            top1, top5 = topk_correct(probs, labels)
            nll = F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum")
            meter.add(top1=top1, top5=top5, loss=nll.item(), videos=batch_size)
        totals = meter.reduced(self.context)
        videos = max(1.0, totals.get("videos", 0.0))
        return {"top1": totals.get("top1", 0.0) / videos, "top5": totals.get("top5", 0.0) / videos,
                "loss": totals.get("loss", math.nan) / videos, "videos": int(totals.get("videos", 0))}

    def save(self, state: TrainState, improved: bool) -> None:
        if not self.context.is_main:
            return
        model_state = unwrap_model(self.model).state_dict()
        meta = {**self.describe(state), "scheduler": self.scheduler.state_dict()}
        full = Checkpoint(model_state, meta, self.optimizer.state_dict(), rng_state())
        save_checkpoint(self.run_dir / "last.safetensors", full)
        if improved:
            save_checkpoint(self.run_dir / "best.safetensors", Checkpoint(model_state, meta))

    def log_epoch(self, row: dict) -> None:
        if not self.context.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.tensorboard is not None:
            for key, value in row.items():
                if isinstance(value, int | float) and key != "epoch":
                    self.tensorboard.add_scalar(key, value, row["epoch"] + 1)
            for expert, share in enumerate(row["expert_fraction"]):
                self.tensorboard.add_scalar(f"expert_fraction/{expert}", share, row["epoch"] + 1)
        log.info("epoch %d: loss %.4f, train top-1 %.3f, val top-1 %.3f, %.2f clips/s", row["epoch"] + 1,
                 row["loss"], row["train_top1"], row["val_top1"], row["clips_per_s"])


def tensorboard_writer(folder: Path):
    """A TensorBoard writer when the ``tensorboard`` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def prepare_batch(clip: torch.Tensor, policy: BatchPolicy, device: torch.device, channels_last: bool,
                  augment_generator: torch.Generator | None = None) -> torch.Tensor:
    """Loader batch -> float [B, C, T, H, W] (or [B, V, C, T, H, W]) on the device.

    ``augment_generator`` is given for training batches: with ``policy.augment`` they arrive
    uncropped and are cropped and flipped here.
    """
    clip = clip.to(device, non_blocking=True)
    if augment_generator is not None and policy.augment:
        clip = device_augment(clip, policy.crop_size, policy.flip, augment_generator)
    if policy.normalize or policy.augment:
        clip = normalize_clip(clip, policy.mean, policy.std)
    return to_device(clip, device, channels_last)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside torch.compile and DDP wrappers."""
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DDP
