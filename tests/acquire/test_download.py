import hashlib

import pytest

from actionmoe.acquire.download import RetryPolicy, download_file
from actionmoe.errors import DownloadError

FAST = RetryPolicy(retries=2, backoff_s=0.01, timeout_s=5)
BODY = bytes(range(256)) * 4000  # ~1 MB


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_downloads_and_verifies(http_server, tmp_path):
    http_server.files["/m/file.bin"] = BODY
    dest = download_file([f"{http_server.url}/m/file.bin"], tmp_path / "file.bin", md5(BODY), FAST)
    assert dest.read_bytes() == BODY
    assert not (tmp_path / "file.bin.part").exists()


def test_cut_connection_is_resumed_with_range(http_server, tmp_path):
    http_server.files["/m/file.bin"] = BODY
    http_server.cut_once.add("/m/file.bin")
    dest = download_file([f"{http_server.url}/m/file.bin"], tmp_path / "file.bin", md5(BODY), FAST)
    assert dest.read_bytes() == BODY
    first, second = http_server.requests
    assert first == ("/m/file.bin", None, 200)
    assert second == ("/m/file.bin", f"bytes={len(BODY) // 2}-", 206)


def test_wrong_checksum_is_an_error_and_the_file_is_not_kept(http_server, tmp_path):
    http_server.files["/m/file.bin"] = BODY
    with pytest.raises(DownloadError, match="does not match the expected"):
        download_file([f"{http_server.url}/m/file.bin"], tmp_path / "file.bin", "0" * 32, FAST)
    assert list(tmp_path.iterdir()) == []


def test_404_falls_through_to_the_next_mirror(http_server, tmp_path):
    http_server.files["/good/file.bin"] = BODY
    urls = [f"{http_server.url}/dead/file.bin", f"{http_server.url}/good/file.bin"]
    download_file(urls, tmp_path / "file.bin", md5(BODY), FAST)
    assert [(path, status) for path, _, status in http_server.requests] == [
        ("/dead/file.bin", 404),
        ("/good/file.bin", 200),
    ]


def test_bad_checksum_on_first_mirror_falls_through(http_server, tmp_path):
    http_server.files["/bad/file.bin"] = b"corrupted" + BODY[9:]
    http_server.files["/good/file.bin"] = BODY
    urls = [f"{http_server.url}/bad/file.bin", f"{http_server.url}/good/file.bin"]
    assert download_file(urls, tmp_path / "file.bin", md5(BODY), FAST).read_bytes() == BODY


def test_all_mirrors_failing_lists_each(http_server, tmp_path):
    urls = [f"{http_server.url}/a/file.bin", "http://127.0.0.1:9/closed/file.bin"]
    with pytest.raises(DownloadError) as info:
        download_file(urls, tmp_path / "file.bin", "", FAST)
    message = str(info.value)
    assert "HTTP 404" in message and "gave up after 3 attempts" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_no_mirror_configured(tmp_path):
    with pytest.raises(DownloadError, match="no mirror"):
        download_file([], tmp_path / "file.bin")
