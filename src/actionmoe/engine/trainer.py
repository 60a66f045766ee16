"""The training loop: epochs of optimisation, validation, checkpoints, logs, early stopping."""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from actionmoe.config import TrainConfig
from actionmoe.data.augment import mix_batch
from actionmoe.data.transforms import Preprocessing
from actionmoe.engine.distributed import DistContext, all_reduce_sum, broadcast_flag
from actionmoe.engine.metrics import Meter
from actionmoe.engine.trackers import STEP_PREFIX, Trackers
from actionmoe.errors import TrainingError
from actionmoe.evaluation.metrics import topk_correct
from actionmoe.files import append_jsonl
from actionmoe.runtime.checkpoint import Checkpoint, rng_state, save_checkpoint
from actionmoe.runtime.device import as_model_input, autocast, precision_policy, unwrap_model
from actionmoe.runtime.views import predict_views

log = logging.getLogger(__name__)

MIN_LOSS_SCALE = 1.0  # below this an fp16 run that skips every step has diverged (GradScaler starts at 2**16)


@dataclass
class TrainState:
    epoch: int = -1  # last completed epoch
    best_metric: float = -1.0
    best_epoch: int = -1
    stopped_early: bool = False


def run_is_finished(epoch: int, stopped_early: bool, epochs: int) -> bool:
    """The one definition of a finished run: stopped early, or ``epochs`` epochs done (``epoch`` counts from 0)."""
    return stopped_early or epoch + 1 >= epochs


