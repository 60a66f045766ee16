"""Predict folders of videos into a CSV or JSON-lines file, resumably.

    actionmoe predict footage/ --checkpoint best.safetensors --out predictions.csv --workers 4

Inputs are files, folders (searched recursively for video files) and glob patterns. Each result
is appended and flushed as soon as it is known, so a killed run loses at most the batch in
flight, and a rerun skips every file already in the output. Every row records the checkpoint's
SHA-256: an output written with another checkpoint is refused, never mixed.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

from actionmoe.data.splits import VIDEO_EXTENSIONS
from actionmoe.errors import DatasetError, UsageError
from actionmoe.files import read_jsonl
from actionmoe.inference import Predictor, VideoPrediction


@dataclass(frozen=True)
class BatchSummary:
    out: Path
    predicted: int
    already_done: int
    unreadable: int

    def line(self) -> str:
        return (
            f"{self.out}: {self.predicted} videos predicted now, {self.already_done} already there, "
            f"{self.unreadable} unreadable (their rows say why)"
        )


def is_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders and glob patterns expanded (recursively) to their video files, sorted.

    Raises:
        DatasetError: an input that does not exist, or inputs that hold no video at all.
    """
    found: list[Path] = []
    for text in inputs:
        path = Path(text)
        if is_glob(text):
            found += sorted(Path(p) for p in glob.glob(text, recursive=True) if _is_video(Path(p)))
        elif path.is_dir():
            found += sorted(p for p in path.rglob("*") if _is_video(p))
        elif path.exists():
            found.append(path)
        else:
            raise DatasetError(f"{path} does not exist")
    if not found:
        raise DatasetError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in {', '.join(inputs)}")
    return list(dict.fromkeys(found))


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def predict_to_file(
    predictor: Predictor, videos: list[Path], out: Path, top_k: int = 5, workers: int = 0, batch_size: int = 8
) -> BatchSummary:
    """Append one row per video not yet in ``out`` (.csv or .jsonl); return what was done.

    Raises:
        UsageError: another output format, or ``out`` written with another checkpoint or top-k.
    """
    kind = out.suffix.lower()
    if kind not in (".csv", ".jsonl"):
        raise UsageError(f"--out must end in .csv or .jsonl, got {out.name}")
    checkpoint = predictor.checkpoint_sha256
    _drop_torn_tail(out)
    done = _done_paths(out, kind, checkpoint, top_k)
    todo = [video for video in videos if str(video) not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    predicted = unreadable = 0
    with open(out, "a", newline="") as handle:
        write = _row_writer(handle, kind, top_k, fresh=out.stat().st_size == 0)
        for result in predictor.iter_predictions(todo, top_k, workers, batch_size):
            write(result, checkpoint)
            handle.flush()
            os.fsync(handle.fileno())
            predicted += 1
            unreadable += result.error is not None
    return BatchSummary(out, predicted, len(videos) - len(todo), unreadable)


def _drop_torn_tail(out: Path) -> None:
    """A run killed mid-row leaves a line without its newline: cut it, so the next row starts clean."""
    if not out.is_file() or out.stat().st_size == 0:
        return
    data = out.read_bytes()
    if not data.endswith(b"\n"):
        with open(out, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def csv_columns(top_k: int) -> list[str]:
    ranked = [name for rank in range(1, top_k + 1) for name in (f"label_{rank}", f"score_{rank}")]
    return ["path", *ranked, "seconds", "error", "checkpoint_sha256"]


def _row_writer(handle, kind: str, top_k: int, fresh: bool):
    if kind == ".jsonl":
        return lambda result, checkpoint: handle.write(
            json.dumps({**result.to_json(), "checkpoint_sha256": checkpoint}) + "\n"
        )
    writer = csv.DictWriter(handle, fieldnames=csv_columns(top_k))
    if fresh:
        writer.writeheader()

    def write(result: VideoPrediction, checkpoint: str) -> None:
        row = {
            "path": result.source,
            "seconds": f"{result.seconds:.4f}",
            "error": result.error or "",
            "checkpoint_sha256": checkpoint,
        }
        for rank, prediction in enumerate(result.predictions, start=1):
            row[f"label_{rank}"], row[f"score_{rank}"] = prediction.label, f"{prediction.score:.6f}"
        writer.writerow(row)

    return write


def _done_paths(out: Path, kind: str, checkpoint: str, top_k: int) -> set[str]:
    """Paths already in ``out``; refuses an output of another checkpoint or column layout."""
    if not out.is_file() or out.stat().st_size == 0:
        return set()
    if kind == ".jsonl":
        rows = read_jsonl(out)
    else:
        with open(out, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames != csv_columns(top_k):
                raise UsageError(f"{out} has other columns (another --top-k?); choose another --out")
            rows = [row for row in reader if row.get("checkpoint_sha256")]  # a torn last line has none
    others = {row.get("checkpoint_sha256") for row in rows} - {checkpoint}
    if others:
        raise UsageError(f"{out} holds predictions of another checkpoint; choose another --out (nothing was changed)")
    return {row["path"] for row in rows}
