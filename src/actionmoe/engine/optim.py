"""Optimiser and learning-rate schedule from the train config."""

from __future__ import annotations

import math

import torch
from torch import nn

from actionmoe.config import TrainConfig
from actionmoe.runtime.compat import PARAMETER_GROUP_ORDER


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.lr, config.backbone_lr_scale, config.weight_decay, config.router_lr_scale)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    if config.optimizer == "adam":  # the original notebook's choice; weight decay as L2 in the gradient
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """ReduceLROnPlateau on validation accuracy (stepped per epoch) or per-step cosine with warmup."""
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=config.plateau_factor, patience=config.plateau_patience
        )
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(total - 1, config.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, warmup, config.min_lr_ratio))


def cosine_with_warmup(total_steps: int, warmup_steps: int, min_ratio: float):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def parameter_groups(
    model: nn.Module, lr: float, backbone_lr_scale: float, weight_decay: float, router_lr_scale: float = 1.0
) -> list[dict]:
    """Optimizer groups: backbone at ``lr * backbone_lr_scale``, the MoE router at ``lr * router_lr_scale``
    (its own group only when the scale is not 1), the rest at ``lr``; no weight decay on norms and biases."""
    scales = {"new": 1.0, "router": router_lr_scale, "backbone": backbone_lr_scale}
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "backbone" if name.startswith("backbone.") else "new"
        if part == "new" and ".router." in f".{name}" and router_lr_scale != 1.0:
            part = "router"
        decays = param.ndim >= 2 and "norm" not in name
        groups.setdefault((part, decays), []).append(param)
    return [
        {
            "params": params,
            "lr": lr * scales[part],
            "weight_decay": weight_decay if decays else 0.0,
            "name": f"{part}{'' if decays else '_no_decay'}",
        }
        for part in PARAMETER_GROUP_ORDER  # the saved optimizer state's layout: fixed for old runs to resume
        for decays in (False, True)
        if (params := groups.get((part, decays)))
    ]
