"""Device and precision in one place: code says ``.to(device)`` and ``with autocast(...)``."""

from __future__ import annotations

import contextlib
import re

import torch
from torch import nn

from actionmoe.config import DEVICE_PATTERN
from actionmoe.errors import UsageError


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` (this process's GPU) or ``cuda:N``.

    Raises:
        UsageError: CUDA asked for where there is none, or a GPU index that does not exist.
    """
    if re.fullmatch(DEVICE_PATTERN, preference) is None:
        raise UsageError(f"unknown device {preference!r}; use auto, cpu, cuda or cuda:N")
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if preference == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError(f"device {preference} asked for, but CUDA is not available here; use cpu or auto")
    index = local_rank if preference == "cuda" else int(preference.removeprefix("cuda:"))
    if index >= torch.cuda.device_count():
        raise UsageError(f"device cuda:{index} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device(f"cuda:{index}")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA, fp32 elsewhere; other values as given (the config validated them)."""
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


def as_model_input(clip: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A float [B, C, T, H, W] batch in the memory format the model was put in (channels_last_3d on CUDA)."""
    if channels_last and clip.device.type == "cuda":
        clip = clip.contiguous(memory_format=torch.channels_last_3d)
    return clip
