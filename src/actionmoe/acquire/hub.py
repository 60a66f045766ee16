"""HMDB51 from the Hugging Face Hub copy (dataset repository ``CVML-TueAI/HMDB51`` by default).

``huggingface_hub.snapshot_download`` fetches ``Videos/**`` and ``metadata_split*.jsonl`` straight
into ROOT (resumable: an interrupted run continues its partial files; its own progress bars;
``HF_ENDPOINT`` and ``HF_TOKEN`` are honoured by the library). ROOT is then read in place as the
metadata-JSONL layout (``data.metadata_jsonl``), which ``data.dataset = "hmdb51"`` recognises, so
training and evaluation are unchanged. The optional WebDataset shards are not fetched.

ROOT counts as complete only once ``.actionmoe-hub.json`` was written, after the download finished
and the records were checked against the official split files shipped in the package.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from actionmoe.acquire.hmdb51 import AcquireResult
from actionmoe.data.splits import SplitOptions, load_splits
from actionmoe.errors import ActionMoEError, DatasetError, DownloadError, UsageError
from actionmoe.files import ensure_writable, write_json

log = logging.getLogger(__name__)

DEFAULT_REPO = "CVML-TueAI/HMDB51"
PATTERNS = ["Videos/**", "metadata_split*.jsonl"]
MARKER = ".actionmoe-hub.json"


@dataclass(frozen=True)
class HubSource:
    repo_id: str = DEFAULT_REPO
    revision: str | None = None  # a branch, tag or commit; None = the default branch


def parse_hub_source(text: str) -> HubSource:
    """``hf``, ``hf:OWNER/NAME`` or ``hf:OWNER/NAME@REVISION``.

    Raises:
        UsageError: anything else.
    """
    match = re.fullmatch(r"hf(?::(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[\w./-]+))?)?", text)
    if match is None:
        raise UsageError(f"--source must be rar, hf, hf:OWNER/NAME or hf:OWNER/NAME@REVISION, got {text!r}")
    return HubSource(match["repo"] or DEFAULT_REPO, match["revision"])


def hub_is_complete(root: Path) -> bool:
    return (root / MARKER).is_file()


def acquire_from_hub(root: Path, source: HubSource, on_missing: str = "error") -> AcquireResult:
    """Download the Hub copy into ``root`` (resuming), check it, and mark it complete.

    Raises:
        UsageError: huggingface_hub is not installed.
        DownloadError: the repository, revision or files could not be fetched.
        DatasetError: the metadata disagree with the official splits, name missing videos
            (with ``on_missing = "error"``), or hold a malformed line.
    """
    if hub_is_complete(root):
        classes = tuple(json.loads((root / MARKER).read_text())["classes"])
        return AcquireResult(
            root, False, classes, f"{root} is already complete ({len(classes)} classes); nothing to do"
        )
    snapshot_download = _import_snapshot_download()
    ensure_writable(root, "--root")
    _fetch(snapshot_download, root, source)
    classes = _check_all_splits(root, on_missing)
    write_json(root / MARKER, {"repo_id": source.repo_id, "revision": source.revision, "classes": list(classes)})
    return AcquireResult(root, True, classes, f"downloaded {len(classes)} classes from {source.repo_id} into {root}")


def _import_snapshot_download():
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UsageError(
            "--source hf needs huggingface_hub: pip install 'actionmoe[hub]' (or pip install huggingface_hub)"
        ) from None
    return snapshot_download


def _fetch(snapshot_download, root: Path, source: HubSource) -> None:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    log.info(
        "downloading %s%s from the Hugging Face Hub into %s",
        source.repo_id,
        f"@{source.revision}" if source.revision else "",
        root,
    )
    try:
        snapshot_download(
            source.repo_id, repo_type="dataset", revision=source.revision, local_dir=root, allow_patterns=PATTERNS
        )
    except Exception as exc:  # the library's HTTP, connection and cache errors have no common base class
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if not isinstance(exc, HfHubHTTPError | LocalEntryNotFoundError | OSError) and not _is_network_error(exc):
            # anything else comes from an answer the library could not use: a proxy's page instead of
            # JSON, a list where an object belongs, a listing with ".." (the library refuses to write it)
            raise DownloadError(
                f"the Hugging Face Hub (HF_ENDPOINT) sent an answer that is not the Hub's "
                f"({type(exc).__name__}: {reason}); check HF_ENDPOINT and any proxy, then rerun"
            ) from exc
        raise DownloadError(
            f"could not download {source.repo_id} from the Hugging Face Hub ({reason}); "
            "rerun to resume, check HF_ENDPOINT / HF_TOKEN, or see README 'Getting HMDB51'"
        ) from exc


def _is_network_error(exc: Exception) -> bool:
    """An error of the HTTP client under huggingface_hub (httpx or its successor), by its module name."""
    return type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2", "h11")


def _check_all_splits(root: Path, on_missing: str) -> tuple[str, ...]:
    """Read every split as training will (format, official assignment, missing videos); the class names."""
    classes: tuple[str, ...] = ()
    for split in (1, 2, 3):
        try:
            splits = load_splits(
                "hmdb51_jsonl", root, SplitOptions(split=split, val_fraction=0.1, on_missing=on_missing)
            )
        except ActionMoEError as exc:
            raise DatasetError(f"{exc} (the download in {root} is not marked complete)") from exc
        classes = splits.classes
    return classes
