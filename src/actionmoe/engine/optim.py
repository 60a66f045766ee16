"""Optimiser and learning-rate schedule from the train config."""

from __future__ import annotations

import math

import torch

from actionmoe.config import TrainConfig
from actionmoe.errors import ConfigError
from actionmoe.models.recognizer import ActionRecognizer, parameter_groups


def build_optimizer(model: ActionRecognizer, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.lr, config.backbone_lr_scale, config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    if config.optimizer == "adam":  # the original notebook's choice; weight decay as L2 in the gradient
        return torch.optim.Adam(groups, lr=config.lr)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    raise ConfigError(f"train.optimizer must be adam, adamw or sgd, got {config.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """ReduceLROnPlateau on validation accuracy (stepped per epoch) or per-step cosine with warmup."""
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=config.plateau_factor, patience=config.plateau_patience)
    if config.scheduler == "cosine":
        total = max(1, config.epochs * steps_per_epoch)
        warmup = min(total - 1, config.warmup_epochs * steps_per_epoch)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, warmup, config.min_lr_ratio))
    raise ConfigError(f"train.scheduler must be plateau or cosine, got {config.scheduler!r}")


def cosine_with_warmup(total_steps: int, warmup_steps: int, min_ratio: float):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
