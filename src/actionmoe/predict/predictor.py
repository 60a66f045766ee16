"""Predict actions in videos from nothing but a checkpoint.

    from actionmoe import Predictor
    predictor = Predictor.from_checkpoint("runs/hmdb51-split1/best.safetensors")
    predictor.predict("clip.avi")                 # VideoPrediction(source=..., predictions=[...])
    predictor.predict(frames)                     # uint8 [T, H, W, 3] RGB frames already in memory
    predictor.predict_many(paths, workers=4)      # decoding in 4 processes while the model runs batched

Timeline, service and notebook build on the public seam: ``video_probs(views)`` turns decoded
views into class probabilities, ``rank(probs, top_k)`` into ranked Predictions.

The checkpoint carries the class names and the preprocessing it was trained with (frames,
resize, crop, normalisation, test views), so predictions use exactly the evaluation protocol:
the same view sampling, preprocessing object and multi-view routine as ``actionmoe evaluate``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import overload

import numpy as np
import torch
from tqdm.auto import tqdm

from actionmoe.data.dataset import load_views, views_from_frames
from actionmoe.data.decode import get_reader
from actionmoe.data.transforms import Preprocessing
from actionmoe.data.workers import batched, ordered_map
from actionmoe.errors import CheckpointError, ConfigError, UsageError, VideoDecodeError
from actionmoe.runtime.checkpoint import check_class_list
from actionmoe.runtime.compat import preprocessing_from_record
from actionmoe.runtime.device import inference_precision, pick_device, precision_policy
from actionmoe.runtime.repository import HUB_PREFIX, fetch_model_folder
from actionmoe.runtime.restore import RestoredModel, restore_model
from actionmoe.runtime.views import predict_views


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # softmax(logits / temperature) averaged over the views: calibrated on validation


UNKNOWN = "unknown"  # the answer when no class is confident enough (``min_confidence``)


def check_min_confidence(value: float) -> float:
    """``--min-confidence``: a probability in [0, 1].

    Raises:
        UsageError: anything else (NaN included).
    """
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"--min-confidence must be between 0 and 1, got {value}")
    return float(value)


def answer(predictions: list[Prediction], min_confidence: float) -> str | None:
    """The top class when its probability is above ``min_confidence``, else ``unknown``; None without predictions.

    0 always answers (a softmax probability is positive); 1 never does.
    """
    if not predictions:
        return None
    return predictions[0].label if predictions[0].score > min_confidence else UNKNOWN


@dataclass(frozen=True)
class VideoPrediction:
    """The ranked actions of one video, or why it could not be read; the same JSON everywhere."""

    source: str  # the file's path, or "<frames>"
    predictions: list[Prediction] = field(default_factory=list)
    seconds: float = 0.0  # decoding and this video's share of the model time
    error: str | None = None
    min_confidence: float = 0.0  # below it the answer is "unknown" (the ranking is still listed)

    @property
    def answer(self) -> str | None:
        """The top class, ``unknown`` when it is not above ``min_confidence``, None for an unreadable video."""
        return answer(self.predictions, self.min_confidence)

    def to_json(self) -> dict:
        return {
            "path": self.source,
            "answer": self.answer,
            "predictions": [asdict(p) for p in self.predictions],
            "seconds": round(self.seconds, 4),
            "error": self.error,
        }


@dataclass(frozen=True)
class DecodeJob:
    path: str
    preprocessing: Preprocessing
    decoder: str


@dataclass(frozen=True)
class DecodedVideo:
    """One file's test views, or why it could not be read."""

    path: str
    views: np.ndarray | None  # uint8 [V, T, H, W, 3]; None when unreadable
    error: str | None
    seconds: float  # decoding time


def _decode_views(job: DecodeJob) -> DecodedVideo:
    """Decode one file's views (in a worker process when there are workers)."""
    started = time.perf_counter()
    try:
        views = load_views(get_reader(job.decoder), Path(job.path), job.preprocessing, False, np.random.default_rng(0))
    except VideoDecodeError as exc:
        return DecodedVideo(job.path, None, str(exc), time.perf_counter() - started)
    return DecodedVideo(job.path, views, None, time.perf_counter() - started)


