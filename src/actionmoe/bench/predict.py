"""``actionmoe bench predict``: inference throughput of a checkpoint.

Two comparisons, each within one run: ``predict_many`` videos/s on a folder of videos with 1 and
2 decoding processes (decoding and the model together, as a user runs it), and the model alone on
a fixed batch of preprocessed clips in PyTorch against the same checkpoint exported to ONNX in
onnxruntime (CPU), timed alternately.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from actionmoe.bench.common import best_time, machine, table
from actionmoe.predict.export import export_checkpoint
from actionmoe.predict.inputs import expand_inputs
from actionmoe.predict.predictor import Predictor


def run_predict_benchmark(checkpoint: Path, videos: Path, repeats: int = 3, batch: int = 8) -> dict:
    files = expand_inputs([str(videos)])
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", precision="fp32")
    rows = []
    for workers in (1, 2):
        seconds = best_time(lambda w=workers: predictor.predict_many(files, workers=w, progress=False), repeats)
        rows.append(
            {
                "measure": f"predict_many, {workers} decoding process(es)",
                "rate": len(files) / seconds,
                "unit": "videos/s",
            }
        )
    rows += engine_rates(checkpoint, predictor, repeats, batch)
    return {
        "machine": machine(),
        "checkpoint": str(checkpoint),
        "videos": len(files),
        "repeats": repeats,
        "rows": rows,
        "onnx_vs_torch": rows[3]["rate"] / rows[2]["rate"],
    }


def engine_rates(checkpoint: Path, torch_predictor: Predictor, repeats: int, batch: int) -> list[dict]:
    """Clips/s of the model alone in PyTorch and in onnxruntime, alternating, on the same clips."""
    pre = torch_predictor.preprocessing
    clips = torch.randn(batch, 1, 3, pre.clip_len, pre.crop_size, pre.crop_size)  # [N, V, C, T, H, W]
    with tempfile.TemporaryDirectory() as scratch:
        model = export_checkpoint(checkpoint, Path(scratch) / "model.onnx", batch, "onnx").model_path
        onnx_predictor = Predictor.from_onnx(model, device="cpu")
        engines = {"pytorch": torch_predictor.engine, "onnxruntime": onnx_predictor.engine}
        best = {name: float("inf") for name in engines}
        for engine in engines.values():
            engine.view_probs(clips)  # warm-up
        for _ in range(repeats):
            for name, engine in engines.items():
                started = time.perf_counter()
                engine.view_probs(clips)
                best[name] = min(best[name], time.perf_counter() - started)
        agreement = float(
            np.abs(
                engines["pytorch"].view_probs(clips).numpy() - engines["onnxruntime"].view_probs(clips).numpy()
            ).max()
        )
    return [
        {
            "measure": f"model only, {name} (CPU, batch {batch})",
            "rate": batch / seconds,
            "unit": "clips/s",
            **({"max_probability_difference": agreement} if name == "onnxruntime" else {}),
        }
        for name, seconds in best.items()
    ]


def format_predict_benchmark(result: dict) -> str:
    m = result["machine"]
    header = (
        f"bench predict on {m['cpu']} ({m['cores']} cores), torch {m['torch']}, {m['date']}; "
        f"{result['videos']} videos, best of {result['repeats']}; onnxruntime / PyTorch = "
        f"{result['onnx_vs_torch']:.2f}"
    )
    return "\n".join([header, table(result["rows"], ["measure", "rate", "unit"])])
