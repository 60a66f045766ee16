"""HTTP(S) download with resume (Range requests), retries with backoff, mirrors, checksums and validation.

A transfer goes to ``NAME.part``; beside it ``NAME.part.json`` records where the bytes came from
(URL, ETag, Last-Modified, total length), so a resume continues only the same file from the
same server and anything else starts over. The finished file is checked (MD5 when known, then the
caller's ``validate``, e.g. a full archive listing) and renamed to ``NAME`` only when it passed:
``NAME`` existing always means a complete, verified file. A file that fails is deleted and the
next mirror is tried.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from actionmoe.errors import ActionMoEError, ChecksumError, DownloadError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
USER_AGENT = "actionmoe-downloader/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one mirror is tried, and when a transfer counts as stuck.

    Args:
        retries: attempts after the first, per mirror, with exponential backoff.
        backoff_s: the first backoff; doubled after every attempt.
        timeout_s: socket timeout: a server that sends nothing for this long fails the attempt.
        deadline_s: the whole file, over every attempt and mirror, must arrive within this.
        min_bytes_per_s: a transfer slower than this over ``stall_window_s`` fails (a trickling server).
        stall_window_s: the window over which the throughput is measured.
    """

    retries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 60.0
    deadline_s: float = 6 * 3600.0
    min_bytes_per_s: float = 10_000.0
    stall_window_s: float = 60.0


class _PermanentHTTPError(DownloadError):
    """A 4xx answer: retrying the same URL will not help."""


class _StuckTransferError(DownloadError):
    """Too slow, or past the deadline: give up on this mirror."""


class _RestartError(ConnectionError):
    """The partial file cannot be continued from this answer; it was discarded, so try again from byte 0."""


def download_file(
    urls: Sequence[str],
    dest: Path,
    md5: str = "",
    policy: RetryPolicy = RetryPolicy(),
    validate: Callable[[Path], None] | None = None,
) -> Path:
    """Download the first URL that delivers a valid file to ``dest``.

    Args:
        urls: mirrors, tried in order.
        dest: the final path; written only once the file passed every check.
        md5: expected MD5 ('' when unknown).
        validate: raises an ActionMoEError when the downloaded file is not what was asked for.

    Raises:
        DownloadError: no mirror delivered a valid file (each mirror's reason is listed).
    """
    if not urls:
        raise DownloadError(f"no mirror configured for {dest.name}: pass --mirror BASE_URL or --archives DIR")
    part = dest.with_name(dest.name + ".part")
    deadline = time.monotonic() + policy.deadline_s
    failures = []
    for url in urls:
        try:
            _fetch_with_resume(url, part, policy, deadline)
            _check(part, md5, validate)
        except (ChecksumError, _StuckTransferError, _PermanentHTTPError) as exc:
            _discard(part)
            failures.append(f"{url}: {exc}")
            continue
        except DownloadError as exc:  # retries exhausted: the .part stays, for a later run to resume
            failures.append(f"{url}: {exc}")
            continue
        except ActionMoEError as exc:  # validation failed: not the file that was asked for
            _discard(part)
            failures.append(f"{url}: {exc}")
            continue
        os.replace(part, dest)
        _sidecar(part).unlink(missing_ok=True)
        return dest
    raise DownloadError(f"could not download {dest.name} from any mirror ({'; '.join(failures)})")


def _check(part: Path, md5: str, validate: Callable[[Path], None] | None) -> None:
    verify_md5(part, md5)
    if validate is not None:
        validate(part)


