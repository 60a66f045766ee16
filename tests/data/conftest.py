"""Fixtures shared by the data tests."""

from pathlib import Path

import numpy as np
import pytest

from actionmoe.data.decode import write_video


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
