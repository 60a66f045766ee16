"""Rebuild a model from nothing but a checkpoint (its config, classes and weights)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from actionmoe.config import Config
from actionmoe.errors import CheckpointError, ConfigError
from actionmoe.models.recognizer import ActionRecognizer, build_model
from actionmoe.runtime.checkpoint import load_checkpoint
from actionmoe.runtime.compat import saved_config


@dataclass(frozen=True)
class RestoredModel:
    model: ActionRecognizer
    config: Config
    classes: tuple[str, ...]
    meta: dict
    path: Path
    sha256: str

    @property
    def temperature(self) -> float:
        """The logits' divisor fitted on validation after training (``evaluation.calibration``); 1 without one."""
        return float(self.meta.get("calibration", {}).get("temperature", 1.0))


def restore_model(path: Path, device: torch.device | str = "cpu") -> RestoredModel:
    """The model of ``path`` in eval mode on ``device``; backbone weights come from the checkpoint."""
    checkpoint = load_checkpoint(path)
    meta = checkpoint.meta
    try:
        config = saved_config(meta["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path} lacks a valid config ({exc})") from exc
    classes = tuple(meta["classes"])
    _check_calibration(path, meta.get("calibration", {}))
    config = _without_pretrained_download(config)
    model = build_model(config.model, len(classes))
    _check_weights_fit(path, model.state_dict(), checkpoint.model, len(classes))
    model.load_state_dict(checkpoint.model)
    return RestoredModel(model.to(device).eval(), config, classes, meta, path, checkpoint.sha256)


def _check_calibration(path: Path, record: object) -> None:
    temperature = record.get("temperature", 1.0) if isinstance(record, dict) else None
    valid = isinstance(temperature, int | float) and not isinstance(temperature, bool)
    if not valid or not math.isfinite(temperature) or temperature <= 0:
        raise CheckpointError(f"{path} has damaged actionmoe metadata (calibration temperature {temperature!r})")


def _without_pretrained_download(config: Config) -> Config:
    """The checkpoint holds every weight: never fetch or read the original backbone weights again."""
    return replace(config, model=replace(config.model, weights="none"))


def _check_weights_fit(
    path: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], num_classes: int
) -> None:
    """The checkpoint's tensors are exactly the ones its own config builds, shape for shape."""
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match its own model config ({len(missing)} missing, "
            f"{len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[:2]})"
        )
    wrong = [name for name, tensor in found.items() if tensor.shape != expected[name].shape]
    if wrong:
        raise CheckpointError(
            f"{path}: {wrong[0]} has shape {tuple(found[wrong[0]].shape)} but the model built for "
            f"its {num_classes} recorded classes needs {tuple(expected[wrong[0]].shape)}; the class "
            "list and the weights disagree"
        )
