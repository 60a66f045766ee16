"""Device and precision in one place: code says ``.to(device)`` and ``with autocast(...)``."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from actionmoe.errors import ActionMoEError


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ActionMoEError(f"train.device={preference} but CUDA is not available here; use cpu or auto")
    if preference == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(preference)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in ("auto", "fp32", "bf16"):
        raise ActionMoEError(f"train.precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    model = model.to(device)
    if channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last_3d)
    return model


def to_device(clip: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    clip = clip.to(device, non_blocking=True)
    if channels_last and device.type == "cuda" and clip.ndim == 5 and clip.is_floating_point():
        clip = clip.contiguous(memory_format=torch.channels_last_3d)
    return clip
