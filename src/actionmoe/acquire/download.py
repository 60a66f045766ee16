"""HTTP(S) download with resume (Range requests), retries with backoff, mirrors and checksums."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from actionmoe.errors import ChecksumError, DownloadError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
USER_AGENT = "actionmoe-downloader/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one mirror is tried before moving to the next."""

    retries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 60.0


class _PermanentHTTPError(DownloadError):
    """A 4xx answer: retrying the same URL will not help."""


def download_file(urls: Sequence[str], dest: Path, md5: str = "", policy: RetryPolicy = RetryPolicy()) -> Path:
    """Download the first URL that works to ``dest``, resuming and verifying.

    The transfer goes to ``dest.part`` and is renamed only after its checksum matched, so
    ``dest`` existing always means a complete, verified file.

    Raises:
        DownloadError: no mirror delivered a verified file (each mirror's reason is listed).
    """
    if not urls:
        raise DownloadError(f"no mirror configured for {dest.name}: pass --mirror BASE_URL or --archives DIR")
    part = dest.with_name(dest.name + ".part")
    failures = []
    for url in urls:
        try:
            _fetch_with_resume(url, part, policy)
            verify_md5(part, md5)
        except ChecksumError as exc:
            part.unlink(missing_ok=True)
            failures.append(f"{url}: {exc}")
            continue
        except DownloadError as exc:
            failures.append(f"{url}: {exc}")
            continue
        os.replace(part, dest)
        return dest
    part.unlink(missing_ok=True)
    raise DownloadError(f"could not download {dest.name} from any mirror ({'; '.join(failures)})")


def verify_md5(path: Path, expected: str) -> None:
    """Raise ChecksumError when ``expected`` is set and differs from the file's MD5."""
    if not expected:
        return
    actual = file_md5(path)
    if actual != expected.lower():
        raise ChecksumError(f"{path.name}: md5 {actual} does not match the expected {expected.lower()}")


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_with_resume(url: str, part: Path, policy: RetryPolicy) -> None:
    last_error: Exception | None = None
    for attempt in range(policy.retries + 1):
        if attempt:
            delay = policy.backoff_s * 2 ** (attempt - 1)
            log.warning("retrying %s in %.1fs after: %s", url, delay, last_error)
            time.sleep(delay)
        try:
            _transfer(url, part, policy.timeout_s)
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # our partial file is not a prefix of this resource: start over
                part.unlink(missing_ok=True)
                last_error = exc
            elif 400 <= exc.code < 500:
                raise _PermanentHTTPError(f"HTTP {exc.code} {exc.reason}") from exc
            else:
                last_error = exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            last_error = exc
    raise DownloadError(f"gave up after {policy.retries + 1} attempts: {last_error}")


def _transfer(url: str, part: Path, timeout_s: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        resumed = have > 0 and response.status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        if resumed:
            log.info("resuming %s at byte %d", url, have)
        _stream_to_file(response, part, "ab" if resumed else "wb", have, total)
    written = part.stat().st_size
    if total is not None and written != total:
        raise ConnectionError(f"connection closed after {written} of {total} bytes")


def _stream_to_file(response, part: Path, mode: str, have: int, total: int | None) -> None:
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
        while chunk := response.read(CHUNK_BYTES):
            out.write(chunk)
            bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