def _sidecar(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _sidecar(part).unlink(missing_ok=True)


def verify_md5(path: Path, expected: str) -> None:
    """Raise ChecksumError when ``expected`` is set and differs from the file's MD5."""
    if not expected:
        return
    actual = file_md5(path)
    if actual != expected.lower():
        raise ChecksumError(f"{path.name}: md5 {actual} does not match the expected {expected.lower()}")


def file_md5(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def _fetch_with_resume(url: str, part: Path, policy: RetryPolicy, deadline: float) -> None:
    last_error: Exception | None = None
    for attempt in range(policy.retries + 1):
        if attempt:
            delay = policy.backoff_s * 2 ** (attempt - 1)
            log.warning("retrying %s in %.1fs after: %s", url, delay, last_error)
            time.sleep(delay)
        _check_deadline(deadline, policy)
        try:
            _transfer_or_restart(url, part, policy, deadline)
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # our partial file is not a prefix of this resource: start over
                _discard(part)
            elif 400 <= exc.code < 500:
                raise _PermanentHTTPError(f"HTTP {exc.code} {exc.reason}") from exc
            last_error = exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            last_error = exc
    raise DownloadError(f"gave up after {policy.retries + 1} attempts: {last_error}")


def _transfer_or_restart(url: str, part: Path, policy: RetryPolicy, deadline: float) -> None:
    try:
        _transfer(url, part, policy, deadline)
    except _RestartError as exc:  # the partial file is gone: one plain request from byte 0 in the same attempt
        log.warning("%s; starting %s over", exc, part.name.removesuffix(".part"))
        _transfer(url, part, policy, deadline)


def _transfer(url: str, part: Path, policy: RetryPolicy, deadline: float) -> None:
    origin = _resumable_origin(url, part)
    have = part.stat().st_size if origin else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=policy.timeout_s) as response:
        resumed = have > 0 and response.status == 206
        try:
            total = _expected_total(response, have if resumed else 0)
        except _RestartError:
            _discard(part)
            raise
        if resumed:
            _check_same_file(part, origin, response, total)
            log.info("resuming %s at byte %d", url, have)
        else:
            have = 0
        _write_origin(part, url, response, total)
        _stream_to_file(response, part, "ab" if resumed else "wb", have, total, policy, deadline)
    written = part.stat().st_size
    if total is not None and written != total:
        raise ConnectionError(f"connection closed after {written} of {total} bytes")


def _resumable_origin(url: str, part: Path) -> dict | None:
    """What the partial file was downloaded from; None (and the file discarded) when unknown or another URL."""
    sidecar = _sidecar(part)
    try:
        origin = json.loads(sidecar.read_text()) if part.exists() and sidecar.exists() else None
    except (OSError, json.JSONDecodeError):
        origin = None
    if origin is None or origin.get("url") != url:
        if part.exists():
            log.info("discarding %s: it is not known to come from %s", part.name, url)
        _discard(part)
        return None
    return origin


def _expected_total(response, start: int) -> int | None:
    """The full file's length, from Content-Range (206) or Content-Length (200); checks they agree."""
    length = response.headers.get("Content-Length")
    if response.status != 206:
        return int(length) if length is not None else None
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
    if match is None or int(match[1]) != start:
        raise _RestartError(
            f"the server answered a request for bytes {start}- with Content-Range "
            f"{response.headers.get('Content-Range')!r}"
        )
    total = None if match[3] == "*" else int(match[3])
    if length is not None and int(match[2]) - int(match[1]) + 1 != int(length):
        raise _RestartError(
            f"Content-Range {response.headers.get('Content-Range')!r} disagrees with Content-Length {length}"
        )
    return total


def _check_same_file(part: Path, origin: dict, response, total: int | None) -> None:
    """Resume only the same file: same length and validators as when the partial file was started."""
    changed = [
        name
        for name, now in (
            ("ETag", response.headers.get("ETag")),
            ("Last-Modified", response.headers.get("Last-Modified")),
            ("length", total),
        )
        if origin.get(name) is not None and now is not None and origin[name] != now
    ]
    if changed:
        _discard(part)
        raise _RestartError(f"the file on the server changed since the partial download ({', '.join(changed)})")


def _write_origin(part: Path, url: str, response, total: int | None) -> None:
    origin = {
        "url": url,
        "ETag": response.headers.get("ETag"),
        "Last-Modified": response.headers.get("Last-Modified"),
        "length": total,
    }
    _sidecar(part).write_text(json.dumps(origin))


def _stream_to_file(
    response, part: Path, mode: str, have: int, total: int | None, policy: RetryPolicy, deadline: float
) -> None:
    meter = _Throughput(policy)
    with (
        open(part, mode) as out,
        tqdm(
            total=total,
            initial=have,
            unit="B",
            unit_scale=True,
            desc=part.name.removesuffix(".part"),
            disable=None,
            leave=False,
        ) as bar,
    ):
        while chunk := response.read1(CHUNK_BYTES) if hasattr(response, "read1") else response.read(CHUNK_BYTES):
            out.write(chunk)
            bar.update(len(chunk))
            meter.add(len(chunk))
            _check_deadline(deadline, policy)
        out.flush()
        os.fsync(out.fileno())


class _Throughput:
    """Fails a transfer whose rate over the last ``stall_window_s`` fell below ``min_bytes_per_s``."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.window_start = time.monotonic()
        self.window_bytes = 0

    def add(self, count: int) -> None:
        self.window_bytes += count
        elapsed = time.monotonic() - self.window_start
        if elapsed < self.policy.stall_window_s:
            return
        rate = self.window_bytes / elapsed
        if rate < self.policy.min_bytes_per_s:
            raise _StuckTransferError(
                f"transfer too slow: {rate:.0f} bytes/s over {elapsed:.0f} s, below "
                f"download.min_bytes_per_s = {self.policy.min_bytes_per_s:g}"
            )
        self.window_start = time.monotonic()
        self.window_bytes = 0


def _check_deadline(deadline: float, policy: RetryPolicy) -> None:
    if time.monotonic() > deadline:
        raise _StuckTransferError(f"did not finish within download.deadline_s = {policy.deadline_s:g} s")
