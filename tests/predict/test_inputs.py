"""Which files are videos: text files are refused, GIFs are videos everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run


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
