"""Device and precision in one place: code says ``.to(device)`` and ``with autocast(...)``."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from actionmoe.config import DEVICE_PATTERN
from actionmoe.errors import UsageError

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class PrecisionPolicy:
    """The numeric format of a run: ``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast + loss scaling)."""

    precision: str
    reason: str
    warn: bool = False  # the choice works but is worth a warning (fp16 on a CPU)

    @property
    def uses_scaler(self) -> bool:
        return self.precision == "fp16"


def choose_precision(requested: str, device_type: str, capability: tuple[int, int] | None = None) -> PrecisionPolicy:
    """The precision for ``requested`` (auto | fp32 | bf16 | fp16) on a device; a pure function.

    ``auto``: bf16 where the GPU computes it natively (CUDA compute capability >= 8.0: A100, L4,
    H100), fp16 with a GradScaler on older CUDA GPUs (P100 6.0, V100 7.0, T4 7.5), fp32 on a CPU.

    Raises:
        UsageError: bf16 asked for on a CUDA GPU without native bf16 (it would be emulated and slow).
    """
    if device_type != "cuda":
        if requested == "fp16":
            return PrecisionPolicy("fp16", "fp16 on the CPU as asked: emulated, slower than fp32", warn=True)
        return PrecisionPolicy(
            "fp32" if requested == "auto" else requested,
            "the CPU computes in fp32" if requested == "auto" else f"{requested} as configured",
        )
    native_bf16 = capability is not None and capability >= (8, 0)
    cc = "unknown" if capability is None else f"{capability[0]}.{capability[1]}"
    if requested == "auto":
        if native_bf16:
            return PrecisionPolicy("bf16", f"CUDA compute capability {cc} computes bf16 natively")
        return PrecisionPolicy("fp16", f"CUDA compute capability {cc} has no native bf16: fp16 with loss scaling")
    if requested == "bf16" and not native_bf16:
        raise UsageError(
            f"train.precision=bf16 but this GPU (compute capability {cc}) has no native bf16 and would "
            "emulate it slowly; use train.precision=fp16 or auto"
        )
    return PrecisionPolicy(requested, f"{requested} as configured")


def precision_policy(requested: str, device: torch.device) -> PrecisionPolicy:
    """``choose_precision`` for a real device (reads the GPU's compute capability)."""
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return choose_precision(requested, device.type, capability)


def inference_precision(requested: str, device: torch.device) -> str:
    """The training policy for evaluation and prediction; a checkpoint's bf16 on a GPU without it falls back to auto."""
    try:
        return precision_policy(requested, device).precision
    except UsageError as exc:
        fallback = precision_policy("auto", device)
        log.warning("%s; evaluating with %s instead (%s)", exc, fallback.precision, fallback.reason)
        return fallback.precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` (none for fp32); the MoE router turns it off for itself."""
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
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


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside torch.compile and DDP wrappers."""
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DDP


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously); a no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(work: Callable[[], object], device: torch.device | str) -> float:
    """Wall seconds of ``work()`` including the device work it queued: the one timer of the benchmarks."""
    synchronize(device)
    started = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - started


def machine_record(device: torch.device) -> dict:
    """What a run trained on, for its checkpoints and model card: the device by name, torch, the platform."""
    import platform

    if device.type == "cuda":
        name = f"cuda ({torch.cuda.get_device_name(device)})"
    else:
        name = f"{device.type} ({platform.processor() or platform.machine()})"
    return {"device": name, "torch": torch.__version__, "platform": platform.platform()}
