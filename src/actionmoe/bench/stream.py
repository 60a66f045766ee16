"""``actionmoe bench stream``: does live classification keep up with real time, in PyTorch and in onnxruntime?

A synthetic video is streamed at its own frame rate (``stream --realtime``) through the real
``run_stream`` with 2 s windows every second, once per engine, in one run: the share of complete
windows answered (the rest were skipped because the model was behind), the latency from a window's
last frame to its answer, and the real-time factor (model seconds per second of video; under 1
keeps up). Without ``--checkpoint`` the model is the ``hmdb51`` recipe's (16x112x112, 51 classes)
with random weights, which cost the same time as trained ones.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from actionmoe.acquire.synthetic import render_video
from actionmoe.bench.common import machine, table
from actionmoe.config import Config
from actionmoe.data.decode import write_video
from actionmoe.predict.export import export_checkpoint
from actionmoe.predict.predictor import Predictor
from actionmoe.predict.stream import StreamOptions, run_stream

FPS = 25


class TimedPredictor:
    """A Predictor whose ``video_probs`` calls are timed (the model's share of the stream)."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor, self.model_seconds = predictor, 0.0

    def __getattr__(self, name: str):
        return getattr(self.predictor, name)

    def video_probs(self, views):
        started = time.perf_counter()
        try:
            return self.predictor.video_probs(views)
        finally:
            self.model_seconds += time.perf_counter() - started


def random_checkpoint(config: Config, folder: Path, classes: int = 51) -> Path:
    """A checkpoint of ``config``'s model with random weights, as ``train`` would write it."""
    from actionmoe.engine.run import run_metadata
    from actionmoe.models.recognizer import build_model
    from actionmoe.runtime.checkpoint import Checkpoint, save_checkpoint

    config = replace(config, model=replace(config.model, weights="none"))
    names = tuple(f"class_{i:02d}" for i in range(classes))
    model = build_model(config.model, classes)
    path = folder / "random.safetensors"
    save_checkpoint(path, Checkpoint(model.state_dict(), run_metadata(config, names)))
    return path


def run_stream_benchmark(config: Config, checkpoint: Path | None = None, seconds: float = 20.0) -> dict:
    options = StreamOptions("2.0", "1.0", top_k=3, realtime=True)
    label = str(checkpoint) if checkpoint is not None else "random weights"
    with tempfile.TemporaryDirectory(prefix="actionmoe-bench-stream-") as scratch:
        folder = Path(scratch)
        checkpoint = checkpoint or random_checkpoint(config, folder)
        torch_predictor = Predictor.from_checkpoint(checkpoint, device="cpu", precision="fp32")
        height, width = torch_predictor.preprocessing.resize
        video = folder / "live.avi"
        write_video(video, render_video("move_right", np.random.default_rng(0), int(seconds * FPS), height, width), FPS)
        onnx = export_checkpoint(checkpoint, folder / "model.onnx", 1, "onnx").model_path
        engines = {"pytorch": torch_predictor, "onnxruntime": Predictor.from_onnx(onnx, device="cpu")}
        rows = [stream_row(name, predictor, video, options, seconds) for name, predictor in engines.items()]
    pre = torch_predictor.preprocessing
    return {
        "machine": machine(),
        "setting": f"{pre.clip_len}x{pre.crop_size}x{pre.crop_size}, {pre.test_clips}x{pre.test_crops} views, "
        f"window 2 s every 1 s, {seconds:g} s of {FPS} fps video read at its own rate",
        "checkpoint": label,
        "rows": rows,
    }


def stream_row(name: str, predictor: Predictor, video: Path, options: StreamOptions, seconds: float) -> dict:
    """One engine's run of ``video`` through ``run_stream`` in real time."""
    timed = TimedPredictor(predictor)
    latencies: list[float] = []
    summary = run_stream(timed, str(video), options, lambda row: latencies.append(row["latency_s"]))
    complete = summary.windows + summary.skipped_windows
    return {
        "engine": name,
        "windows_answered": summary.windows,
        "windows_skipped": summary.skipped_windows,
        "answered_in_time": summary.windows / max(1, complete),
        "latency_mean_s": float(np.mean(latencies)) if latencies else None,
        "latency_p95_s": float(np.percentile(latencies, 95)) if latencies else None,
        "real_time_factor": timed.model_seconds / seconds,
    }


def format_stream_benchmark(result: dict) -> str:
    m = result["machine"]
    header = f"bench stream on {m['gpu'] or m['cpu']} ({m['cores']} cores), torch {m['torch']}, {m['date']}: "
    rows = [
        {
            **row,
            "answered_in_time": f"{100 * row['answered_in_time']:.0f}%",
            "real_time_factor": f"{row['real_time_factor']:.2f}",
        }
        for row in result["rows"]
    ]
    columns = ["engine", "windows_answered", "windows_skipped", "answered_in_time", "latency_mean_s", "latency_p95_s"]
    return "\n".join([header + result["setting"], table(rows, [*columns, "real_time_factor"])])
