"""Small file helpers every layer may use: atomic writes, JSONL, a writability check.

An atomic write goes to a hidden temporary file in the same folder, is fsync'ed, then renamed
over the target, so a reader sees either the old file or the new one, never half of either.
The temporary name carries the writer's PID (``.NAME.tmp-PID``) so that leftovers of a killed
writer can be recognised and removed (``remove_stale_temporaries``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from actionmoe.errors import OutputError, RunLockedError

TEMPORARY_MARK = ".tmp-"


def temporary_path(path: Path) -> Path:
    """``DIR/.NAME.tmp-PID``: where an atomic write of ``path`` is staged."""
    return path.with_name(f".{path.name}{TEMPORARY_MARK}{os.getpid()}")


def write_atomically(path: Path, payload: bytes | str | Callable[[Path], None]) -> Path:
    """Write ``payload`` (bytes, text, or a function that writes a given path) to ``path`` atomically.

    Raises:
        OutputError: the folder cannot be created or written, or the disk is full; the old file
            (if any) is left as it was and no temporary file stays behind.
    """
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(payload):
            payload(temporary)
        else:
            with open(temporary, "wb") as handle:
                handle.write(payload.encode() if isinstance(payload, str) else payload)
        _fsync_file(temporary)
        os.replace(temporary, path)
        _fsync_folder(path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc}); nothing was changed") from exc
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
    return path


def write_json(path: Path, value: Any) -> Path:
    """``value`` as indented JSON, atomically; NaN and infinity are refused (they are not JSON)."""
    return write_atomically(path, json.dumps(value, indent=2, allow_nan=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file; a missing file is empty, a torn last line (a killed writer) is dropped."""
    if not path.is_file():
        return []
    rows = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # only the last line can be torn by a kill mid-write
                break
            raise
    return rows


def append_jsonl(path: Path, row: dict) -> None:
    """Append one row and flush it to disk."""
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    """Replace ``path`` with ``rows``, atomically."""
    return write_atomically(path, "".join(json.dumps(row) + "\n" for row in rows))


def ensure_writable(folder: Path, option: str = "--out") -> None:
    """Create ``folder`` if needed and check a file can be written in it.

    Raises:
        OutputError: naming ``option``, the command-line option that chose the folder.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to {folder} ({exc.strerror or exc}); choose another {option}") from exc


@contextlib.contextmanager
def exclusive_lock(path: Path, purpose: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the duration; the OS releases it when the process dies.

    A POSIX record lock (``lockf``), not ``flock``: forked children such as DataLoader workers do
    not inherit it, so a killed trainer's orphaned workers cannot keep its folder locked.

    Raises:
        RunLockedError: another process holds it; the message names that process.
    """
    with open(path, "a+") as handle:
        try:
            fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunLockedError(f"{holder} is already {purpose}; wait for it to finish or stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.lockf(handle.fileno(), fcntl.LOCK_UN)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete ``.NAME.tmp-PID`` files whose writer process no longer runs; returns what was removed."""
    removed = []
    for path in folder.glob(f".*{TEMPORARY_MARK}*") if folder.is_dir() else ():
        pid = path.name.rpartition(TEMPORARY_MARK)[2]
        if pid.isdigit() and not _process_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