def device_augment_seed(seed: int, epoch: int) -> int:
    """Seed of the device-side crop/flip generator for one epoch of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def mixing_rng(seed: int, epoch: int, rank: int) -> np.random.Generator:
    """MixUp/CutMix draws of one epoch on one rank: a resumed epoch draws them again exactly."""
    return np.random.default_rng([seed, epoch, rank, 1])


class Trainer:
    """Epochs of optimisation and validation for one run folder; only rank 0 writes files.

    Args:
        model: the (possibly DDP- and compile-wrapped) recognizer on ``device``.
        optimizer, scheduler: from ``engine.optim``.
        loaders: ``train`` and ``val`` SkippingLoaders.
        device: where the model runs.
        train: epochs, accumulation, clipping, smoothing, early stopping, precision, seed.
        preprocessing: its device half runs on every batch.
        context: this process's place among the distributed processes.
        run_dir: where checkpoints and metrics.jsonl go.
        run_meta: what every checkpoint records besides the training state (config, classes, preprocessing).
        frozen: names of model parts whose parameters do not train (``engine.finetune.freeze``).
        class_weights: loss weight per class [classes] (``train.class_balance = "weights"``), or None.
        trackers: where steps and epochs are reported besides metrics.jsonl (``engine.trackers``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        optimizer,
        scheduler,
        loaders: dict,
        device: torch.device,
        train: TrainConfig,
        preprocessing: Preprocessing,
        context: DistContext,
        run_dir: Path,
        run_meta: dict,
        frozen: tuple[str, ...] = (),
        class_weights: torch.Tensor | None = None,
        trackers: Trackers | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loaders = loaders
        self.device = device
        self.train_config = train
        self.preprocessing = preprocessing
        self.context = context
        self.run_dir = run_dir
        self.run_meta = run_meta
        self.frozen = frozen  # model parts without gradients, kept in eval mode (BatchNorm statistics too)
        self.class_weights = None if class_weights is None else class_weights.float().to(device)  # [classes]
        self.ema = averaged_model(unwrap_model(model), train.ema_decay)  # None when train.ema_decay = 0
        self.policy = precision_policy(train.precision, device)
        if context.is_main:
            (log.warning if self.policy.warn else log.info)(
                "precision %s: %s", self.policy.precision, self.policy.reason
            )
        self.precision = self.policy.precision
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.policy.uses_scaler)
        self.compile_checked = not hasattr(model, "_orig_mod")  # a compiled model is checked at its first step
        self.augment_generator = torch.Generator()
        self.mixing = train.mixup_alpha > 0 or train.cutmix_alpha > 0
        self.mix_rng = mixing_rng(train.seed, 0, context.rank)
        self.trackers = trackers or Trackers([])
        self.epoch = 0

    def fit(self, state: TrainState) -> TrainState:
        """Train from ``state.epoch + 1`` to the last epoch, or until early stopping."""
        patience = self.train_config.early_stop_patience
        first = state.epoch + 1
        started = time.perf_counter()
        for epoch in range(first, self.train_config.epochs):
            train = self.train_epoch(epoch)
            val = self.evaluate(self.loaders["val"])
            improved = val["top1"] > state.best_metric
            if improved:
                state.best_metric = val["top1"]
                state.best_epoch = epoch
            state.epoch = epoch
            state.stopped_early = bool(patience) and epoch - state.best_epoch >= patience
            if self.train_config.scheduler == "plateau":
                self.scheduler.step(val["top1"])
            self.save(state, improved)
            per_epoch = (time.perf_counter() - started) / (epoch - first + 1)  # this process's epochs so far
            left = 0.0 if state.stopped_early else per_epoch * (self.train_config.epochs - epoch - 1)
            self.log_epoch({"epoch": epoch, **train, **{f"val_{k}": v for k, v in val.items()}}, left)
            if broadcast_flag(state.stopped_early, self.context):
                log.info("early stop: no validation improvement for %d epochs", patience)
                break
        return state

    def train_epoch(self, epoch: int) -> dict:
        self.model.train()
        self._freeze_bn_if_asked()
        for name in self.frozen:
            getattr(unwrap_model(self.model), name).eval()
        loader = self.loaders["train"]
        loader.sampler.set_epoch(epoch)
        self.epoch = epoch
        self.augment_generator.manual_seed(device_augment_seed(self.train_config.seed, epoch))
        self.mix_rng = mixing_rng(self.train_config.seed, epoch, self.context.rank)
        meter = Meter()
        started = time.perf_counter()
        batches = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{self.train_config.epochs}",
            unit="batch",
            leave=False,
            disable=None if self.context.is_main else True,
        )
        step = -1
        for step, batch in enumerate(batches):
            self.train_step(batch, step, len(loader), meter)
            elapsed = time.perf_counter() - started
            batches.set_postfix(
                loss=f"{meter.sums['loss'] / max(1, meter.sums['clips']):.3f}",
                clips_per_s=f"{meter.sums['clips'] / max(elapsed, 1e-9):.1f}",
            )
        if step < 0:
            raise TrainingError(
                f"no training clip could be decoded in epoch {epoch + 1} ({len(loader.failures)} unreadable videos); "
                "run `actionmoe data scan` to list them"
            )
        if self._loss_scale_collapsed(meter):
            raise TrainingError(
                f"every optimizer step of epoch {epoch + 1} overflowed in fp16 and the loss scale fell below "
                f"{MIN_LOSS_SCALE}; use train.precision=fp32 (or bf16 on a GPU that has it) or lower train.lr"
            )
        return self._epoch_summary(meter, time.perf_counter() - started, len(loader.failures))

    def _loss_scale_collapsed(self, meter: Meter) -> bool:
        """fp16 only: all steps skipped and the scale so small that the forward pass itself overflows."""
        steps = meter.sums.get("steps", 0)
        skipped = meter.sums.get("skipped_steps", 0)
        return self.scaler.is_enabled() and steps > 0 and skipped == steps and self.scaler.get_scale() < MIN_LOSS_SCALE

    def _epoch_summary(self, meter: Meter, seconds: float, skipped: int) -> dict:
        totals = meter.reduced(self.context)
        clips = max(1.0, totals["clips"])
        return {
            "loss": totals["loss"] / clips,
            "task_loss": totals["task_loss"] / clips,
            "aux_loss": totals["aux_loss"] / clips,
            "train_top1": totals["correct"] / clips,
            "lr": max(group["lr"] for group in self.optimizer.param_groups),
            "clips_per_s": totals["clips"] / seconds,
            "seconds": seconds,
            "expert_fraction": meter.vector_mean(),
            # noisy training only: the mean noise std and the share of clips whose noisy top-k differs from the clean
            "router_noise_std": totals["noise_std"] / clips if "noise_std" in totals else None,
            "router_flip_rate": totals["flips"] / clips if "flips" in totals else None,
            "skipped_videos": skipped,
            "skipped_steps": int(totals.get("skipped_steps", 0)),  # fp16 steps the GradScaler skipped (inf/NaN)
        }

    def _freeze_bn_if_asked(self) -> None:
        if self.train_config.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def train_step(self, batch: dict, step: int, steps: int, meter: Meter) -> None:
        """One forward/backward (and, every ``accumulate`` batches, one optimizer step) on a loader batch."""
        clip = self.preprocessing.on_device(batch["clip"], self.device, True, self.augment_generator)
        labels = batch["label"].to(self.device)
        mixed = None
        if self.mixing:  # batched, on the device
            config = self.train_config
            clip, mixed = mix_batch(clip, labels, config.mixup_alpha, config.cutmix_alpha, self.mix_rng)
        clip = as_model_input(clip, self.train_config.channels_last)  # [B, C, T, H, W]
        accumulate = self.train_config.accumulate
        boundary = (step + 1) % accumulate == 0 or step + 1 == steps
        sync = self.model.no_sync() if self.context.enabled and not boundary else contextlib.nullcontext()
        with sync:
            with autocast(self.device, self.precision):
                out = self._forward(clip)
                target = labels if mixed is None else mixed.soft_targets(out.logits.shape[-1])  # [B] or [B, classes]
                task = F.cross_entropy(
                    out.logits.float(),
                    target,
                    weight=self.class_weights,
                    label_smoothing=self.train_config.label_smoothing,
                )
                loss = task + out.aux_loss
            if not self.scaler.is_enabled():  # under fp16 an overflow is the GradScaler's to skip, not an error
                self._check_finite(loss, step)
            self.scaler.scale(loss / accumulate).backward()
        if boundary:
            meter.add(steps=1, skipped_steps=float(self._optimizer_step()))
            lr = max(group["lr"] for group in self.optimizer.param_groups)
            self.trackers.log_metrics(
                {f"{STEP_PREFIX}loss": loss.item(), f"{STEP_PREFIX}lr": lr}, self.epoch * steps + step + 1
            )
        if torch.isfinite(loss):
            size = len(labels)
            meter.add(
                loss=loss.item() * size,
                task_loss=task.item() * size,
                aux_loss=float(out.aux_loss.detach()) * size,
                correct=topk_correct(out.logits.detach(), labels, (1,))[0],
                clips=size,
            )
        if out.routing is not None:
            meter.add_vector(out.routing.fraction_routed)
            size = len(labels)
            meter.add(flips=float(out.routing.flip_rate) * size, noise_std=float(out.routing.noise_std) * size)

    def _forward(self, clip: torch.Tensor):
        """The model's forward; a compiled model that fails to compile at its first step falls back to eager, loudly."""
        if self.compile_checked:
            return self.model(clip)
        try:
            return self.model(clip)
        except torch._dynamo.exc.TorchDynamoException as exc:
            reason = str(exc).strip().splitlines()[0][:200]
            log.warning("torch.compile failed (%s); training without compilation", reason)
            self.model = self.model._orig_mod
            return self.model(clip)
        finally:
            self.compile_checked = True

    def _check_finite(self, loss: torch.Tensor, step: int) -> None:
        bad = all_reduce_sum(torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0]), self.context)
        if bad.item() > 0:
            raise TrainingError(
                f"the loss became {loss.item()} at step {step + 1}; stopped without saving, so the last good "
                f"checkpoint in {self.run_dir} is kept. Lower train.lr or enable train.grad_clip"
            )

    def _optimizer_step(self) -> bool:
        """Clip, step, zero; True when the GradScaler skipped the step for inf/NaN gradients."""
        if self.train_config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(self.model.parameters(), self.train_config.grad_clip)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        skipped = self.scaler.is_enabled() and self.scaler.get_scale() < scale
        if self.ema is not None and not skipped:
            self.ema.update_parameters(unwrap_model(self.model))
        if self.train_config.scheduler == "cosine":  # per step; plateau steps per epoch on validation
            self.scheduler.step()
        return skipped

    @torch.no_grad()
    def evaluate(self, loader) -> dict:
        """Video-level accuracy: softmax averaged over each video's views.

        Runs the unwrapped model: ranks hold different numbers of evaluation batches, so no
        collective may happen inside the loop; the sums are reduced once at the end.
        """
        model = self.ema.module if self.ema is not None else unwrap_model(self.model)  # EMA: validate the average
        model.eval()
        meter = Meter()
        batches = tqdm(
            loader, desc="validating", unit="batch", leave=False, disable=None if self.context.is_main else True
        )
        for batch in batches:
            clips = self.preprocessing.on_device(batch["clip"], self.device, False)  # [B, V, C, T, H, W]
            probs = predict_views(model, clips, self.precision, self.train_config.channels_last).video_probs()
            labels = batch["label"].to(self.device)
            top1, top5 = topk_correct(probs, labels)
            nll = F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum")
            meter.add(top1=top1, top5=top5, loss=nll.item(), videos=len(labels))
        totals = meter.reduced(self.context)
        videos = max(1.0, totals.get("videos", 0.0))
        return {
            "top1": totals.get("top1", 0.0) / videos,
            "top5": totals.get("top5", 0.0) / videos,
            "loss": totals.get("loss", math.nan) / videos,
            "videos": int(totals.get("videos", 0)),
        }

    def save(self, state: TrainState, improved: bool) -> None:
        """``best`` (when improved) before ``last``: a kill between the two never leaves a last without its best."""
        if not self.context.is_main:
            return
        model_state = unwrap_model(self.model).state_dict()
        meta = {**self.run_meta, **self.state_meta(state), "scheduler": self.scheduler.state_dict()}
        if self.scaler.is_enabled():
            meta["grad_scaler"] = self.scaler.state_dict()
        if improved:  # the weights validation saw: the average when there is one
            best = self.ema.module.state_dict() if self.ema is not None else model_state
            save_checkpoint(self.run_dir / "best.safetensors", Checkpoint(best, {**meta, "ema": self.ema is not None}))
        ema = self.ema.state_dict() if self.ema is not None else {}
        full = Checkpoint(model_state, meta, self.optimizer.state_dict(), rng_state(), ema=ema)
        save_checkpoint(self.run_dir / "last.safetensors", full)

    def state_meta(self, state: TrainState) -> dict:
        return {
            "epoch": state.epoch,
            "best_metric": state.best_metric,
            "best_epoch": state.best_epoch,
            "stopped_early": state.stopped_early,
            "finished": run_is_finished(state.epoch, state.stopped_early, self.train_config.epochs),
            "saved": datetime.datetime.now(datetime.UTC).isoformat(),
        }

    def log_epoch(self, row: dict, seconds_left: float | None = None) -> None:
        """metrics.jsonl, TensorBoard and one line with the time the remaining epochs will take."""
        if not self.context.is_main:
            return
        append_jsonl(self.run_dir / "metrics.jsonl", row)
        figures = {key: value for key, value in row.items() if key not in ("epoch", "expert_fraction")}
        figures.update({f"expert_fraction/{i}": share for i, share in enumerate(row["expert_fraction"] or [])})
        self.trackers.log_metrics(figures, row["epoch"] + 1)
        log.info(
            "epoch %d/%d: loss %.4f, train top-1 %.3f, val top-1 %.3f, %.2f clips/s%s",
            row["epoch"] + 1,
            self.train_config.epochs,
            row["loss"],
            row["train_top1"],
            row["val_top1"],
            row["clips_per_s"],
            "" if not seconds_left else f"; about {duration_text(seconds_left)} left",
        )


def averaged_model(model: nn.Module, decay: float):
    """An exponential moving average of ``model``'s weights and buffers (torch.optim.swa_utils), or None at 0."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def duration_text(seconds: float) -> str:
    """``42 s``, ``3 min 5 s`` or ``1 h 12 min``: a time a person reads at a glance."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
