"""Rebuild a model from nothing but a checkpoint (its config, classes and weights)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from actionmoe.config import Config, load_config_dict
from actionmoe.engine.checkpoint import CheckpointError, load_checkpoint
from actionmoe.models.recognizer import ActionRecognizer, build_model


@dataclass(frozen=True)
class RestoredModel:
    model: ActionRecognizer
    config: Config
    classes: tuple[str, ...]
    meta: dict
    path: Path
    sha256: str


def restore_model(path: Path, device: torch.device | str = "cpu") -> RestoredModel:
    """The model of ``path`` in eval mode on ``device``; backbone weights come from the checkpoint."""
    checkpoint = load_checkpoint(path)
    meta = checkpoint.meta
    try:
        config = load_config_dict(meta["config"])
        classes = tuple(meta["classes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} lacks its config or class names ({exc})") from exc
    config = _without_pretrained_download(config)
    model = build_model(config.model, len(classes))
    missing, unexpected = model.load_state_dict(checkpoint.model, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match its own model config ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[:2]})")
    return RestoredModel(model.to(device).eval(), config, classes, meta, path, checkpoint.sha256)


def _without_pretrained_download(config: Config) -> Config:
    """The checkpoint holds every weight: never fetch or read the original backbone weights again."""
    return replace(config, model=replace(config.model, weights="none"))
