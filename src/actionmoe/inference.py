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

from actionmoe.data.decode import read_uniform_frames
from actionmoe.data.sampling import multi_clip_indices
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
        self.transform = ClipTransform(crop_size=data.crop_size, num_crops=data.test_crops,
                                       mean=tuple(data.mean), std=tuple(data.std))
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
        data = self.restored.config.data
        count = data.presample_frames if data.presample_frames > 0 else data.clip_len * data.test_clips
        frames = read_uniform_frames(video, count, tuple(data.resize), data.decoder)  # [F, H, W, C]
        views = frames[multi_clip_indices(len(frames), data.clip_len, data.test_clips)]  # [clips, T, H, W, C]
        return self.transform(views, np.random.default_rng(0))

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
