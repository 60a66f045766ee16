"""Predict actions in any video file from nothing but a checkpoint.

    predictor = Predictor.from_checkpoint("runs/hmdb51-split1/best.safetensors")
    predictor.predict("clip.avi")  # -> [Prediction(label="ride_bike", score=0.91), ...]

The checkpoint carries the class names and the preprocessing it was trained with (frames,
resize, crop, normalisation, test views), so predictions use exactly the evaluation protocol:
the same view loader, preprocessing object and multi-view routine as ``actionmoe evaluate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from actionmoe.data.builders import build_preprocessing
from actionmoe.data.dataset import load_views
from actionmoe.data.decode import get_reader
from actionmoe.engine.device import inference_precision, pick_device
from actionmoe.engine.restore import RestoredModel, restore_model
from actionmoe.engine.views import predict_views
from actionmoe.errors import UsageError, VideoDecodeError


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # softmax probability averaged over the views


@dataclass(frozen=True)
class FilePrediction:
    """The ranked actions of one file, or why it could not be read."""

    path: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict:
        return {"path": self.path, "predictions": [asdict(p) for p in self.predictions], "error": self.error}


class Predictor:
    def __init__(self, restored: RestoredModel, device: torch.device) -> None:
        self.restored, self.device = restored, device
        data = restored.config.data
        self.preprocessing = build_preprocessing(data)
        self.reader = get_reader(data.decoder)
        self.precision = inference_precision(restored.config.train.precision, device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> Predictor:
        target = pick_device(device)
        return cls(restore_model(Path(path), target), target)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.restored.classes

    def clip_views(self, video: Path) -> torch.Tensor:
        """Decoded, preprocessed views of ``video`` on the device: [1, V, C, T, H, W] float."""
        rng = np.random.default_rng(0)  # evaluation views are deterministic; the generator goes unused
        views = load_views(self.reader, video, self.preprocessing, False, rng)  # [V', T, H, W, C]
        batch = self.preprocessing.worker(views, False, rng)[None]
        return self.preprocessing.on_device(batch, self.device, False)

    def probabilities(self, video: str | Path) -> np.ndarray:
        """Class probabilities averaged over the views; [num_classes]."""
        clips = self.clip_views(Path(video))
        out = predict_views(self.restored.model, clips, self.precision, self.restored.config.train.channels_last)
        return out.video_probs()[0].cpu().numpy()

    def predict(self, video: str | Path, top_k: int = 5) -> list[Prediction]:
        """The ``top_k`` most likely classes, best first."""
        if top_k < 1:
            raise UsageError(f"--top-k must be at least 1, got {top_k}")
        probs = self.probabilities(video)
        order = np.argsort(-probs, kind="stable")[:top_k]
        return [Prediction(self.classes[i], float(probs[i])) for i in order]

    def predict_files(self, videos: Sequence[str | Path], top_k: int = 5) -> list[FilePrediction]:
        """One result per file, in order; an undecodable file gets its reason instead of predictions."""
        results = []
        for video in videos:
            try:
                results.append(FilePrediction(str(video), self.predict(video, top_k)))
            except VideoDecodeError as exc:
                results.append(FilePrediction(str(video), error=str(exc)))
        return results
