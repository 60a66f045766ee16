"""Self-describing checkpoints: safetensors tensors + JSON metadata, written atomically.

A checkpoint file holds ``model.*`` tensors, and for training state also ``optim.*`` and ``rng.*``
tensors. The metadata (``actionmoe`` key) holds the format version, epoch, best metric, the
resolved config, the class names, the preprocessing, and the JSON part of optimiser and
scheduler state. Loading never unpickles anything, so a checkpoint from an untrusted source
cannot execute code. Writing goes to a temporary file that is fsync'ed and renamed over the old
one: a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from actionmoe.errors import ActionMoEError

FORMAT = "actionmoe-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ActionMoEError):
    """Missing, corrupt or incompatible checkpoint."""


@dataclass
class Checkpoint:
    model: dict[str, torch.Tensor]
    meta: dict[str, Any]
    optimizer: dict | None = None
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    sha256: str = ""  # of the file it was read from


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename, fsync folder)."""
    from safetensors.torch import save

    tensors = {f"model.{k}": _plain(v) for k, v in checkpoint.model.items()}
    meta = {**checkpoint.meta, "format": FORMAT, "format_version": FORMAT_VERSION}
    if checkpoint.optimizer is not None:
        optim_tensors, meta["optimizer"] = _flatten_optimizer(checkpoint.optimizer)
        tensors.update(optim_tensors)
    tensors.update({f"rng.{k}": _plain(v) for k, v in checkpoint.rng.items()})
    payload = save(tensors, metadata={"actionmoe": json.dumps(meta)})
    _write_atomically(path, payload)


def load_checkpoint(path: Path, training_state: bool = False) -> Checkpoint:
    """Read a checkpoint; ``training_state`` also restores optimiser tensors and RNG states."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        data = path.read_bytes()
        tensors = load(data)
        meta = json.loads(_read_metadata(data).get("actionmoe", "null"))
    except (SafetensorError, ValueError, json.JSONDecodeError, OSError) as exc:
        raise CheckpointError(f"{path} is corrupt or not an actionmoe checkpoint ({exc}); delete it or pass --force") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an actionmoe checkpoint (no actionmoe metadata)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer actionmoe (format {meta['format_version']}); upgrade")
    groups = _split_prefixes(tensors)
    optimizer = _unflatten_optimizer(groups["optim"], meta["optimizer"]) if training_state and "optimizer" in meta else None
    digest = hashlib.sha256(data).hexdigest()
    return Checkpoint(groups["model"], meta, optimizer, groups["rng"] if training_state else {}, digest)


def _read_metadata(data: bytes) -> dict[str, str]:
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    return header.get("__metadata__", {})


def _split_prefixes(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "optim": {}, "rng": {}}
    for name, tensor in tensors.items():
        prefix, _, rest = name.partition(".")
        groups.setdefault(prefix, {})[rest] = tensor
    return groups


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu().contiguous().clone()


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain_state = {}, {}
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


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


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
