"""``actionmoe bench model``: training-step clips/s of the full model against plain torchvision R(2+1)D-18.

Both models see the same input in the same run, timed alternately, so the ratio is robust to a
noisy machine. CPU runs fp32; CUDA runs bf16 autocast with channels_last_3d (optionally compiled).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from actionmoe.bench.common import machine, table
from actionmoe.config import ModelConfig
from actionmoe.models.recognizer import build_model
from actionmoe.runtime.device import autocast, prepare_model, synchronize, timed

NUM_CLASSES = 51


@dataclass(frozen=True)
class Setting:
    device: str
    batch: int
    frames: int
    size: int
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False

    def label(self) -> str:
        extras = [
            name
            for name, on in (("bf16", self.bf16), ("channels_last_3d", self.channels_last), ("compile", self.compile))
            if on
        ]
        return f"{self.device} {self.frames}x{self.size}x{self.size} batch {self.batch}" + (
            f" ({' + '.join(extras)})" if extras else ""
        )


def default_settings(device: str, compile_too: bool) -> list[Setting]:
    if device == "cpu":
        return [Setting("cpu", 2, 16, 64), Setting("cpu", 2, 16, 112)]
    settings = [Setting(device, 32, 16, 112, bf16=True, channels_last=True)]
    if compile_too:
        settings.append(Setting(device, 32, 16, 112, bf16=True, channels_last=True, compile=True))
    return settings


def _plain_r2plus1d() -> nn.Module:
    from torchvision.models.video import r2plus1d_18

    return r2plus1d_18(weights=None, num_classes=NUM_CLASSES)


def _step_fn(model: nn.Module, clip: torch.Tensor, labels: torch.Tensor, setting: Setting) -> Callable[[], None]:
    precision = "bf16" if setting.bf16 else "fp32"

    def step() -> None:
        with autocast(clip.device, precision):
            out = model(clip)
            logits, aux = (out.logits, out.aux_loss) if hasattr(out, "logits") else (out, 0.0)
            loss = nn.functional.cross_entropy(logits.float(), labels) + aux
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def _prepare(model: nn.Module, setting: Setting) -> nn.Module:
    model = prepare_model(model, torch.device(setting.device), setting.channels_last).train()
    return torch.compile(model) if setting.compile else model


def measure(setting: Setting, config: ModelConfig, repeats: int) -> dict:
    """Alternate baseline and full model ``repeats`` times; best clips/s of each and the overhead."""
    torch.manual_seed(0)
    clip = torch.randn(setting.batch, 3, setting.frames, setting.size, setting.size, device=setting.device)
    if setting.channels_last:
        clip = clip.contiguous(memory_format=torch.channels_last_3d)
    labels = torch.randint(0, NUM_CLASSES, (setting.batch,), device=setting.device)
    steps = {
        "r2plus1d_18": _step_fn(_prepare(_plain_r2plus1d(), setting), clip, labels, setting),
        "actionmoe": _step_fn(_prepare(build_model(config, NUM_CLASSES), setting), clip, labels, setting),
    }
    peak = {}
    for name, step in steps.items():  # warm-up (and compilation), then one step measured for memory
        step()
        step()
        peak[name] = _peak_memory_mb(step, setting.device)
    best = {name: float("inf") for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            best[name] = min(best[name], timed(step, setting.device))
    rates = {name: setting.batch / seconds for name, seconds in best.items()}
    return {
        "setting": setting.label(),
        "baseline_clips_per_s": rates["r2plus1d_18"],
        "model_clips_per_s": rates["actionmoe"],
        "overhead": rates["r2plus1d_18"] / rates["actionmoe"] - 1,
        "peak_memory_mb_per_clip": None if peak["actionmoe"] is None else peak["actionmoe"] / setting.batch,
    }


def _peak_memory_mb(step: Callable[[], None], device: str) -> float | None:
    """CUDA: the most memory one training step allocated (torch.cuda.max_memory_allocated); CPU: not measured."""
    if device == "cpu":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats()
    timed(step, device)
    return torch.cuda.max_memory_allocated() / 2**20


def run_model_benchmark(
    config: ModelConfig,
    device: str | None = None,
    repeats: int = 3,
    compile_too: bool = True,
    settings: list[Setting] | None = None,
) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = [measure(s, config, repeats) for s in (settings or default_settings(device, compile_too))]
    return {"machine": machine(), "model": config.__dict__, "rows": rows}


def format_model_benchmark(result: dict) -> str:
    m = result["machine"]
    header = f"bench model on {m['gpu'] or m['cpu']} ({m['cores']} cores), torch {m['torch']}, {m['date']}"
    rows = [
        {
            **r,
            "overhead": f"{100 * r['overhead']:+.1f}%",
            "peak_memory_mb_per_clip": r["peak_memory_mb_per_clip"] or "not measured (CPU)",
        }
        for r in result["rows"]
    ]
    columns = ["setting", "baseline_clips_per_s", "model_clips_per_s", "overhead", "peak_memory_mb_per_clip"]
    return "\n".join([header, table(rows, columns)])
