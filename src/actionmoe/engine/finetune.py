"""Starting a run from another one: weights from an earlier checkpoint, parts of the model frozen.

``model.init_from`` takes an actionmoe checkpoint (backbone and motion modules load; the head
loads only when the classes are the same, else it starts fresh) or a plain R(2+1)D state dict (as
``model.weights`` does). ``train.freeze`` stops gradients for the backbone (and the motion modules):
``requires_grad`` is off, so nothing is computed for them, and their BatchNorm statistics stay as
loaded (the Trainer keeps frozen parts in eval mode).
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from actionmoe.errors import CheckpointError, WeightsError
from actionmoe.models.backbone import load_backbone_weights
from actionmoe.runtime.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

FROZEN_PARTS = {"none": (), "backbone": ("backbone",), "backbone+motion": ("backbone", "motion")}


def initialise_from(model: nn.Module, path: Path, classes: tuple[str, ...]) -> str:
    """Load ``path``'s weights into a fresh ``model`` (an ActionRecognizer); returns what was loaded, in words.

    Raises:
        WeightsError: no such file, or weights that do not fit this model (other backbone or
            motion settings): the keys or shapes that differ, never silently dropped.
    """
    if not path.exists():
        raise WeightsError(f"model.init_from {path} does not exist")
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError:  # not an actionmoe checkpoint: a plain backbone state dict, as model.weights takes
        load_backbone_weights(model.backbone, str(path))
        return f"backbone from {path}; motion modules and head start fresh"
    same_classes = list(checkpoint.meta.get("classes", [])) == list(classes)
    state = {key: value for key, value in checkpoint.model.items() if same_classes or not key.startswith("head.")}
    _check_fits(model.state_dict(), state, path)
    model.load_state_dict(state, strict=False)
    if same_classes:
        return f"backbone, motion modules and head from {path} (the same {len(classes)} classes)"
    return (
        f"backbone and motion modules from {path}; the head starts fresh for {len(classes)} classes "
        f"(the checkpoint's {len(checkpoint.meta.get('classes', []))} differ)"
    )


def _check_fits(own: dict, loaded: dict, path: Path) -> None:
    unknown = sorted(set(loaded) - set(own))
    missing = sorted(key for key in own if not key.startswith("head.") and key not in loaded)
    wrong = sorted(key for key in set(loaded) & set(own) if loaded[key].shape != own[key].shape)
    if unknown or missing or wrong:
        example = (unknown or missing or wrong)[:2]
        raise WeightsError(
            f"model.init_from {path} does not fit this model ({len(unknown)} unknown, {len(missing)} missing, "
            f"{len(wrong)} differently shaped tensors, e.g. {example}); its model settings (motion taps, "
            "layer4 stride, head) must match this config's"
        )


def freeze(model: nn.Module, what: str) -> tuple[str, ...]:
    """Turn off gradients for ``FROZEN_PARTS[what]`` of ``model``; returns those parts' names."""
    parts = FROZEN_PARTS[what]
    for name in parts:
        for parameter in getattr(model, name).parameters():
            parameter.requires_grad_(False)
    if parts:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        log.info("frozen: %s; %s of %s parameters train", " and ".join(parts), f"{trainable:,}", f"{total:,}")
    return parts
