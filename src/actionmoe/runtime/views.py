"""One multi-view prediction routine, shared by validation, evaluation and the Predictor.

A video is judged from V views (clips x crops): the model classifies each view and the softmax
probabilities are averaged over the views. The softmax is of the logits divided by the
checkpoint's temperature (``evaluation.calibration``; 1 for a checkpoint without one).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from actionmoe.runtime.device import as_model_input, autocast


class ViewPredictions(NamedTuple):
    probs: torch.Tensor  # [B, V, C] float32 softmax(logits / temperature) per view
    gates: torch.Tensor | None  # [B, E] gate weights averaged over the views; None without a router
    router_logits: torch.Tensor | None = None  # [B, E] router logits centred over experts, view average
    logits: torch.Tensor | None = None  # [B, V, C] float32, before the temperature

    def video_probs(self) -> torch.Tensor:
        """[B, C]: the average over views, the video-level prediction."""
        return self.probs.mean(dim=1)


@torch.no_grad()
def predict_views(
    model: nn.Module, clips: torch.Tensor, precision: str, channels_last: bool = False, temperature: float = 1.0
) -> ViewPredictions:
    """Classify every view of a batch of videos.

    Args:
        model: an ActionRecognizer (or anything returning a HeadOutput), in eval mode.
        clips: [B, V, C, T, H, W] float on the model's device.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast), as ``runtime.device.precision_policy`` chose.
        channels_last: channels_last_3d on CUDA.
        temperature: the logits are divided by it before the softmax (``RestoredModel.temperature``).
    """
    batch_size, views = clips.shape[:2]
    with autocast(clips.device, precision):
        out = model(as_model_input(clips.flatten(0, 1), channels_last))  # [B * V, ...]
    logits = out.logits.float().view(batch_size, views, -1)  # [B, V, C]
    probs = (logits / temperature).softmax(dim=2)
    if out.routing is None:
        return ViewPredictions(probs, None, None, logits)
    gates = out.routing.gates.float().view(batch_size, views, -1).mean(dim=1)
    router = out.routing.logits.float().view(batch_size, views, -1)  # [B, V, E]
    centred = (router - router.mean(dim=2, keepdim=True)).mean(dim=1)  # softmax ignores a shared shift
    return ViewPredictions(probs, gates, centred, logits)
