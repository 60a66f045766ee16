"""The video probe and the decoders on files a user really has: undecodable streams, names that are not
UTF-8, AV1, rotated phone videos, and a decoding process that dies.

Reliability round 3 (docs/reliability.md), items 8-11.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from actionmoe.data.decode import OpenCVReader, PyAVReader, probe_video, read_uniform_frames, video_rotation
from actionmoe.errors import VideoDecodeError
from tests.helpers import run

SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>\n'


def write_pyav(path: Path, codec: str, frames: np.ndarray, rotation: int = 0) -> Path:
    """RGB frames [T, H, W, 3] encoded with PyAV (``rotation``: a display matrix, as phones write)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def moving_block(count: int = 12, height: int = 64, width: int = 80) -> np.ndarray:
    frames = np.zeros((count, height, width, 3), np.uint8)
    for index in range(count):
        frames[index, 4:20, 4 + 4 * index : 20 + 4 * index] = (250, 240, 30)
    return frames


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory, shared_data) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("odd")
    files = {"svg.mp4": folder / "drawing.mp4"}
    files["svg.mp4"].write_text(SVG)
    files["av1.mp4"] = write_pyav(folder / "av1.mp4", "libsvtav1", moving_block(12, 64, 64))
    files["rotated.mp4"] = write_pyav(folder / "rotated.mp4", "mpeg4", moving_block(), rotation=90)
    files["non_utf8"] = folder / os.fsdecode(b"bad\xff.avi")
    shutil.copy(shared_data / "videos" / "test.avi", files["non_utf8"])
    return files


def test_a_stream_ffmpeg_knows_but_cannot_decode_is_not_a_video(odd_files):
    with pytest.raises(VideoDecodeError, match="not a video"):
        probe_video(odd_files["svg.mp4"])
    with pytest.raises(VideoDecodeError, match="not a video"):
        read_uniform_frames(odd_files["svg.mp4"], 4, (32, 32))


def test_an_undecodable_stream_is_one_row_of_a_batch(capsys, trained_run, odd_files, shared_data, tmp_path):
    folder = tmp_path / "footage"
    folder.mkdir()
    shutil.copy(odd_files["svg.mp4"], folder / "drawing.mp4")
    shutil.copy(shared_data / "videos" / "test.avi", folder / "good.avi")
    code, out, err = run(capsys, "predict", folder, "--checkpoint", trained_run / "best.safetensors")
    assert code == 1 and "Traceback" not in err
    assert "drawing.mp4: error:" in out and "not a video" in out and "good.avi: " in out


def test_an_undecodable_stream_is_dropped_from_training_and_listed_by_scan(capsys, dataset_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset_root, root, symlinks=True)
    victim = next((root / "videos" / "move_up").iterdir())
    victim.write_text(SVG)
    code, out, err = run(capsys, "data", "scan", "--root", root, "--workers", 1)
    assert code == 1 and "not a video" in out and "Traceback" not in err
    from tests.helpers import cli_args

    code, _, err = run(capsys, *cli_args(root, tmp_path / "run", "train.epochs=1", "data.cache=off"))
    assert code == 0, err


def test_an_av1_video_decodes_with_the_default_decoder(odd_files):
    frames = read_uniform_frames(odd_files["av1.mp4"], 4, (32, 32))
    assert frames.shape == (4, 32, 32, 3) and frames.std() > 5
    direct = OpenCVReader().read(odd_files["av1.mp4"], np.arange(4), None)
    assert len(direct.frames) == 4


def test_rotated_videos_stand_upright_in_every_decoder(odd_files):
    assert video_rotation(odd_files["rotated.mp4"]) == 90
    indices = np.arange(6)
    opencv = OpenCVReader().read(odd_files["rotated.mp4"], indices, None).frames
    pyav = PyAVReader().read(odd_files["rotated.mp4"], indices, None).frames
    assert opencv.shape == pyav.shape == (6, 80, 64, 3)  # 80x64 encoded, shown turned a quarter
    assert np.abs(opencv.astype(int) - pyav.astype(int)).mean() < 1.0
    from actionmoe.data.decode import stream_frames

    streamed = np.stack(list(stream_frames(odd_files["rotated.mp4"], None))[:6])
    assert np.abs(streamed.astype(int) - pyav.astype(int)).mean() < 1.0


PREDICT_NON_UTF8 = """
import sys, os
from actionmoe.cli import main
sys.exit(main(["predict", os.fsdecode(sys.argv[1].encode("latin-1")), "--checkpoint", sys.argv[2], "--json"]))
"""


def test_a_file_name_that_is_not_utf8_is_predicted_not_a_crash(trained_run, odd_files):
    """OpenCV crashes the process (SIGSEGV) on such a name; run in a child so the suite survives."""
    name = os.fsencode(odd_files["non_utf8"]).decode("latin-1")
    result = subprocess.run(
        [sys.executable, "-c", PREDICT_NON_UTF8, name, str(trained_run / "best.safetensors")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-1500:])
    assert '"error": null' in result.stdout


SCAN_NON_UTF8 = """
import sys
from actionmoe.cli import main
sys.exit(main(["data", "scan", "--root", sys.argv[1], "--dataset", "folder", "--workers", "2"]))
"""


def test_scan_of_a_folder_with_a_name_that_is_not_utf8_finishes(odd_files, shared_data, tmp_path):
    root = tmp_path / "folder"
    (root / "walk").mkdir(parents=True)
    (root / "run").mkdir()
    for index in range(3):
        shutil.copy(shared_data / "videos" / "test.avi", root / "walk" / f"w{index}.avi")
        shutil.copy(shared_data / "videos" / "test.avi", root / "run" / f"r{index}.avi")
    shutil.copy(odd_files["non_utf8"], root / "walk" / odd_files["non_utf8"].name)
    result = subprocess.run(
        [sys.executable, "-c", SCAN_NON_UTF8, str(root)], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0 and "7 of 7 videos decode" in result.stdout, result.stderr[-1500:]


def crash_on_second(job):
    """A worker job that kills its process on the second input, as a native crash would."""
    if job == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return job * 10


def test_a_dead_worker_ends_the_map_with_one_clear_error():
    from actionmoe.data.workers import ordered_map
    from actionmoe.errors import WorkerCrashError

    assert list(ordered_map(crash_on_second, [0, 2, 3], workers=2)) == [0, 20, 30]
    with pytest.raises(WorkerCrashError, match="decoding process died"):
        list(ordered_map(crash_on_second, [0, 1, 2, 3], workers=2))


SCAN_WITH_CRASH = """
import sys
import actionmoe.data.scan as scan
from tests.data.test_probe import crash_in_scan
scan.scan_one = crash_in_scan
from actionmoe.cli import main
sys.exit(main(["data", "scan", "--root", sys.argv[1], "--workers", "2"]))
"""


def crash_in_scan(job):
    os.kill(os.getpid(), signal.SIGKILL)


def test_scan_with_a_dead_worker_is_one_line_not_a_hang(dataset_root):
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", SCAN_WITH_CRASH, str(dataset_root)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=repo,
    )
    err = result.stderr[result.stderr.find("actionmoe: error") :]
    assert result.returncode == 1 and err.count("\n") == 1 and "process died" in err, result.stderr[-1500:]
