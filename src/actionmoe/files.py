"""Small file helpers every layer may use: output-path checks, atomic writes, JSONL, locks.

Every command that writes a file or a folder checks it with ``check_output_file`` or
``check_output_folder`` before any expensive work: a folder where a file is wanted, a device,
FIFO or socket, a wrong suffix or a parent that cannot be written is one line, not an error after
the work (or, for ``/dev/null`` as root, a device replaced by a regular file).

An atomic write goes to a hidden temporary file in the same folder, is fsync'ed, then renamed
over the target, so a reader sees either the old file or the new one, never half of either. It
refuses a target that exists and is not a regular file. The temporary name carries the writer's
PID (``.NAME.tmp-PID``, or ``.NAME.partial-PID`` for a staged folder) so that leftovers of a
killed writer can be recognised and removed (``remove_stale_temporaries``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from actionmoe.errors import OutputError, RunLockedError, UsageError

TEMPORARY_MARK = ".tmp-"
STAGING_MARK = ".partial-"


def check_output_file(path: Path, option: str = "--out", suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse, before any work, an output file that cannot be written as a regular file.

    Raises:
        UsageError: ``path`` is a folder, a device, FIFO or socket, or lacks one of ``suffixes``.
        OutputError: its folder cannot be created or written.
    """
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name inside it")
    _refuse_special(path, option, UsageError)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} must end in {' or '.join(suffixes)}, got {path.name}")
    ensure_writable(path.parent, option)
    return path


def check_output_folder(path: Path, option: str = "--out") -> Path:
    """Refuse, before any work, an output folder that exists as something else or cannot be written.

    Raises:
        UsageError: ``path`` exists and is not a folder.
        OutputError: it cannot be created or written.
    """
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} exists and is not a folder; choose a folder")
    ensure_writable(path, option)
    return path


def _refuse_special(path: Path, option: str, error: type[Exception]) -> None:
    """A device, FIFO or socket is never replaced, truncated or written to: renaming over /dev/null breaks it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise error(f"{option} {path} exists and is not a regular file (a device, FIFO or socket); choose a file")


def safe_suffix(name: str) -> str:
    """The suffix of a client's file name if it is a plain one (letters and digits, at most 8): never a path.

    Anything else (a path, a 250-character suffix) becomes ``.bin``; the decoders read the format from
    the content, the suffix only helps them guess.
    """
    suffix = Path(name.replace("\\", "/")).suffix
    return suffix.lower() if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix or "") else ".bin"


def temporary_path(path: Path) -> Path:
    """``DIR/.NAME.tmp-PID``: where an atomic write of ``path`` is staged."""
    return path.with_name(f".{path.name}{TEMPORARY_MARK}{os.getpid()}")


def write_atomically(path: Path, payload: bytes | str | Callable[[Path], None]) -> Path:
    """Write ``payload`` (bytes, text, or a function that writes a given path) to ``path`` atomically.

    Raises:
        OutputError: the folder cannot be created or written, or the disk is full; the old file
            (if any) is left as it was and no temporary file stays behind.
    """
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; nothing was changed")
    _refuse_special(path, "output", OutputError)
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


def read_jsonl(path: Path, strict: bool = True) -> list[dict]:
    """Rows of a JSON-lines file; a missing file is empty, a torn last line (a killed writer) is dropped.

    Raises:
        OutputError: (``strict``) another line that is not a JSON object, or a file that is not
            UTF-8 text, naming the file and the line. Not strict: such lines are dropped with a warning.
    """
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise OutputError(f"{path} is not a text file of JSON lines; nothing was changed") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row, problem = json_object(line)
        if row is not None:
            rows.append(row)
        elif number == len(lines) and problem == "is not JSON":  # only the last line can be torn by a kill
            break
        elif strict:
            raise OutputError(f"{path}: line {number} {problem}; nothing was changed")
        else:
            logging.getLogger(__name__).warning("%s: line %d %s; left out", path, number, problem)
    return rows


def json_object(line: str) -> tuple[dict | None, str | None]:
    """One JSON-lines row: (the object, None), or (None, what is wrong: "is not JSON" / "is not a JSON object")."""
    try:
        value = json.loads(line)
    except ValueError:
        return None, "is not JSON"
    return (value, None) if isinstance(value, dict) else (None, "is not a JSON object")


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


def lock_open_file(handle, path: Path, purpose: str) -> None:
    """Take an exclusive lock on an open file for as long as it stays open (the OS drops it if the process dies).

    A POSIX record lock: closing any other handle this process has on the same file drops it, so
    read and write the file through ``handle`` alone while it is held.

    Raises:
        RunLockedError: another process holds it.
    """
    try:
        fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise RunLockedError(f"another process is {purpose} {path}; wait for it to finish or stop it first") from None


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete ``.NAME.tmp-PID`` files and ``.NAME.partial-PID`` folders whose writer no longer runs."""
    removed = []
    for mark in (TEMPORARY_MARK, STAGING_MARK):
        for path in folder.glob(f".*{mark}*") if folder.is_dir() else ():
            pid = path.name.rpartition(mark)[2]
            if pid.isdigit() and not _process_alive(int(pid)):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def staging_path(path: Path) -> Path:
    """``DIR/.NAME.partial-PID``: where a folder is assembled before it is renamed into place."""
    return path.with_name(f".{path.name}{STAGING_MARK}{os.getpid()}")


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


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed): every plot in the package starts here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG atomically, then close it (also when writing fails)."""
    import matplotlib.pyplot as plt

    try:
        write_atomically(path, lambda temporary: fig.savefig(temporary, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
    return path
