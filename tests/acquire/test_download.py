from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import rars

from actionmoe.acquire.download import RetryPolicy, download_file
from actionmoe.data.splits import builtin_hmdb51_split_dir
from actionmoe.errors import DownloadError
from tests.helpers import extract_argv, md5, one_line, run

FAST = RetryPolicy(retries=2, backoff_s=0.01, timeout_s=5)
BODY = bytes(range(256)) * 4000  # ~1 MB


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


FAST_ARGS = ["--set", "download.backoff_s=0.01", "--set", "download.retries=1"]


def serve_archives(http_server, tiny_archives, prefix: str) -> tuple[bytes, bytes]:
    videos = (tiny_archives / "hmdb51_org.rar").read_bytes()
    splits = (tiny_archives / "test_train_splits.rar").read_bytes()
    http_server.files[f"/{prefix}/hmdb51_org.rar"] = videos
    http_server.files[f"/{prefix}/test_train_splits.rar"] = splits
    return videos, splits


def download(capsys, http_server, root: Path, tiny_archives, *mirrors: str, extra=()) -> tuple[int, str, str]:
    """``data download`` with the split archive's MD5 only: the video archive's MD5 is unknown, as for HMDB51."""
    checksums = root.parent / f"{root.name}-splits.md5"
    checksums.write_text(f"{md5((tiny_archives / 'test_train_splits.rar').read_bytes())}  test_train_splits.rar\n")
    argv = [
        "data",
        "download",
        "hmdb51",
        "--root",
        root,
        "--checksums",
        checksums,
        *FAST_ARGS,
        "--set",
        "download.videos_members=3",
        "--set",
        "download.splits_members=9",
        *extra,
    ]
    for mirror in mirrors:
        argv += ["--mirror", f"{http_server.url}/{mirror}"]
    return run(capsys, *argv)


