"""Datasets, loaders, corrupt-video skipping, the clip cache and the scan/cache commands."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from actionmoe.cli import main
from actionmoe.config import load_config
from actionmoe.data.builders import build_cache, build_dataset, build_splits
from actionmoe.data.cache import CacheSpec, ClipCache
from actionmoe.data.dataset import EpochSampler, VideoClipDataset, build_loader
from actionmoe.data.decode import read_uniform_frames, write_video
from actionmoe.data.splits import VideoRecord
from actionmoe.data.transforms import Preprocessing
from actionmoe.errors import CacheError
from tests.data.test_decode import EXPECTED_ERRORS
from tests.helpers import extract_argv

SMALL = Preprocessing(clip_len=4, resize=(32, 40), presample_frames=8, crop_size=24, flip=False)


@pytest.fixture(scope="module")
def good_videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("good")
    paths = []
    for i in range(6):
        frames = np.random.default_rng(i).integers(0, 256, size=(12, 36, 48, 3), dtype=np.uint8)
        paths.append(folder / f"v{i}.avi")
        write_video(paths[-1], frames, fps=12)
    return paths


def dataset(paths, train=False, cache=None, normalize=True):
    records = [VideoRecord(p, i % 2, "ab"[i % 2]) for i, p in enumerate(paths)]
    pre = SMALL if normalize else replace(SMALL, normalize_on_device=True)
    return VideoClipDataset(records, pre, train, "opencv", cache, seed=3)


def test_items_have_the_documented_shapes(good_videos):
    clip, label, index = dataset(good_videos, train=True)[(0, 2)]
    assert clip.shape == (3, 4, 24, 24) and clip.dtype == torch.float32 and (label, index) == (0, 2)
    views, _, _ = dataset(good_videos)[2]
    assert views.shape == (1, 3, 4, 24, 24)


def test_clips_depend_only_on_seed_epoch_and_index(good_videos):
    data = dataset(good_videos, train=True)
    assert torch.equal(data[(1, 3)][0], data[(1, 3)][0])
    assert not torch.equal(data[(1, 3)][0], data[(2, 3)][0])


def test_loader_skips_corrupt_videos_and_the_loop_finishes(good_videos, corrupt_videos, caplog):
    mixed = [good_videos[0], *corrupt_videos.values(), *good_videos[1:]]
    loader = build_loader(dataset(mixed, train=True), batch_size=3, shuffle=True, num_workers=2, seed=1)
    seen = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            assert batch["clip"].shape[1:] == (3, 4, 24, 24) and 1 <= len(batch["clip"]) <= 3
            assert len(batch["label"]) == len(batch["clip"])
            seen += batch["index"].tolist()
    decodable = {i for i, p in enumerate(mixed) if p in good_videos or p.name in ("one_frame.avi",)}
    assert decodable <= set(seen)
    for name in EXPECTED_ERRORS:
        assert str(corrupt_videos[name]) in loader.failures
    assert sum(f"skipping unreadable video: {corrupt_videos['empty.avi']}" in m for m in caplog.messages) == 1


def test_a_batch_of_only_failures_is_never_yielded(corrupt_videos, good_videos):
    bad = [corrupt_videos["empty.avi"], corrupt_videos["text.mp4"], good_videos[0]]
    loader = build_loader(dataset(bad), batch_size=2, shuffle=False)
    batches = list(loader)
    assert len(batches) == 1 and batches[0]["index"].tolist() == [2]


def test_sampler_shards_like_distributed_sampler():
    shards = [list(EpochSampler(10, shuffle=True, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    assert {i for s in shards for _, i in s} == set(range(10))
    sampler = EpochSampler(10, shuffle=True, seed=0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert [i for _, i in first] != [i for _, i in sampler] and all(e == 1 for e, _ in sampler)


def make_cache(folder: Path, root: Path, videos: list[Path]) -> ClipCache:
    from actionmoe.data.cache import create_cache

    return create_cache(folder, root, CacheSpec(8, 32, 40, "opencv"), videos)


def test_cached_clip_equals_the_decoded_clip_bitwise(good_videos, tmp_path):
    from actionmoe.data.cache import fill_cache

    cache = make_cache(tmp_path / "cache", good_videos[0].parent, good_videos)
    report = fill_cache(cache, good_videos[:4], workers=2)
    assert (report.built, report.already) == (4, 0)
    assert fill_cache(cache, good_videos, workers=1).already == 4  # resumed: only the rest is built
    reopened = ClipCache.open(tmp_path / "cache", good_videos[0].parent, CacheSpec(8, 32, 40, "opencv"))
    direct = read_uniform_frames(good_videos[1], 8, (32, 40), "opencv")
    assert np.array_equal(reopened.get(good_videos[1]), direct)
    for train in (True, False):
        for normalize in (True, False):
            cached, uncached = (
                dataset(good_videos, train, reopened, normalize),
                dataset(good_videos, train, None, normalize),
            )
            for key in [(0, 0), (1, 5), (4, 3)]:
                assert torch.equal(cached[key][0], uncached[key][0])


def test_stale_and_truncated_cache_are_refused(good_videos, tmp_path):
    from actionmoe.data.cache import fill_cache

    root = good_videos[0].parent
    fill_cache(make_cache(tmp_path / "c", root, good_videos), good_videos, workers=1)
    with pytest.raises(CacheError, match="holds 8 frames at 32x40 decoded by opencv.*needs 16 frames"):
        ClipCache.open(tmp_path / "c", root, CacheSpec(16, 32, 40, "opencv"))
    with open(tmp_path / "c" / "frames.u8", "r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(CacheError, match="truncated"):
        ClipCache.open(tmp_path / "c", root, CacheSpec(8, 32, 40, "opencv"))
    with pytest.raises(CacheError, match="no cache"):
        ClipCache.open(tmp_path / "nothing", root, CacheSpec(8, 32, 40, "opencv"))


@pytest.fixture
def small_root(tiny_archives, tmp_path) -> Path:
    """The tiny synthetic dataset extracted, with one video replaced by garbage."""
    root = tmp_path / "hmdb51"
    assert main(extract_argv(root, tiny_archives)) == 0
    victim = sorted((root / "videos" / "move_left").iterdir())[0]
    victim.write_bytes(b"garbage")
    return root


def test_scan_and_cache_commands(small_root, capsys):
    capsys.readouterr()
    code = main(["data", "scan", "--root", str(small_root), "--json", "--workers", "2"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["videos"] == 15 and len(report["unreadable"]) == 1
    assert "move_left" in report["unreadable"][0]["path"] and "cannot open" in report["unreadable"][0]["reason"]

    overrides = ["--set", "data.resize=[32,40]", "--set", "data.crop_size=24", "--set", "data.presample_frames=8"]
    code = main(["data", "cache", "--root", str(small_root), "--json", "--workers", "2", *overrides])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["built"] == 14 and summary["failed"] == 1 and summary["built_now"] == 14
    code = main(["data", "cache", "--root", str(small_root), "--json", *overrides])
    assert json.loads(capsys.readouterr().out)["already_built"] == 15

    config = load_config(
        None,
        [
            f"data.root={small_root}",
            "data.resize=[32,40]",
            "data.presample_frames=8",
            "data.crop_size=24",
            "data.clip_len=4",
            "data.on_missing=skip",
        ],
    )
    cache = build_cache(config.data)
    assert cache is not None and cache.counts() == {"videos": 15, "built": 14, "failed": 1}
    splits = build_splits(config.data)
    test_set = build_dataset(config.data, splits, "test", cache)
    assert test_set[0][0].shape == (1, 3, 4, 24, 24)

    stale = load_config(None, [f"data.root={small_root}", "data.presample_frames=16"])
    with pytest.raises(CacheError, match="rebuild"):
        build_cache(stale.data)
    assert main(["data", "cache", "--root", str(small_root), "--set", "data.presample_frames=16"]) == 1
    assert "holds 8 frames" in capsys.readouterr().err
    shutil.rmtree(small_root / ".actionmoe-cache")
    assert build_cache(stale.data) is None


def test_scan_lists_each_corrupt_input_with_its_reason(corrupt_videos, good_videos):
    from actionmoe.data.scan import scan_videos

    paths = [good_videos[0], *corrupt_videos.values()]
    results = {Path(r.path).name: r for r in scan_videos(paths, "opencv", 4, workers=2)}
    assert results[good_videos[0].name].ok and results["one_frame.avi"].ok
    for name in EXPECTED_ERRORS:
        assert not results[name].ok and results[name].reason.startswith(str(corrupt_videos[name]))


def test_unreadable_permission_is_reported(good_videos, monkeypatch):
    import os

    from actionmoe.data.decode import check_readable
    from actionmoe.errors import VideoDecodeError

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root ignores chmod, so fake the answer
    with pytest.raises(VideoDecodeError, match="permission denied"):
        check_readable(good_videos[0])


@pytest.mark.slow
def test_process_pools_work_under_spawn(good_videos, corrupt_videos, tmp_path):
    """macOS, Windows and Python 3.14 start workers with spawn/forkserver: nothing may rely on fork."""
    script = f"""
import multiprocessing, sys
from pathlib import Path
from actionmoe.data.cache import CacheSpec, create_cache, fill_cache
from actionmoe.data.scan import scan_videos

if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")
    videos = [Path(p) for p in {[str(p) for p in good_videos[:3]] + [str(corrupt_videos["text.mp4"])]!r}]
    results = scan_videos(videos, "opencv", 4, workers=2)
    assert [r.ok for r in results] == [True, True, True, False], results
    root = videos[0].parent
    cache = create_cache(Path({str(tmp_path / "cache")!r}), root, CacheSpec(8, 32, 40, "opencv"), videos[:3])
    report = fill_cache(cache, videos[:3], workers=2)
    assert report.built == 3 and not report.failed, report
    print("spawn ok")
"""
    (tmp_path / "spawned.py").write_text(script)
    result = subprocess.run([sys.executable, str(tmp_path / "spawned.py")], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "spawn ok" in result.stdout, result.stderr
