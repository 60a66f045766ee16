"""Predict folders of videos into a CSV or JSON-lines file, resumably.

    actionmoe predict footage/ --checkpoint best.safetensors --out predictions.csv --workers 4

Inputs are files, folders (searched recursively for video files) and glob patterns. Each result
is appended and flushed as soon as it is known, so a killed run loses at most the batch in
flight, and a rerun skips every file already in the output. Every row records the checkpoint's
SHA-256: an output written with another checkpoint is refused, never mixed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from actionmoe.errors import UsageError
from actionmoe.files import check_output_file, json_object, lock_open_file
from actionmoe.predict.predictor import Predictor, VideoPrediction


@dataclass(frozen=True)
class BatchSummary:
    out: Path
    predicted: int
    already_done: int
    unreadable: int
    cut_torn_row: bool = False  # a row a killed run left half-written was cut first

    def line(self) -> str:
        torn = " (a torn last row of an interrupted run was cut first)" if self.cut_torn_row else ""
        return (
            f"{self.out}: {self.predicted} videos predicted now, {self.already_done} already there, "
            f"{self.unreadable} unreadable (their rows say why){torn}"
        )


BATCH_SUFFIXES = (".csv", ".jsonl")


def check_batch_output(out: Path) -> str:
    """Refuse an unusable ``--out`` before the model is loaded; returns its kind (``.csv`` or ``.jsonl``)."""
    check_output_file(out, "--out", BATCH_SUFFIXES)
    return out.suffix.lower()


def predict_to_file(
    predictor: Predictor, videos: list[Path], out: Path, top_k: int = 5, workers: int = 0, batch_size: int = 8
) -> BatchSummary:
    """Append one row per video not yet in ``out`` (.csv or .jsonl); return what was done.

    ``out`` is locked while it is written (a second run into it is refused), and read and checked
    before anything in it changes: only a file of this checkpoint and layout is appended to, and
    only its own torn last row (a killed run) is cut.

    Raises:
        UsageError: another output format, or ``out`` written with another checkpoint or top-k,
            or not a prediction file at all.
        RunLockedError: another process is writing into ``out``.
    """
    kind = check_batch_output(out)
    checkpoint = predictor.checkpoint_sha256
    with open(out, "a+b") as handle:
        lock_open_file(handle, out, "writing predictions into")
        handle.seek(0)  # read through this handle: closing another one on the file would drop the lock
        done, kept_bytes = _read_existing(out, handle.read(), kind, checkpoint, top_k)
        torn = kept_bytes < handle.seek(0, os.SEEK_END)
        if torn:  # a run killed mid-row: cut that row (this run's own file, checked above)
            handle.truncate(kept_bytes)
        todo = [video for video in videos if str(video) not in done]
        predicted = unreadable = 0
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="", write_through=True)
        write = _row_writer(text, kind, top_k, fresh=kept_bytes == 0)
        for result in predictor.iter_predictions(todo, top_k, workers, batch_size):
            write(result, checkpoint)
            text.flush()
            os.fsync(handle.fileno())
            predicted += 1
            unreadable += result.error is not None
        text.detach()
    return BatchSummary(out, predicted, len(videos) - len(todo), unreadable, torn)


def csv_columns(top_k: int) -> list[str]:
    ranked = [name for rank in range(1, top_k + 1) for name in (f"label_{rank}", f"score_{rank}")]
    return ["path", "answer", *ranked, "seconds", "error", "checkpoint_sha256"]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def spreadsheet_safe(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: one starting like a formula gets a leading ``'``.

    A leading ``'`` is escaped too, so ``spreadsheet_unescaped`` restores every cell exactly.
    """
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def spreadsheet_unescaped(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


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
            "path": spreadsheet_safe(result.source),
            "answer": spreadsheet_safe(result.answer or ""),
            "seconds": f"{result.seconds:.4f}",
            "error": spreadsheet_safe(result.error or ""),
            "checkpoint_sha256": checkpoint,
        }
        for rank, prediction in enumerate(result.predictions, start=1):
            row[f"label_{rank}"], row[f"score_{rank}"] = spreadsheet_safe(prediction.label), f"{prediction.score:.6f}"
        writer.writerow(row)

    return write


def _read_existing(out: Path, data: bytes, kind: str, checkpoint: str, top_k: int) -> tuple[set[str], int]:
    """(paths already in ``out``, whose bytes are ``data``; bytes to keep: all but a torn last row).

    Raises:
        UsageError: ``out`` is not a prediction file of this checkpoint and top-k.
    """
    if not data:
        return set(), 0
    kept = data.rfind(b"\n") + 1 if not data.endswith(b"\n") else len(data)
    if kept == 0:  # one incomplete line: nothing shows the file is ours, so nothing is cut
        raise _not_ours(out, "it holds one line without an end")
    try:
        text = data[:kept].decode("utf-8")
    except UnicodeDecodeError:
        raise _not_ours(out, "it is not text") from None
    rows = _jsonl_rows(out, text) if kind == ".jsonl" else _csv_rows(out, text, top_k)
    others = {row.get("checkpoint_sha256") for row in rows} - {checkpoint}
    if others:
        raise UsageError(f"{out} holds predictions of another checkpoint; choose another --out (nothing was changed)")
    return {row["path"] for row in rows}, kept


def _not_ours(out: Path, why: str) -> UsageError:
    return UsageError(
        f"{out} is not a prediction file of actionmoe ({why}); choose another --out (nothing was changed)"
    )


def _jsonl_rows(out: Path, text: str) -> list[dict]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row, problem = json_object(line)
        if row is None:
            raise _not_ours(out, f"line {number} {problem}")
        if not isinstance(row.get("path"), str) or "checkpoint_sha256" not in row:
            raise _not_ours(out, f'line {number} has no "path" and "checkpoint_sha256"')
        rows.append(row)
    return rows


def _csv_rows(out: Path, text: str, top_k: int) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    if header != csv_columns(top_k):
        if header[:1] == ["path"] and header[-1:] == ["checkpoint_sha256"]:
            raise UsageError(
                f"{out} has other columns (another --top-k, or an older actionmoe's); "
                "choose another --out (nothing was changed)"
            )
        raise _not_ours(out, "its first line is not the header actionmoe writes")
    rows = [row for row in reader if row.get("checkpoint_sha256")]
    for row in rows:
        row["path"] = spreadsheet_unescaped(row["path"])
    return rows