@pytest.mark.parametrize("bad_body", ["html", "half", "other_member_count"])
def test_an_invalid_video_archive_is_dropped_and_the_next_mirror_used(
    capsys, http_server, tiny_archives, tmp_path, bad_body
):
    videos, _ = serve_archives(http_server, tiny_archives, "good")
    serve_archives(http_server, tiny_archives, "bad")
    if bad_body == "html":
        http_server.files["/bad/hmdb51_org.rar"] = b"<html><body>This domain is for sale</body></html>"
    elif bad_body == "half":
        http_server.files["/bad/hmdb51_org.rar"] = videos[: len(videos) // 2]
    else:  # a valid RAR that is not the release: one class archive only
        builder = rars.RarBuilder(format=rars.RAR29)
        builder.add_bytes(b"x", "only_one.rar")
        http_server.files["/bad/hmdb51_org.rar"] = builder.to_bytes()
    root = tmp_path / "hmdb51"
    code, out, err = download(capsys, http_server, root, tiny_archives, "bad", "good")
    assert code == 0, err
    assert (root / "archives" / "hmdb51_org.rar").read_bytes() == videos
    assert [r[0] for r in http_server.requests if r[0].endswith("org.rar")] == [
        "/bad/hmdb51_org.rar",
        "/good/hmdb51_org.rar",
    ]


def test_an_invalid_archive_from_the_only_mirror_is_not_kept_for_the_next_run(
    capsys, http_server, tiny_archives, tmp_path
):
    serve_archives(http_server, tiny_archives, "m")
    http_server.files["/m/hmdb51_org.rar"] = b"<html>gone</html>"
    root = tmp_path / "hmdb51"
    code, _, err = download(capsys, http_server, root, tiny_archives, "m")
    assert code == 1 and one_line(err) and "not a RAR archive" in err
    assert not (root / "archives" / "hmdb51_org.rar").exists()
    assert not list((root / "archives").glob("*.part*"))
    serve_archives(http_server, tiny_archives, "m")  # the mirror is fixed: the rerun downloads again
    code, _, err = download(capsys, http_server, root, tiny_archives, "m")
    assert code == 0, err


def test_a_206_with_the_wrong_content_range_starts_over(capsys, http_server, tiny_archives, tmp_path):
    videos, _ = serve_archives(http_server, tiny_archives, "m")
    http_server.cut_once.add("/m/hmdb51_org.rar")
    http_server.wrong_range.add("/m/hmdb51_org.rar")  # answers "bytes=N-" with the whole file as a 206
    root = tmp_path / "hmdb51"
    code, _, err = download(capsys, http_server, root, tiny_archives, "m")
    assert code == 0, err
    assert (root / "archives" / "hmdb51_org.rar").read_bytes() == videos


def test_a_partial_file_from_a_changed_server_file_is_not_resumed(capsys, http_server, tiny_archives, tmp_path):
    videos, _ = serve_archives(http_server, tiny_archives, "m")
    http_server.files["/m/hmdb51_org.rar"] = b"Rar!\x1a\x07\x00" + bytes(len(videos))  # an older, different file
    http_server.etags["/m/hmdb51_org.rar"] = '"v1"'
    http_server.cut_once.add("/m/hmdb51_org.rar")
    root = tmp_path / "hmdb51"
    code, _, _ = download(capsys, http_server, root, tiny_archives, "m", extra=["--set", "download.retries=0"])
    assert code == 1 and (root / "archives" / "hmdb51_org.rar.part").exists()  # a half that could be resumed
    http_server.files["/m/hmdb51_org.rar"] = videos  # the mirror now serves another file of the same size
    http_server.etags["/m/hmdb51_org.rar"] = '"v2"'
    code, _, err = download(capsys, http_server, root, tiny_archives, "m")
    assert code == 0, err
    assert (root / "archives" / "hmdb51_org.rar").read_bytes() == videos


def test_a_stray_partial_file_of_unknown_origin_is_not_resumed(capsys, http_server, tiny_archives, tmp_path):
    videos, _ = serve_archives(http_server, tiny_archives, "m")
    root = tmp_path / "hmdb51"
    (root / "archives").mkdir(parents=True)
    (root / "archives" / "hmdb51_org.rar.part").write_bytes(b"leftover from somewhere else" * 40)
    code, _, err = download(capsys, http_server, root, tiny_archives, "m")
    assert code == 0, err
    assert (root / "archives" / "hmdb51_org.rar").read_bytes() == videos


def test_the_accepted_md5_is_recorded_and_checked_on_a_rerun(capsys, http_server, tiny_archives, tmp_path):
    videos, _ = serve_archives(http_server, tiny_archives, "m")
    root = tmp_path / "hmdb51"
    assert download(capsys, http_server, root, tiny_archives, "m")[0] == 0
    assert f"{md5(videos)}  hmdb51_org.rar" in (root / "archives" / "accepted.md5").read_text()
    shutil.rmtree(root / "videos")
    shutil.rmtree(root / "splits")
    archive = root / "archives" / "hmdb51_org.rar"
    archive.write_bytes(archive.read_bytes()[:-100] + bytes(100))  # damaged on disk since
    code, out, err = download(capsys, http_server, root, tiny_archives, "m")
    assert code == 0, err
    assert archive.read_bytes() == videos and "extracted 3 classes" in out


def test_a_trickling_server_ends_with_a_clear_error(capsys, http_server, tiny_archives, tmp_path):
    serve_archives(http_server, tiny_archives, "m")
    http_server.trickle.add("/m/hmdb51_org.rar")
    root = tmp_path / "hmdb51"
    started = time.monotonic()
    code, _, err = download(
        capsys,
        http_server,
        root,
        tiny_archives,
        "m",
        extra=["--set", "download.min_bytes_per_s=1000", "--set", "download.stall_window_s=0.5"],
    )
    assert code == 1 and one_line(err) and "transfer too slow" in err and "download.min_bytes_per_s" in err
    assert time.monotonic() - started < 15
    assert not (root / "archives" / "hmdb51_org.rar").exists()


def test_a_per_file_deadline_ends_a_slow_transfer(capsys, http_server, tiny_archives, tmp_path):
    serve_archives(http_server, tiny_archives, "m")
    http_server.trickle.add("/m/hmdb51_org.rar")
    code, _, err = download(
        capsys,
        http_server,
        tmp_path / "hmdb51",
        tiny_archives,
        "m",
        extra=["--set", "download.min_bytes_per_s=0", "--set", "download.deadline_s=0.5"],
    )
    assert code == 1 and one_line(err) and "did not finish within download.deadline_s = 0.5 s" in err


def test_splits_builtin_skips_the_split_archive(capsys, http_server, tiny_archives, tmp_path):
    serve_archives(http_server, tiny_archives, "m")
    del http_server.files["/m/test_train_splits.rar"]  # a dead split mirror is not fatal
    root = tmp_path / "hmdb51"
    code, _, err = download(capsys, http_server, root, tiny_archives, "m", extra=["--splits", "builtin"])
    assert code == 0, err
    installed = sorted(p.name for p in (root / "splits" / "testTrainMulti_7030_splits").iterdir())
    assert installed == sorted(p.name for p in builtin_hmdb51_split_dir().iterdir()) and len(installed) == 153
    assert not any("test_train_splits" in r[0] for r in http_server.requests)


def official_split_archive(folder: Path, flip: bool) -> Path:
    """The shipped official split files as a RAR; with ``flip``, one training video is marked as test."""
    builder = rars.RarBuilder(format=rars.RAR29)
    for path in sorted(builtin_hmdb51_split_dir().iterdir()):
        text = path.read_text()
        if flip and path.name == "brush_hair_test_split1.txt":
            first = text.splitlines()[0]
            assert first.endswith(" 1 ")
            text = text.replace(first, first[:-2] + "2 ", 1)
        builder.add_bytes(text.encode(), f"testTrainMulti_7030_splits/{path.name}")
    archive = folder / "test_train_splits.rar"
    archive.write_bytes(builder.to_bytes())
    return archive


def test_a_split_archive_that_disagrees_with_the_official_files_is_refused(capsys, tiny_archives, tmp_path):
    archives = tmp_path / "archives"
    archives.mkdir()
    shutil.copy(tiny_archives / "hmdb51_org.rar", archives)
    official_split_archive(archives, flip=True)
    root = tmp_path / "hmdb51"
    code, _, err = run(
        capsys, "data", "download", "hmdb51", "--root", root, "--archives", archives, "--set", "download.splits_md5="
    )
    assert code == 1 and one_line(err)
    assert "disagrees with the official HMDB51 split files in 1 places" in err and "--splits builtin" in err
    assert not (root / "splits").exists() and not (root / "videos").exists()
    official_split_archive(archives, flip=False)
    code, _, err = run(
        capsys, "data", "download", "hmdb51", "--root", root, "--archives", archives, "--set", "download.splits_md5="
    )
    assert code == 0, err


def test_empty_videos_and_splits_folders_are_not_a_complete_dataset(capsys, tiny_archives, tmp_path):
    root = tmp_path / "hmdb51"
    (root / "videos").mkdir(parents=True)
    (root / "splits").mkdir()
    code, out, err = run(
        capsys,
        *extract_argv(root, tiny_archives),
    )
    assert code == 0 and "extracted 3 classes" in out, err
