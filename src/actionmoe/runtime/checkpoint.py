"""Self-describing checkpoints: safetensors tensors + JSON metadata, written atomically.

A checkpoint file holds ``model.*`` tensors, and for training state also ``optim.*``, ``rng.*`` and
(with ``train.ema_decay``) ``ema.*``
tensors. The metadata (``actionmoe`` key) holds the format version, epoch, best metric, the
resolved config, the class names, the preprocessing, and the JSON part of optimiser and
scheduler state. Loading never unpickles anything, so a checkpoint from an untrusted source
cannot execute code. Writing goes to a temporary file that is fsync'ed and renamed over the old
one: a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from actionmoe.errors import CheckpointError
from actionmoe.files import write_atomically
from actionmoe.runtime.repository import check_model_folder, is_model_folder, model_folder_weights

FORMAT = "actionmoe-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model: dict[str, torch.Tensor]
    meta: dict[str, Any]
    optimizer: dict | None = None
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    sha256: str = ""  # of the file it was read from
    ema: dict[str, torch.Tensor] = field(default_factory=dict)  # the averaged model's state (train.ema_decay)


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename, fsync folder)."""
    from safetensors.torch import save

    tensors = {f"model.{k}": _plain(v) for k, v in checkpoint.model.items()}
    meta = {**checkpoint.meta, "format": FORMAT, "format_version": FORMAT_VERSION}
    if checkpoint.optimizer is not None:
        optim_tensors, meta["optimizer"] = _flatten_optimizer(checkpoint.optimizer)
        tensors.update(optim_tensors)
    tensors.update({f"rng.{k}": _plain(v) for k, v in checkpoint.rng.items()})
    tensors.update({f"ema.{k}": _plain(v) for k, v in checkpoint.ema.items()})
    metadata = {"actionmoe": json.dumps(meta)}
    # serialised in memory and written by our own atomic writer: safetensors' save_file stages its
    # own ``.tmpXXXXXX`` file that a kill would leave behind for good
    write_atomically(path, save(tensors, metadata=metadata))


def load_checkpoint(path: Path, training_state: bool = False) -> Checkpoint:
    """Read a checkpoint with safetensors' own memory-mapped loader; nothing is unpickled.

    ``training_state`` also reads optimiser tensors and RNG states.

    ``path`` may also be a model folder (``runtime.repository``): its ``model.safetensors`` is read
    and checked against its ``config.json``.

    Raises:
        CheckpointError: no such file, an unreadable one (permissions), a damaged one, one that is
            not an actionmoe checkpoint, or one whose weights hold NaN or infinity; a model folder
            that carries pickle or code files or disagrees with its weights.
    """
    if is_model_folder(path):
        weights, record = model_folder_weights(path)
        checkpoint = load_checkpoint(weights, training_state)
        check_model_folder(path, record, checkpoint.sha256, checkpoint.meta)
        return checkpoint
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:  # safetensors reports a denied open as its own error, not PermissionError
        open(path, "rb").close()
    except PermissionError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.strerror}); check its permissions") from exc
    wanted = ("model.", "optim.", "rng.", "ema.") if training_state else ("model.",)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys() if name.startswith(wanted)}  # noqa: SIM118 (not a dict)
        digest = _sha256(path)
    except PermissionError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.strerror}); check its permissions") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is damaged or not a safetensors file ({exc})") from exc
    meta = _parse_meta(path, metadata)
    groups = _split_prefixes(tensors)
    _check_finite(path, groups["model"])
    optimizer = (
        _unflatten_optimizer(groups["optim"], meta["optimizer"]) if training_state and "optimizer" in meta else None
    )
    training = training_state
    return Checkpoint(
        groups["model"],
        meta,
        optimizer,
        groups["rng"] if training else {},
        digest,
        groups.get("ema", {}) if training else {},
    )


def update_metadata(path: Path, changes: dict[str, Any]) -> None:
    """Set ``changes`` in the actionmoe metadata of the checkpoint file ``path``, every tensor kept (atomic write).

    Raises:
        CheckpointError: as ``load_checkpoint``.
    """
    from safetensors.torch import save

    checkpoint = load_checkpoint(path)  # checks the file first
    with safe_open(str(path), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
    meta = {**checkpoint.meta, **changes}
    write_atomically(path, save(tensors, metadata={"actionmoe": json.dumps(meta)}))


def _parse_meta(path: Path, metadata: dict[str, str]) -> dict:
    try:
        meta = json.loads(metadata.get("actionmoe", "null"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} has damaged actionmoe metadata ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an actionmoe checkpoint (no actionmoe metadata)")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise CheckpointError(f"{path} has damaged actionmoe metadata (format version {version!r})")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer actionmoe (format {version}); upgrade")
    for key in ("config", "preprocessing"):
        if key in meta and not isinstance(meta[key], dict):
            raise CheckpointError(f"{path} has damaged actionmoe metadata ({key} is not a table of keys)")
    check_class_list(meta.get("classes"), path)
    return meta


def check_class_list(classes: object, source: Path) -> tuple[str, ...]:
    """The class names a checkpoint or export records: a non-empty list of distinct, non-empty names.

    Raises:
        CheckpointError: anything else.
    """
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise CheckpointError(f"{source} records an invalid class list (it must be distinct, non-empty names)")
    return tuple(classes)


def _check_finite(path: Path, model: dict[str, torch.Tensor]) -> None:
    for name, tensor in model.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path} holds non-finite weights (NaN or infinity) in {name}; it cannot predict")


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _split_prefixes(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "optim": {}, "rng": {}}
    for name, tensor in tensors.items():
        prefix, _, rest = name.partition(".")
        groups.setdefault(prefix, {})[rest] = tensor
    return groups


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu().contiguous().clone()


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {}
    plain_state = {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = _plain(value)
            else:
                plain_state.setdefault(str(index), {})[key] = value
    return tensors, {"state": plain_state, "param_groups": state_dict["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        index, _, key = name.partition(".")
        state.setdefault(int(index), {})[key] = tensor
    for index, entries in plain["state"].items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": plain["param_groups"]}


def rng_state() -> dict[str, torch.Tensor]:
    """The global torch RNG states (CPU and every CUDA device): dropout and MoE noise use them."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def restore_rng(state: dict[str, torch.Tensor]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
