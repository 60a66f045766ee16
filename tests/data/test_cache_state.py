"""A clip cache damaged by hand or by a crash, and a cache build on a full disk (reliability round 3, items 23, 25)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from actionmoe.cli import main
from tests.helpers import extract_argv

CACHE_SETTINGS = ["--set", "data.resize=[32,40]", "--set", "data.crop_size=24", "--set", "data.presample_frames=8"]


@pytest.fixture(scope="module")
def built(tiny_archives, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cached") / "hmdb51"
    assert main(extract_argv(root, tiny_archives)) == 0
    assert main(["data", "cache", "--root", str(root), "--workers", "1", *CACHE_SETTINGS]) == 0
    return root


@pytest.fixture
def damaged(built, tmp_path) -> Path:
    """A private copy of the built dataset and its cache."""
    import shutil

    root = tmp_path / "hmdb51"
    shutil.copytree(built, root)
    return root


def manifest(root: Path) -> Path:
    return root / ".actionmoe-cache" / "manifest.json"


def edit_manifest(edit):
    def apply(root: Path) -> None:
        path = manifest(root)
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))

    return apply


def status_unknown(root: Path) -> None:
    (root / ".actionmoe-cache" / "status.u8").write_bytes(bytes([7]) * 15)


def failures_damaged(root: Path) -> None:
    (root / ".actionmoe-cache" / "failures.jsonl").write_text('{"video": "x"\n[1]\n')


@pytest.mark.parametrize(
    "damage",
    [
        edit_manifest(lambda m: {"videos": m["videos"]}),
        edit_manifest(lambda m: {**m, "spec": {**m["spec"], "extra": 1}}),
        edit_manifest(lambda m: [m]),
        edit_manifest(lambda m: {**m, "videos": 5}),
        edit_manifest(lambda m: {**m, "spec": {**m["spec"], "frames": "8"}}),
        status_unknown,
    ],
)
def test_a_damaged_cache_gets_the_rebuild_line(capsys, damaged, damage):
    damage(damaged)
    capsys.readouterr()
    code = main(["data", "cache", "--root", str(damaged), "--workers", "1", *CACHE_SETTINGS])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "rebuild it with `actionmoe data cache --rebuild`" in err, err
    assert main(["data", "cache", "--root", str(damaged), "--workers", "1", "--rebuild", *CACHE_SETTINGS]) == 0


def test_a_damaged_failure_log_is_read_around(capsys, damaged):
    failures_damaged(damaged)
    capsys.readouterr()
    code = main(["data", "cache", "--root", str(damaged), "--workers", "1", "--json", *CACHE_SETTINGS])
    assert code == 0 and json.loads(capsys.readouterr().out)["already_built"] == 15


FULL_DISK = """
import resource, sys
from actionmoe.cli import main
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
sys.exit(main(["data", "cache", "--root", sys.argv[1], "--workers", "1", *sys.argv[2:]]))
"""


def test_a_cache_that_does_not_fit_on_the_disk_is_one_line_not_sigbus(built, tmp_path):
    """A file-size limit in a child process stands in for a full disk: the real writes fail."""
    import shutil

    root = tmp_path / "hmdb51"
    shutil.copytree(built, root)
    shutil.rmtree(root / ".actionmoe-cache")
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(root), *CACHE_SETTINGS], capture_output=True, text=True, timeout=120
    )
    err = result.stderr[result.stderr.find("actionmoe: error") :]
    assert result.returncode == 1 and err.count("\n") == 1 and "disk" in err, (result.returncode, result.stderr[-1500:])
    assert not (root / ".actionmoe-cache" / "manifest.json").exists()


def test_the_preallocated_cache_still_equals_decoding(built):
    from actionmoe.config import load_config
    from actionmoe.data.builders import build_cache
    from actionmoe.data.decode import read_uniform_frames

    config = load_config(
        None, [f"data.root={built}", "data.resize=[32,40]", "data.crop_size=24", "data.presample_frames=8"]
    )
    cache = build_cache(config.data)
    video = sorted((built / "videos" / "move_up").iterdir())[0]
    assert np.array_equal(cache.get(video), read_uniform_frames(video, 8, (32, 40)))
