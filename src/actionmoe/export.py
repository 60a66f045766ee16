"""Export a checkpoint for deployment: a ``torch.export`` program (.pt2) or an ONNX model, plus a JSON sidecar.

(TorchScript is deprecated in current PyTorch; ``torch.export`` programs load with
``torch.export.load`` and feed AOTInductor or ExecuTorch.)

The exported graph takes a normalised clip batch [batch, 3, T, H, W] (T, H, W the ones the
checkpoint was trained for; the batch axis is dynamic) and returns class probabilities
[batch, classes]. The sidecar ``<file>.json`` holds the class names and the preprocessing a caller
must apply; ``Predictor.from_onnx`` reads both and runs the model with onnxruntime.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from actionmoe.engine.restore import restore_model
from actionmoe.errors import UsageError
from actionmoe.files import ensure_writable, write_atomically, write_json


class Probabilities(nn.Module):
    """The recognizer without its training outputs: clip batch -> softmax probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.model(clip).logits.softmax(dim=1)  # [B, classes]


@dataclass(frozen=True)
class ExportResult:
    model_path: Path
    sidecar_path: Path
    input_shape: tuple[int | str, ...]  # "batch" marks the dynamic axis


ONNX_OPSET = 20
FORMATS = ("torch", "onnx")


def export_checkpoint(checkpoint: Path, out: Path, batch_size: int = 1, fmt: str = "torch") -> ExportResult:
    """A ``torch.export`` program (.pt2) or an ONNX model (.onnx) of ``checkpoint``, with a JSON sidecar.

    Both take a float clip batch [batch, 3, T, H, W] with a dynamic batch axis (``batch_size`` is
    the example batch used for tracing) and return class probabilities [batch, classes]. The
    sidecar ``OUT.json`` records the classes, the preprocessing, the checkpoint's SHA-256 and the
    exported file's, so a sidecar that belongs to another file is detected.
    """
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name such as {out / 'model.onnx'}")
    ensure_writable(out.parent, "--out")
    restored = restore_model(checkpoint, "cpu")
    data = restored.config.data
    # traced with at least 2 clips: a batch of 1 would be specialised and the batch axis lose its dynamism
    example = torch.randn(max(2, batch_size), 3, data.clip_len, data.crop_size, data.crop_size)
    module = Probabilities(restored.model).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        if fmt == "onnx":
            with contextlib.redirect_stdout(sys.stderr):  # the exporter prints progress; stdout is for results
                program = torch.onnx.export(
                    module,
                    (example,),
                    dynamo=True,
                    dynamic_shapes=({0: batch},),
                    input_names=["clips"],
                    output_names=["probabilities"],
                    opset_version=ONNX_OPSET,
                )
            write_atomically(out, lambda path: program.save(str(path)))
        else:
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
            write_atomically(out, lambda path: torch.export.save(program, str(path)))
    shape = ("batch", *example.shape[1:])
    sidecar = write_json(
        sidecar_path(out),
        {
            "format": "onnx" if fmt == "onnx" else "torch.export",
            "opset": ONNX_OPSET if fmt == "onnx" else None,
            "input_shape": list(shape),
            "input": "float32 clips [batch, 3, T, H, W], RGB in [0, 1] then (x - mean) / std",
            "output": "class probabilities [batch, classes]",
            "classes": list(restored.classes),
            "preprocessing": restored.meta["preprocessing"],
            "checkpoint_sha256": restored.sha256,
            "model_sha256": file_sha256(out),
        },
    )
    return ExportResult(out, sidecar, shape)


def sidecar_path(model: Path) -> Path:
    return model.with_name(model.name + ".json")


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