class TorchEngine:
    """The checkpoint's model in PyTorch, under the precision policy's autocast."""

    def __init__(self, restored: RestoredModel, precision: str) -> None:
        self.restored, self.precision = restored, precision

    def view_probs(self, clips: torch.Tensor) -> torch.Tensor:
        """[N, V, C, T, H, W] float clips -> [N, V, classes] probabilities."""
        channels_last = self.restored.config.train.channels_last
        return predict_views(self.restored.model, clips, self.precision, channels_last, self.restored.temperature).probs


class OnnxEngine:
    """An exported ONNX model in onnxruntime (CUDA provider when present and asked for, else CPU); the exported
    graph divides by the checkpoint's temperature itself."""

    def __init__(self, session) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def view_probs(self, clips: torch.Tensor) -> torch.Tensor:
        batch, views = clips.shape[:2]
        flat = clips.flatten(0, 1).float().cpu().numpy()  # [N * V, C, T, H, W]
        probs = self.session.run(None, {self.input_name: flat})[0]
        return torch.from_numpy(probs).view(batch, views, -1)


class Predictor:
    """Ranked actions from a checkpoint (PyTorch) or an exported ONNX model (onnxruntime), one pre-/post-processing.

    Args:
        engine: computes per-view probabilities from preprocessed clips.
        classes: class names, in label order.
        preprocessing: the training run's preprocessing (its test views).
        decoder: the video reader to use.
        device: where preprocessed clips go (the CPU for onnxruntime).
        checkpoint_sha256: identifies the weights (recorded in batch outputs).
        source: the checkpoint or ONNX file.
        restored: the PyTorch model and its metadata (None for ONNX).
        min_confidence: a video whose top probability is not above it is answered ``unknown``.
    """

    def __init__(
        self,
        engine,
        *,
        classes: tuple[str, ...],
        preprocessing: Preprocessing,
        decoder: str,
        device: torch.device,
        checkpoint_sha256: str,
        source: Path,
        restored: RestoredModel | None = None,
        min_confidence: float = 0.0,
    ) -> None:
        self.engine = engine
        self.classes = classes
        self.preprocessing = preprocessing
        self.decoder = decoder
        self.reader = get_reader(decoder)
        self.device = device
        self.checkpoint_sha256 = checkpoint_sha256
        self.source = source
        self.restored = restored
        self.min_confidence = check_min_confidence(min_confidence)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        precision: str | None = None,
        engine: str = "auto",
        min_confidence: float = 0.0,
    ) -> Predictor:
        """``path``: a checkpoint file, a model folder, or ``hf://OWNER/NAME[@REVISION]`` (downloaded, cached).
        ``precision``: None = the checkpoint's training policy on this device; else auto | fp32 | bf16 | fp16.
        ``engine``: ``auto`` (ONNX for a .onnx file, else PyTorch), ``torch`` or ``onnx``.
        ``min_confidence``: answer ``unknown`` when the top probability is not above it."""
        check_min_confidence(min_confidence)
        if isinstance(path, str) and path.startswith(HUB_PREFIX):
            path = fetch_model_folder(path)
        engine = choose_engine(Path(path), engine)
        if engine == "onnx":
            return cls.from_onnx(path, device, min_confidence)
        if precision not in (None, "auto", "fp32", "bf16", "fp16"):
            raise UsageError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
        target = pick_device(device)
        restored = restore_model(Path(path), target)
        if precision is None:  # the training policy; a checkpoint's bf16 on a GPU without it falls back
            chosen = inference_precision(restored.config.train.precision, target)
        else:
            chosen = precision_policy(precision, target).precision
        data = restored.config.data
        return cls(
            TorchEngine(restored, chosen),
            classes=restored.classes,
            preprocessing=Preprocessing.from_config(data),
            decoder=data.decoder,
            device=target,
            checkpoint_sha256=restored.sha256,
            source=Path(path),
            restored=restored,
            min_confidence=min_confidence,
        )

    @classmethod
    def from_onnx(cls, path: str | Path, device: str = "auto", min_confidence: float = 0.0) -> Predictor:
        """An ONNX model written by ``actionmoe export --format onnx``, with its sidecar ``PATH.json``.

        The sidecar is checked like a checkpoint's metadata (class list, preprocessing through the
        config's validation) and against the model itself (input clip shape, number of outputs).

        Raises:
            CheckpointError: no such file, no sidecar, a sidecar written for another file or that
                disagrees with the model, or a damaged model.
            UsageError: onnxruntime is not installed.
        """
        from actionmoe.predict.export import file_sha256, read_sidecar, sidecar_path

        path = Path(path)
        sidecar = read_sidecar(path, "onnx")
        if sidecar.get("model_sha256") != file_sha256(path):
            raise CheckpointError(f"{sidecar_path(path)} describes another model than {path}; export again")
        classes = check_class_list(sidecar["classes"], sidecar_path(path))
        try:
            data = preprocessing_from_record(sidecar["preprocessing"])
        except ConfigError as exc:
            raise CheckpointError(f"{sidecar_path(path)} has invalid preprocessing ({exc}); export again") from None
        session = _onnx_session(path, device)
        _check_onnx_shapes(path, session, data, len(classes))
        return cls(
            OnnxEngine(session),
            classes=classes,
            preprocessing=Preprocessing.from_config(data),
            decoder=data.decoder,
            device=torch.device("cpu"),
            checkpoint_sha256=sidecar["checkpoint_sha256"],
            source=path,
            min_confidence=min_confidence,
        )

    @overload
    def predict(self, video: str | Path | np.ndarray | torch.Tensor, top_k: int = 5) -> VideoPrediction: ...

    @overload
    def predict(self, video: list | tuple, top_k: int = 5) -> list[VideoPrediction]: ...

    def predict(self, video, top_k: int = 5):
        """Ranked actions of a path or frames [T, H, W, 3] uint8 (one VideoPrediction), or of a list of paths (a list).

        Raises:
            VideoDecodeError: a single path or frame array that cannot be used (``predict_many``
                reports those per file instead).
        """
        _check_top_k(top_k)
        if isinstance(video, list | tuple):
            return self.predict_many(video, top_k=top_k, progress=False)
        started = time.perf_counter()
        rng = np.random.default_rng(0)  # evaluation views are deterministic; the generator goes unused
        if isinstance(video, np.ndarray | torch.Tensor):
            frames = video.cpu().numpy() if isinstance(video, torch.Tensor) else video
            views, source = views_from_frames(frames, self.preprocessing, False, rng), "<frames>"
        else:
            views, source = load_views(self.reader, Path(video), self.preprocessing, False, rng), str(video)
        probs = self.video_probs([views])[0]
        return VideoPrediction(
            source, self.rank(probs, top_k), time.perf_counter() - started, min_confidence=self.min_confidence
        )

    def probabilities(self, video: str | Path) -> np.ndarray:
        """Class probabilities averaged over the views; [num_classes]."""
        views = load_views(self.reader, Path(video), self.preprocessing, False, np.random.default_rng(0))
        return self.video_probs([views])[0]

    def predict_many(
        self, videos: Sequence[str | Path], top_k: int = 5, workers: int = 0, batch_size: int = 8, progress: bool = True
    ) -> list[VideoPrediction]:
        """One VideoPrediction per file, in order; an unreadable file gets its reason instead of predictions."""
        return list(self.iter_predictions(videos, top_k, workers, batch_size, progress))

    def iter_predictions(
        self, videos: Sequence[str | Path], top_k: int = 5, workers: int = 0, batch_size: int = 8, progress: bool = True
    ) -> Iterator[VideoPrediction]:
        """``predict_many`` as results arrive: ``workers`` processes decode while the model runs on batches."""
        check_batch_options(top_k, workers, batch_size)
        jobs = [DecodeJob(str(path), self.preprocessing, self.decoder) for path in videos]
        bar = tqdm(total=len(jobs), unit="video", desc="predicting", disable=None if progress else True)
        for batch in batched(ordered_map(_decode_views, jobs, workers), batch_size):
            yield from self._predict_decoded(batch, top_k)
            bar.update(len(batch))
        bar.close()

    def _predict_decoded(self, batch: list[DecodedVideo], top_k: int) -> list[VideoPrediction]:
        readable = [item for item in batch if item.views is not None]
        started = time.perf_counter()
        probs = self.video_probs([item.views for item in readable]) if readable else []
        share = (time.perf_counter() - started) / max(1, len(readable))  # this video's part of the model time
        ranked = iter([self.rank(p, top_k) for p in probs])  # in the order of the readable videos
        return [
            VideoPrediction(item.path, next(ranked), item.seconds + share, min_confidence=self.min_confidence)
            if item.views is not None
            else VideoPrediction(item.path, [], item.seconds, item.error)
            for item in batch
        ]

    def video_probs(self, views: list[np.ndarray]) -> np.ndarray:
        """Video-level probabilities [N, classes] for N videos' uint8 views [V, T, H, W, 3] (test-view average).

        Raises:
            CheckpointError: the model's scores are not finite (damaged weights).
        """
        rng = np.random.default_rng(0)
        batch = torch.stack([self.preprocessing.worker(v, False, rng) for v in views])  # [N, V', ...]
        clips = self.preprocessing.on_device(batch, self.device, False)  # [N, V', C, T, H, W]
        probs = self.engine.view_probs(clips).mean(dim=1).cpu().numpy()  # softmax averaged over the views
        if not np.isfinite(probs).all():
            raise CheckpointError(
                f"{self.source}: the model's scores are not finite (NaN or infinity); its weights are damaged "
                "or out of range, so it cannot predict"
            )
        return probs

    def rank(self, probs: np.ndarray, top_k: int) -> list[Prediction]:
        """The ``top_k`` classes of one video's probabilities [classes], best first (ties keep class order)."""
        order = np.argsort(-probs, kind="stable")[:top_k]
        return [Prediction(self.classes[i], float(probs[i])) for i in order]


