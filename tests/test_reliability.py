"""The faults a hostile run found, each reproduced: nothing lost, nothing half-done, every failure one line.

docs/reliability.md maps each fault family to the tests here.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rars
import torch

from actionmoe import files
from actionmoe.cli import main
from actionmoe.data.splits import builtin_hmdb51_split_dir
from actionmoe.runtime.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from tests.helpers import cli_args, epochs_logged, one_line, run


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --- 1. a bad download is never kept ------------------------------------------------------------------------------

FAST = ["--set", "download.backoff_s=0.01", "--set", "download.retries=1"]


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
        *FAST,
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


# --- 2. the official split files ship inside the package ------------------------------------------------------------


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


def test_the_suite_needs_nothing_outside_the_repository():
    repo = Path(__file__).resolve().parents[1]
    sources = [p.read_text() for p in (repo / "tests").rglob("*.py")]
    assert not any("shared/data" in text or '"shared"' in text for text in sources if "needs nothing" not in text)
    assert len(list((repo / "tests" / "fixtures" / "videos").iterdir())) == 4


# --- 3. no run left broken by a kill ------------------------------------------------------------------------------


@pytest.fixture
def one_epoch_run(dataset_root, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    assert main(cli_args(dataset_root, run_dir, "train.epochs=1")) == 0
    return run_dir


def test_a_run_killed_between_last_and_best_is_not_broken(one_epoch_run, dataset_root, capsys):
    (one_epoch_run / "best.safetensors").unlink()  # what a kill between the two saves used to leave
    capsys.readouterr()
    code, out, err = run(capsys, *cli_args(dataset_root, one_epoch_run, "train.epochs=1"))
    assert code == 0, err
    assert "finished run" in out and load_checkpoint(one_epoch_run / "best.safetensors").meta["epoch"] == 0


def test_a_missing_best_of_an_unfinished_run_is_written_again(one_epoch_run, dataset_root, capsys):
    best = load_checkpoint(one_epoch_run / "best.safetensors")
    last = load_checkpoint(one_epoch_run / "last.safetensors", training_state=True)
    last.meta["best_epoch"] = -5  # the best epoch was an earlier one whose file is gone
    save_checkpoint(one_epoch_run / "last.safetensors", last)
    (one_epoch_run / "best.safetensors").unlink()
    code, _, err = run(capsys, *cli_args(dataset_root, one_epoch_run, "train.epochs=2"))
    assert code == 0, err
    assert load_checkpoint(one_epoch_run / "best.safetensors").meta["epoch"] == 1
    assert best.meta["epoch"] == 0


def test_an_evaluation_cut_short_is_completed_by_the_rerun(one_epoch_run, dataset_root, capsys):
    evaluation = one_epoch_run / "evaluation"
    for path in evaluation.iterdir():
        if path.name != "metrics.json":  # a kill after metrics.json, before the report and plots
            path.unlink()
    code, _, err = run(capsys, *cli_args(dataset_root, one_epoch_run, "train.epochs=1"))
    assert code == 0, err
    assert {"report.md", "confusion_matrix.png", "metrics.json"} <= {p.name for p in evaluation.iterdir()}
    assert not [p for p in one_epoch_run.iterdir() if ".partial" in p.name]


def test_stray_temporary_checkpoints_are_removed_at_the_next_start(one_epoch_run, dataset_root, capsys):
    stray = one_epoch_run / ".last.safetensors.tmp-999999999"
    stray.write_bytes(b"half a checkpoint")
    assert run(capsys, *cli_args(dataset_root, one_epoch_run, "train.epochs=1"))[0] == 0
    assert not stray.exists()


# --- 4. one writer per run folder ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_training_into_the_same_folder_is_refused(one_epoch_run, dataset_root, capsys):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from actionmoe.files import exclusive_lock\n"
            "with exclusive_lock(Path(sys.argv[1]), 'x'):\n    print('held', flush=True); time.sleep(60)",
            str(one_epoch_run / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (one_epoch_run / "metrics.jsonl").read_text()
        code, _, err = run(capsys, *cli_args(dataset_root, one_epoch_run, "train.epochs=2"))
        assert code == 1 and one_line(err) and f"process {holder.pid} is already training into" in err
        assert (one_epoch_run / "metrics.jsonl").read_text() == before
    finally:
        holder.kill()
        holder.wait()
    assert run(capsys, *cli_args(dataset_root, one_epoch_run, "train.epochs=2"))[0] == 0
    assert [row["epoch"] for row in epochs_logged(one_epoch_run)] == [0, 1]


# --- 5. nested-archive names --------------------------------------------------------------------------------------


def nested_archive(folder: Path, inner_names: list[str], video: bytes) -> Path:
    outer = rars.RarBuilder(format=rars.RAR29)
    for name in inner_names:
        inner = rars.RarBuilder(format=rars.RAR29)
        inner.add_bytes(video, f"{Path(name).stem}/clip.avi")
        outer.add_bytes(inner.to_bytes(), name)
    archive = folder / "hmdb51_org.rar"
    archive.write_bytes(outer.to_bytes())
    return archive


@pytest.mark.parametrize(
    "names, message",
    [
        (["a/walk.rar", "b/walk.rar"], "two archives for class 'walk'"),
        (["walk.rar", ".outer.rar"], "'.outer.rar' does not name a class"),
        (["walk.rar", ".videos.partial.rar"], "does not name a class"),
    ],
)
def test_colliding_class_archive_names_are_one_clear_error(capsys, tiny_archives, tmp_path, names, message):
    archives = tmp_path / "archives"
    archives.mkdir()
    shutil.copy(tiny_archives / "test_train_splits.rar", archives)
    nested_archive(archives, names, (tiny_archives / "checksums.md5").read_bytes())
    root = tmp_path / "hmdb51"
    code, _, err = run(
        capsys, "data", "download", "hmdb51", "--root", root, "--archives", archives, "--set", "download.splits_md5="
    )
    assert code == 1 and one_line(err) and message in err
    assert not (root / "videos").exists() and not [p for p in root.iterdir() if p.name.startswith(".")]


# --- 6. limits on what an archive may write -----------------------------------------------------------------------


def bomb_archive(folder: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("testTrainMulti_7030_splits/huge.txt", bytes(64 << 20))  # 64 MiB of zeros in ~64 KiB
    archive = folder / "test_train_splits.rar"  # named like the real file; recognised by content
    archive.write_bytes(buffer.getvalue())
    return archive


def test_a_decompression_bomb_is_refused_before_writing(capsys, tiny_archives, tmp_path):
    archives = tmp_path / "archives"
    archives.mkdir()
    shutil.copy(tiny_archives / "hmdb51_org.rar", archives)
    bomb_archive(archives)
    root = tmp_path / "hmdb51"
    code, _, err = run(
        capsys, "data", "download", "hmdb51", "--root", root, "--archives", archives, "--set", "download.splits_md5="
    )
    assert code == 1 and one_line(err) and "compression ratio" in err and "download.max_compression_ratio" in err
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 1 << 20


def test_an_archive_larger_than_the_byte_budget_is_refused(capsys, tiny_archives, tmp_path):
    root = tmp_path / "hmdb51"
    code, _, err = run(
        capsys,
        "data",
        "download",
        "hmdb51",
        "--root",
        root,
        "--archives",
        tiny_archives,
        "--checksums",
        tiny_archives / "checksums.md5",
        "--set",
        "download.max_extract_gb=0.000001",
    )
    assert code == 1 and one_line(err) and "may be written" in err
    assert not (root / "videos").exists() and not (root / "splits").exists()


# --- 7. checkpoint metadata is validated --------------------------------------------------------------------------


def edited_checkpoint(trained_run: Path, tmp_path: Path, edit) -> Path:
    checkpoint = load_checkpoint(trained_run / "best.safetensors")
    edit(checkpoint)
    path = tmp_path / "edited.safetensors"
    save_checkpoint(path, checkpoint)
    return path


def set_nan(checkpoint: Checkpoint) -> None:
    name = next(k for k, v in checkpoint.model.items() if v.is_floating_point())
    checkpoint.model[name] = torch.full_like(checkpoint.model[name], float("nan"))


@pytest.mark.parametrize(
    "edit, message",
    [
        (set_nan, "non-finite weights"),
        (lambda c: c.meta.update(classes=["a", "a", "b"]), "invalid class list"),
        (lambda c: c.meta.update(classes=["a", "", "b"]), "invalid class list"),
        (lambda c: c.meta.update(classes="abc"), "invalid class list"),
        (lambda c: c.meta.update(classes=["a", "b", "c", "d"]), "the class list and the weights disagree"),
    ],
)
def test_a_bad_checkpoint_is_refused_by_predict_in_one_line(capsys, trained_run, dataset_root, tmp_path, edit, message):
    checkpoint = edited_checkpoint(trained_run, tmp_path, edit)
    video = next((dataset_root / "videos" / "move_up").iterdir())
    code, out, err = run(capsys, "predict", video, "--checkpoint", checkpoint, "--json")
    assert code == 1 and one_line(err) and message in err and out == ""


# --- 8. only videos are videos ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["notes.txt", "banner.ans", "readme.nfo"])
def test_text_files_are_not_videos(capsys, trained_run, tmp_path, name):
    text = tmp_path / name
    text.write_text("This is a text file, not a video.\n" * 50)
    code, out, _ = run(capsys, "predict", text, "--checkpoint", trained_run / "best.safetensors")
    assert code == 1 and f"{text}: error:" in out and "not a video" in out


def write_gif(path: Path, frames: int = 12) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0)


def test_gifs_are_videos_everywhere(capsys, trained_run, tmp_path):
    root = tmp_path / "folder"
    for name in ("walk", "run"):
        (root / name).mkdir(parents=True)
        for index in range(4):
            write_gif(root / name / f"{name}_{index}.gif")
    code, out, err = run(capsys, "data", "summary", "--root", root, "--dataset", "folder", "--json")
    assert code == 0, err
    assert sum(json.loads(out)["counts"].values()) == 8
    code, out, err = run(capsys, "data", "scan", "--root", root, "--dataset", "folder", "--workers", 1)
    assert code == 0 and "8 of 8 videos decode" in out, out + err
    code, out, _ = run(
        capsys, "predict", root / "walk" / "walk_0.gif", "--checkpoint", trained_run / "best.safetensors"
    )
    assert code == 0 and "error" not in out


# --- 9. every user-caused failure is one line ---------------------------------------------------------------------


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


def test_output_paths_that_cannot_be_written(capsys, trained_run, dataset_root, tmp_path, a_file):
    best = trained_run / "best.safetensors"
    for argv in (
        ["evaluate", "--checkpoint", best, "--out", a_file / "eval"],
        ["export", "--checkpoint", best, "--out", a_file / "model.pt2"],
        [
            "predict",
            next((dataset_root / "videos" / "move_up").iterdir()),
            "--checkpoint",
            best,
            "--grid",
            a_file / "grid.png",
        ],
        ["data", "synth", "--out", a_file / "synth", "--classes", "2", "--videos-per-class", "4", "--frames", "4"],
        [
            "data",
            "cache",
            "--root",
            dataset_root,
            "--set",
            f"data.cache={a_file / 'cache'}",
            "--set",
            "data.resize=[32,40]",
            "--set",
            "data.crop_size=24",
        ],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 1 and one_line(err), (argv, err)


def test_predict_grid_into_a_folder_writes_inside_it(capsys, trained_run, dataset_root, tmp_path):
    folder = tmp_path / "grids"
    folder.mkdir()
    video = next((dataset_root / "videos" / "move_up").iterdir())
    code, _, err = run(capsys, "predict", video, "--checkpoint", trained_run / "best.safetensors", "--grid", folder)
    assert code == 0 and err.strip() == f"grid: {folder / 'prediction_grid.png'}"
    assert (folder / "prediction_grid.png").stat().st_size > 1000 and not Path(f"{folder}.png").exists()


def test_disk_full_at_the_first_checkpoint_is_one_line(capsys, dataset_root, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full)
    code, _, err = run(capsys, *cli_args(dataset_root, tmp_path / "run", "train.epochs=1"))
    assert code == 1 and one_line(err) and "No space left on device" in err


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--batch-size", "0"], 2, "--batch-size must be at least 1"),
        (["--workers", "-1"], 2, "--workers 0 or more"),
        (["--device", "bogus"], 2, "unknown device 'bogus'"),
        (["--split", "7"], 2, "--split must be 1, 2 or 3"),
        (["--views", "2x2"], 2, "--views must look like"),
    ],
)
def test_bad_evaluate_options(capsys, trained_run, argv, code, message):
    result, _, err = run(capsys, "evaluate", "--checkpoint", trained_run / "best.safetensors", *argv)
    assert result == code and one_line(err) and message in err


@pytest.mark.parametrize("argv", [["data", "scan", "--workers", "0"], ["data", "cache", "--workers", "-1"]])
def test_bad_worker_counts(capsys, dataset_root, argv):
    code, _, err = run(capsys, *argv[:2], "--root", dataset_root, *argv[2:])
    assert code == 2 and one_line(err) and "--workers must be at least 1" in err


def test_serve_on_a_busy_or_invalid_port(capsys, trained_run):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run(capsys, "serve", "--checkpoint", trained_run / "best.safetensors", "--port", port)
    assert code == 1 and one_line(err) and f"cannot listen on 127.0.0.1:{port}" in err
    code, _, err = run(capsys, "serve", "--checkpoint", trained_run / "best.safetensors", "--port", 70000)
    assert code == 2 and one_line(err) and "--port must be between 1 and 65535" in err


def test_an_unreadable_checkpoint_is_called_unreadable(capsys, trained_run, monkeypatch):
    from actionmoe.engine import checkpoint

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint, "safe_open", denied)
    code, _, err = run(capsys, "evaluate", "--checkpoint", trained_run / "best.safetensors")
    assert code == 1 and one_line(err) and "cannot read" in err and "permissions" in err and "corrupt" not in err


def test_a_damaged_checkpoint_gives_advice_the_command_can_follow(capsys, tmp_path):
    damaged = tmp_path / "best.safetensors"
    damaged.write_bytes(b"\x00" * 100)
    code, _, err = run(capsys, "evaluate", "--checkpoint", damaged)
    assert code == 1 and one_line(err) and "damaged" in err and "--force" not in err


def test_empty_videos_and_splits_folders_are_not_a_complete_dataset(capsys, tiny_archives, tmp_path):
    root = tmp_path / "hmdb51"
    (root / "videos").mkdir(parents=True)
    (root / "splits").mkdir()
    code, out, err = run(
        capsys,
        "data",
        "download",
        "hmdb51",
        "--root",
        root,
        "--archives",
        tiny_archives,
        "--checksums",
        tiny_archives / "checksums.md5",
    )
    assert code == 0 and "extracted 3 classes" in out, err
