"""Export a checkpoint for deployment as a ``torch.export`` program (.pt2) plus a JSON sidecar.

(TorchScript is deprecated in current PyTorch; ``torch.export`` programs load with
``torch.export.load`` and feed AOTInductor or ExecuTorch.)

The exported graph takes a normalised clip batch [B, 3, T, H, W] (fixed shape, the one the
checkpoint was trained for, batch size as given) and returns class probabilities [B, classes].
The sidecar ``<file>.json`` holds the class names and the preprocessing a caller must apply.
"""

from __future__ import annotations

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
    input_shape: tuple[int, ...]


def export_checkpoint(checkpoint: Path, out: Path, batch_size: int = 1) -> ExportResult:
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    restored = restore_model(checkpoint, "cpu")
    data = restored.config.data
    shape = (batch_size, 3, data.clip_len, data.crop_size, data.crop_size)
    module = Probabilities(restored.model).eval()
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name such as {out / 'model.pt2'}")
    ensure_writable(out.parent, "--out")
    with torch.no_grad():
        program = torch.export.export(module, (torch.randn(shape),))
    write_atomically(out, lambda path: torch.export.save(program, str(path)))
    sidecar = write_json(
        out.with_name(out.name + ".json"),
        {
            "format": "torch.export",
            "input_shape": list(shape),
            "input": "float32 clip [B, 3, T, H, W], RGB in [0, 1] then (x - mean) / std",
            "output": "class probabilities [B, classes]",
            "classes": list(restored.classes),
            "preprocessing": restored.meta["preprocessing"],
            "checkpoint_sha256": restored.sha256,
        },
    )
    return ExportResult(out, sidecar, shape)
