"""Shared fixtures: the real videos and split lists in tests/fixtures, tiny synthetic archives and datasets,
a trained tiny run, a loopback HTTP server, a folder of corrupt videos."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from actionmoe.acquire.synthetic import write_synthetic_hmdb51
from actionmoe.config import SynthConfig
from actionmoe.data.decode import write_video
from tests.helpers import FIXTURES, TINY_SYNTH, LoopbackServer, cli_args, extract_argv, loopback_handler


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real reference data kept in the repository: ``videos/`` (four real recordings) and ``hmdb51/`` lists."""
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_archives(tmp_path_factory) -> Path:
    """A folder with a tiny synthetic ``hmdb51_org.rar``, ``test_train_splits.rar`` and ``checksums.md5``."""
    out = tmp_path_factory.mktemp("archives")
    write_synthetic_hmdb51(out, TINY_SYNTH)
    return out


@pytest.fixture
def http_server():
    state = LoopbackServer(url="")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), loopback_handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory) -> Path:
    """3 motion classes x 10 videos, extracted through the real acquisition path."""
    archives = tmp_path_factory.mktemp("train_archives")
    write_synthetic_hmdb51(archives, SynthConfig(classes=3, videos_per_class=10, frames=12, width=48, height=40))
    root = archives.parent / "train_dataset"
    from actionmoe.cli import main

    assert main(extract_argv(root, archives)) == 0
    return root


@pytest.fixture(scope="session")
def trained_run(dataset_root, tmp_path_factory) -> Path:
    """A two-epoch run of the tiny config trained by the CLI in a child process (which also evaluates it);
    what it printed on stderr, a user's view of a first run, is in ``train-stderr.txt`` beside the run folder."""
    run_dir = tmp_path_factory.mktemp("trained") / "hmdb51-split1"
    argv = [sys.executable, "-m", "actionmoe", *cli_args(dataset_root, run_dir, "train.epochs=2")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir.parent / "train-stderr.txt").write_text(result.stderr)
    return run_dir


@pytest.fixture(scope="session")
def easy_run(dataset_root, tmp_path_factory) -> Path:
    """tests.helpers.EASY's twelve epochs in process (no test): a model that tells its training clips apart."""
    from actionmoe.workflows import run_training
    from tests.helpers import EASY, tiny_config

    run_dir = tmp_path_factory.mktemp("easy") / "run"
    run_training(tiny_config(dataset_root, *EASY), run_dir)
    return run_dir


@pytest.fixture(scope="session")
def onnx_model(trained_run, tmp_path_factory) -> Path:
    """The tiny run exported to ONNX through the CLI (read-only: copy it before changing it)."""
    from actionmoe.cli import main

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"  # no --format: the suffix says ONNX
    assert main(["export", "--checkpoint", str(trained_run / "best.safetensors"), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def predictor(trained_run):
    """The tiny run's best checkpoint as a Predictor on the CPU (shared: tests only read it or monkeypatch it)."""
    from actionmoe.predict.predictor import Predictor

    return Predictor.from_checkpoint(trained_run / "best.safetensors", device="cpu")


@pytest.fixture(scope="session")
def corrupt_videos(shared_data, tmp_path_factory) -> dict[str, Path]:
    """The bad inputs a user meets: empty, truncated, random bytes, text, one frame, folder, missing."""
    folder = tmp_path_factory.mktemp("corrupt")
    avi, mp4 = (shared_data / "videos" / "test.avi").read_bytes(), (shared_data / "videos" / "test.mp4").read_bytes()
    files = {
        "empty.avi": b"",
        "half.avi": avi[: len(avi) // 2],
        "half.mp4": mp4[: len(mp4) // 2],
        "random.avi": np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes(),
        "text.mp4": b"this is not a video\n" * 100,
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    paths["one_frame.avi"] = folder / "one_frame.avi"
    write_video(paths["one_frame.avi"], np.full((1, 24, 32, 3), 200, np.uint8), fps=25)
    paths["folder.avi"] = folder / "folder.avi"
    paths["folder.avi"].mkdir()
    paths["missing.avi"] = folder / "missing.avi"
    return paths
