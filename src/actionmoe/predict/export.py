"""Export a checkpoint for deployment: a ``torch.export`` program (.pt2) or an ONNX model, plus a JSON sidecar.

(TorchScript is deprecated in current PyTorch; ``torch.export`` programs load with
``torch.export.load`` and feed AOTInductor or ExecuTorch.)

The exported graph takes a normalised clip batch [batch, 3, T, H, W] (T, H, W the ones the
checkpoint was trained for; the batch axis is dynamic) and returns class probabilities
[batch, classes], the logits divided by the checkpoint's temperature inside the graph. The sidecar
``<file>.json`` holds the class names, the temperature and the preprocessing a caller must apply;
``Predictor.from_onnx`` reads both and runs the model with onnxruntime.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from actionmoe.errors import CheckpointError, UsageError
from actionmoe.files import check_output_file, write_atomically, write_json
from actionmoe.runtime.compat import preprocessing_record
from actionmoe.runtime.restore import restore_model


class Probabilities(nn.Module):
    """The recognizer without its training outputs: clip batch -> softmax(logits / temperature)."""

    def __init__(self, model: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return (self.model(clip).logits / self.temperature).softmax(dim=1)  # [B, classes]


@dataclass(frozen=True)
class ExportResult:
    model_path: Path
    sidecar_path: Path
    input_shape: tuple[int | str, ...]  # "batch" marks the dynamic axis


ONNX_OPSET = 20
FORMATS = ("torch", "onnx")


def export_checkpoint(checkpoint: Path, out: Path, batch_size: int = 1, fmt: str | None = None) -> ExportResult:
    """A ``torch.export`` program (.pt2) or an ONNX model (.onnx) of ``checkpoint``, with a JSON sidecar.

    Both take a float clip batch [batch, 3, T, H, W] with a dynamic batch axis (``batch_size`` is
    the example batch used for tracing) and return class probabilities [batch, classes]. The
    sidecar ``OUT.json`` records the classes, the preprocessing, the checkpoint's SHA-256 and the
    exported file's, so a sidecar that belongs to another file is detected. ``fmt`` None: ONNX for
    a name ending in .onnx, else a torch.export program.
    """
    fmt = check_export_options(out, batch_size, fmt)
    restored = restore_model(checkpoint, "cpu")
    data = restored.config.data
    # traced with at least 2 clips: a batch of 1 would be specialised and the batch axis lose its dynamism
    example = torch.randn(max(2, batch_size), 3, data.clip_len, data.crop_size, data.crop_size)
    module = Probabilities(restored.model, restored.temperature).eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        if fmt == "onnx":
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                verbose=False,  # its progress lines would fill a notebook cell's stderr
                dynamic_shapes=({0: batch},),
                input_names=["clips"],
                output_names=["probabilities"],
                opset_version=ONNX_OPSET,
            )
            write_atomically(out, lambda path: program.save(str(path)))
        else:
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
            write_atomically(out, program_bytes(program))
    shape = ("batch", *example.shape[1:])
    sidecar = write_json(
        sidecar_path(out),
        {
            "format": "onnx" if fmt == "onnx" else "torch.export",
            "opset": ONNX_OPSET if fmt == "onnx" else None,
            "input_shape": list(shape),
            "input": "float32 clips [batch, 3, T, H, W], RGB in [0, 1] then (x - mean) / std",
            "output": "class probabilities [batch, classes], softmax(logits / temperature)",
            "temperature": restored.temperature,  # fitted on validation after training; applied inside the graph
            "classes": list(restored.classes),
            "preprocessing": preprocessing_record(restored.config.data),  # what the model was rebuilt with
            "checkpoint_sha256": restored.sha256,
            "model_sha256": file_sha256(out),
        },
    )
    return ExportResult(out, sidecar, shape)


def program_bytes(program) -> bytes:
    """The ``.pt2`` archive of ``program`` without pickled sample inputs (torch.export would pickle them).

    Serialised in memory first, so a full disk fails in our own atomic write (one line), not inside torch.
    """
    program.example_inputs = None  # torch then writes an empty sample-inputs member: nothing to unpickle
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def load_program(path: str | Path) -> nn.Module:
    """The module of a ``.pt2`` written by ``actionmoe export``, loaded only after two checks.

    ``torch.export.load`` unpickles some archive members, so a ``.pt2`` from an untrusted source
    is as dangerous as a pickle. This loader first requires the sidecar ``PATH.json`` written
    beside it and the file's SHA-256 to equal the sidecar's ``model_sha256``, then refuses an
    archive with any pickled member (sample inputs, pickled weights or constants). Only then is
    it handed to ``torch.export.load``.

    Raises:
        CheckpointError: no file, no or another sidecar, or a pickled member.
    """
    path = Path(path)
    sidecar = read_sidecar(path, "torch.export")
    if sidecar.get("model_sha256") != file_sha256(path):
        raise CheckpointError(f"{path} does not match its sidecar {sidecar_path(path)} (another or altered file)")
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = pickled_members(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path} is damaged or not a torch.export archive ({exc}); export again") from exc
    if pickled:
        raise CheckpointError(f"{path} holds pickled data ({pickled[0]}), which could run code; refused")
    return torch.export.load(str(path)).module()


def pickled_members(archive: zipfile.ZipFile) -> list[str]:
    """Members of a ``.pt2`` archive that ``torch.export.load`` would unpickle."""

    def pickled(info: zipfile.ZipInfo) -> bool:
        name = info.filename
        if name.endswith("_config.json"):  # weights and constants: each entry says whether it is a pickle
            return _uses_pickle(archive.read(name))
        return info.file_size > 0 and ("/sample_inputs/" in name or name.endswith((".pt", ".pkl")))

    return [info.filename for info in archive.infolist() if pickled(info)]


def _uses_pickle(config: bytes) -> bool:
    try:
        entries = json.loads(config).get("config", {})
    except (ValueError, AttributeError):
        return True  # unreadable: torch would fail or guess; refuse
    return not isinstance(entries, dict) or any(
        not isinstance(entry, dict) or entry.get("use_pickle", False) for entry in entries.values()
    )


def read_sidecar(model: Path, fmt: str) -> dict:
    """The sidecar ``MODEL.json`` of an export of ``fmt`` (``onnx`` or ``torch.export``), as a dict.

    Raises:
        CheckpointError: no model file, no sidecar, a damaged one, or one of another kind.
    """
    sidecar = sidecar_path(model)
    if not model.is_file():
        raise CheckpointError(f"no exported model at {model}")
    if not sidecar.is_file():
        raise CheckpointError(f"its sidecar {sidecar} is missing: it holds the classes and preprocessing; export again")
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{sidecar} is damaged ({exc}); export again") from exc
    required = {"classes", "preprocessing", "checkpoint_sha256", "model_sha256"}
    if not isinstance(record, dict) or record.get("format") != fmt or not required <= set(record):
        raise CheckpointError(f"{sidecar} is not the sidecar of an actionmoe {FORMAT_NAMES[fmt]} export; export again")
    return record


FORMAT_NAMES = {"onnx": "ONNX", "torch.export": "torch.export"}
MAX_BATCH = 4096  # the upper end of the exported batch axis


SUFFIX_FORMATS = {".pt2": "torch", ".onnx": "onnx"}


def check_export_options(out: Path, batch_size: int, fmt: str | None = None) -> str:
    """Refuse unusable export options before the checkpoint is read or anything traced; the format to write.

    The format follows the suffix (.pt2: torch, .onnx: onnx); another suffix, or a ``fmt`` that
    contradicts the suffix, is refused with what works.

    Raises:
        UsageError: a batch size outside 1..MAX_BATCH, an unknown format, ``out`` a folder or
            not a regular file (or its sidecar path so).
        OutputError: the folder cannot be written.
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH} (the exported batch axis), got {batch_size}")
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    suffix_format = SUFFIX_FORMATS.get(out.suffix.lower())
    if suffix_format is None:
        raise UsageError(f"--out must end in .pt2 (a torch.export program) or .onnx (an ONNX model), got {out.name}")
    if fmt is not None and fmt != suffix_format:
        other = next(suffix for suffix, kind in SUFFIX_FORMATS.items() if kind == fmt)
        raise UsageError(
            f"--out {out.name} names {'an ONNX model' if suffix_format == 'onnx' else 'a torch.export program'}: "
            f"use --format {suffix_format} (or name it {other})"
        )
    fmt = suffix_format
    check_output_file(out, "--out")
    check_output_file(sidecar_path(out), "--out")
    return fmt


def sidecar_path(model: Path) -> Path:
    return model.with_name(model.name + ".json")


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
