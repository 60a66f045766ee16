"""Predict actions in any video file from nothing but a checkpoint.

    predictor = Predictor.from_checkpoint("runs/hmdb51-split1/best.safetensors")
    predictor.predict("clip.avi")  # -> [Prediction(label="ride_bike", score=0.91), ...]

The checkpoint carries the class names and the preprocessing it was trained with (frames,
resize, crop, normalisation, test views), so predictions use exactly the evaluation protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from actionmoe.data.builders import build_clip_spec
from actionmoe.data.dataset import VideoClipDataset
from actionmoe.data.transforms import ClipTransform
from actionmoe.engine.device import autocast, pick_device, resolve_precision
from actionmoe.engine.restore import RestoredModel, restore_model


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # softmax probability averaged over the views


class Predictor:
    def __init__(self, restored: RestoredModel, device: torch.device) -> None:
        self.restored, self.device = restored, device
        data = restored.config.data
        transform = ClipTransform(crop_size=data.crop_size, num_crops=data.test_crops, mean=tuple(data.mean),
                                  std=tuple(data.std))
        # the evaluation dataset's own view logic, so predictions follow the evaluation protocol exactly
        self.views = VideoClipDataset([], build_clip_spec(data, num_clips=data.test_clips), transform, data.decoder)
        self.precision = resolve_precision(restored.config.train.precision, device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> Predictor:
        target = pick_device(device)
        return cls(restore_model(Path(path), target), target)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.restored.classes

    def clip_views(self, video: Path) -> torch.Tensor:
        """Decoded, preprocessed views of ``video``: [V, C, T, H, W] float."""
        rng = np.random.default_rng(0)  # evaluation views are deterministic; the generator goes unused
        return self.views.transform(self.views.load_views(video, rng), rng)

    @torch.no_grad()
    def probabilities(self, video: str | Path) -> np.ndarray:
        """Class probabilities averaged over the views; [num_classes]."""
        views = self.clip_views(Path(video)).to(self.device)
        with autocast(self.device, self.precision):
            logits = self.restored.model(views).logits.float()  # [V, classes]
        return logits.softmax(dim=1).mean(dim=0).cpu().numpy()

    def predict(self, video: str | Path, top_k: int = 5) -> list[Prediction]:
        """The ``top_k`` most likely classes, best first."""
        probs = self.probabilities(video)
        order = np.argsort(-probs, kind="stable")[: max(1, top_k)]
        return [Prediction(self.classes[i], float(probs[i])) for i in order]