def _onnx_session(path: Path, device: str):
    try:
        import onnxruntime
    except ImportError:
        raise UsageError("--engine onnx needs onnxruntime: pip install 'actionmoe[export]'") from None
    wanted = "CUDAExecutionProvider" if pick_device(device).type == "cuda" else "CPUExecutionProvider"
    available = onnxruntime.get_available_providers()
    providers = list(
        dict.fromkeys([wanted, "CPUExecutionProvider"] if wanted in available else ["CPUExecutionProvider"])
    )
    try:
        return onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own error types for unreadable models
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} is a damaged ONNX model ({reason}); export again") from None


def _check_onnx_shapes(path: Path, session, data, num_classes: int) -> None:
    """The traced model takes the sidecar's clips [batch, 3, clip_len, crop, crop] and gives one score per class."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    expected = [3, data.clip_len, data.crop_size, data.crop_size]
    shape = list(inputs[0].shape[1:]) if inputs else []
    if shape != expected:
        raise CheckpointError(
            f"{path}: the model was exported for clips {shape} but its sidecar describes {expected}; export again"
        )
    width = outputs[0].shape[-1] if outputs and outputs[0].shape else None
    if isinstance(width, int) and width != num_classes:
        raise CheckpointError(
            f"{path}: its sidecar lists {num_classes} classes but the model outputs {width}; export again"
        )


def choose_engine(path: Path, engine: str = "auto") -> str:
    """``torch`` or ``onnx`` for ``path``: by its suffix for ``auto``; a contradiction names what works.

    Raises:
        UsageError: an unknown engine, ``onnx`` for a safetensors checkpoint, ``torch`` for an ONNX file.
    """
    is_onnx = path.suffix.lower() == ".onnx"
    if engine == "auto":
        return "onnx" if is_onnx else "torch"
    if engine not in ("torch", "onnx"):
        raise UsageError(f"--engine must be auto, torch or onnx, got {engine!r}")
    if engine == "onnx" and path.suffix.lower() == ".safetensors":
        raise UsageError(
            f"{path.name} is a safetensors checkpoint: drop --engine onnx, or export it first "
            f"(actionmoe export --checkpoint {path} --out model.onnx)"
        )
    if engine == "torch" and is_onnx:
        raise UsageError(f"{path.name} is an ONNX model: use --engine onnx (or leave --engine out)")
    return engine


def _check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {top_k}")


def check_batch_options(top_k: int, workers: int = 0, batch_size: int = 1) -> None:
    """The prediction options a user sets, checked before any model is loaded or video decoded.

    Raises:
        UsageError: a top-k or batch size below 1, a negative worker count.
    """
    _check_top_k(top_k)
    if workers < 0 or batch_size < 1:
        raise UsageError(f"--workers must be 0 or more and --batch-size at least 1, got {workers}, {batch_size}")
