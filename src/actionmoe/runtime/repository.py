"""A trained model as a shareable folder (the Hugging Face Hub model-repository layout), read back safely.

    model.safetensors   the best checkpoint, as ``train`` wrote it (weights and JSON metadata)
    config.json         what the folder holds: format, the weights' sha256, classes, preprocessing, model config
    README.md           the model card (``predict.share.model_card``)
    model.onnx (+ .json)  the ONNX export, when there is one

Everywhere a checkpoint is read, such a folder works too (``load_checkpoint`` resolves it here).
Reading it loads safetensors only: a folder carrying a pickle-based file (``.bin``, ``.pt``,
``.pth``, ``.pkl``, ``.ckpt``) or Python code is refused, and so is one whose ``config.json``
disagrees with its weights (another sha256, other classes or preprocessing): a tampered folder is
one line, never a model that answers with the wrong labels.
"""

from __future__ import annotations

import json
from pathlib import Path

from actionmoe.errors import CheckpointError

FORMAT = "actionmoe-model"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".py")


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and ((path / CONFIG).is_file() or (path / WEIGHTS).is_file())


def model_folder_weights(folder: Path) -> tuple[Path, dict]:
    """The weights file of a model folder and its ``config.json``, after the checks that need no loading.

    Raises:
        CheckpointError: a pickle-based or code file in the folder, a missing file, a config.json that
            is not actionmoe's.
    """
    unsafe = sorted(p.name for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in UNSAFE_SUFFIXES)
    if unsafe:
        raise CheckpointError(
            f"{folder} carries {unsafe[0]}, a pickle-based or code file; actionmoe loads safetensors only "
            "and runs no code from a model folder"
        )
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder} is not an actionmoe model folder: it has no {name}")
    try:
        record = json.loads((folder / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder / CONFIG} is not valid JSON ({exc})") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f'{folder / CONFIG} is not an actionmoe model config (no "format": "{FORMAT}")')
    return folder / WEIGHTS, record


def check_model_folder(folder: Path, record: dict, sha256: str, meta: dict) -> None:
    """``config.json`` agrees with the loaded weights: the same file, classes and preprocessing.

    Raises:
        CheckpointError: naming what differs (the folder was changed after it was written).
    """
    if record.get("sha256") != sha256:
        raise CheckpointError(
            f"{folder / WEIGHTS} is not the file {folder / CONFIG} describes (sha256 {sha256[:12]}... against "
            f"{str(record.get('sha256'))[:12]}...); the folder was changed after it was written"
        )
    for key in ("classes", "preprocessing"):
        if record.get(key) != meta.get(key):
            raise CheckpointError(
                f"{folder / CONFIG} and the weights disagree about the {key}; the folder was changed after it "
                "was written"
            )


def model_folder_record(sha256: str, meta: dict) -> dict:
    """The ``config.json`` of a model folder for weights with ``sha256`` and checkpoint metadata ``meta``."""
    return {
        "format": FORMAT,
        "actionmoe": meta.get("actionmoe"),
        "sha256": sha256,
        "classes": meta.get("classes"),
        "preprocessing": meta.get("preprocessing"),
        "model": (meta.get("config") or {}).get("model"),
        "dataset": meta.get("dataset"),
    }


HUB_PREFIX = "hf://"


def fetch_model_folder(reference: str) -> Path:
    """``hf://OWNER/NAME[@REVISION]`` -> the model folder downloaded (cached) by ``huggingface_hub``.

    Only what a model folder may hold is fetched (safetensors, JSON, the card, ONNX); the folder is
    then read like any other (``model_folder_weights``), so a pickle file on the Hub is never loaded.
    ``HF_ENDPOINT`` and ``HF_TOKEN`` are honoured.

    Raises:
        UsageError: not an hf:// reference, or huggingface_hub is missing.
        CheckpointError: no such repository or revision, or the Hub cannot be reached.
    """
    from actionmoe.errors import UsageError

    if not reference.startswith(HUB_PREFIX) or "/" not in reference[len(HUB_PREFIX) :]:
        raise UsageError(f"a Hub model is hf://OWNER/NAME[@REVISION], got {reference!r}")
    repo_id, _, revision = reference[len(HUB_PREFIX) :].partition("@")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, HFValidationError
    except ImportError:
        raise UsageError(f"{reference} needs huggingface_hub: pip install 'actionmoe[hub]'") from None
    try:
        from huggingface_hub import HfApi

        listed = HfApi().list_repo_files(repo_id, revision=revision or None)
        unsafe = sorted(name for name in listed if Path(name).suffix.lower() in UNSAFE_SUFFIXES)
        if unsafe:  # refused before anything is downloaded
            raise CheckpointError(
                f"{reference} carries {unsafe[0]}, a pickle-based or code file; actionmoe loads safetensors only"
            )
        path = snapshot_download(
            repo_id, revision=revision or None, allow_patterns=["*.safetensors", "*.json", "*.md", "*.onnx"]
        )
    except (HfHubHTTPError, HFValidationError, OSError) as exc:
        raise CheckpointError(f"cannot fetch {reference}: {str(exc).splitlines()[0]}") from None
    folder = Path(path)
    model_folder_weights(folder)
    return folder
