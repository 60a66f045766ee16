import shutil
from collections import Counter
from pathlib import Path

import pytest

from actionmoe.data.splits import (
    SplitOptions,
    VideoRecord,
    builtin_hmdb51_split_dir,
    hmdb51_class_names,
    load_splits,
    parse_hmdb51_split_file,
    stratified_holdout,
    summarize,
)
from actionmoe.errors import DatasetError


@pytest.fixture(scope="module")
def official_root(shared_data, tmp_path_factory) -> Path:
    """The real split files laid out as an extracted HMDB51 root (videos absent)."""
    root = tmp_path_factory.mktemp("hmdb51")
    shutil.copytree(builtin_hmdb51_split_dir(), root / "splits" / "testTrainMulti_7030_splits")
    return root


@pytest.mark.parametrize("split", [1, 2, 3])
def test_official_split_files_give_70_30_per_class(official_root, shared_data, split):
    options = SplitOptions(split=split, val_fraction=0.0, on_missing="skip")
    splits = load_splits("hmdb51", official_root, options)
    # no videos on disk: every record is reported missing, so count the split files themselves
    assert len(splits.missing) == 3570 + 1530
    classes = hmdb51_class_names(official_root / "splits" / "testTrainMulti_7030_splits")
    assert len(classes) == 51
    assert list(classes) == (shared_data / "hmdb51" / "classes.txt").read_text().split()
    counts = Counter()
    for name in classes:
        entries = parse_hmdb51_split_file(
            official_root / "splits" / "testTrainMulti_7030_splits" / f"{name}_test_split{split}.txt"
        )
        subset_counts = Counter(subset for _, subset in entries)
        assert (subset_counts["train"], subset_counts["test"]) == (70, 30), name
        counts.update(subset_counts)
    assert (counts["train"], counts["test"]) == (3570, 1530)


def test_official_split_matches_public_lists(official_root, shared_data):
    """Records agree with the public ``class/video label`` lists of split 1."""
    root = official_root
    classes = hmdb51_class_names(root / "splits" / "testTrainMulti_7030_splits")
    for subset, list_name in (("train", "hmdb51_train_split_1_videos.txt"), ("test", "hmdb51_val_split_1_videos.txt")):
        expected = set()
        for line in (shared_data / "hmdb51" / list_name).read_text().splitlines():
            path, label = line.split()
            expected.add((path.split("/")[-1], int(label)))
        ours = set()
        for label, name in enumerate(classes):
            entries = parse_hmdb51_split_file(
                root / "splits" / "testTrainMulti_7030_splits" / f"{name}_test_split1.txt"
            )
            ours |= {(video, label) for video, s in entries if s == subset}
        assert ours == expected


def make_root(tmp_path: Path, files: dict[str, str], videos: dict[str, list[str]]) -> Path:
    split_dir = tmp_path / "splits" / "testTrainMulti_7030_splits"
    split_dir.mkdir(parents=True)
    for name, text in files.items():
        (split_dir / name).write_bytes(text.encode())
    for cls, names in videos.items():
        (tmp_path / "videos" / cls).mkdir(parents=True)
        for name in names:
            (tmp_path / "videos" / cls / name).write_bytes(b"video")
    return tmp_path


def three_splits(cls: str, text: str) -> dict[str, str]:
    return {f"{cls}_test_split{n}.txt": text for n in (1, 2, 3)}


def test_tolerates_crlf_trailing_spaces_and_blank_lines(tmp_path):
    text = "a.avi 1 \r\n\r\nb.avi 2\r\n  c.avi 0  \n d (1)!.avi 1\n"
    root = make_root(tmp_path, three_splits("walk", text), {"walk": ["a.avi", "b.avi", "c.avi", "d (1)!.avi"]})
    splits = load_splits("hmdb51", root, SplitOptions(val_fraction=0.0))
    assert [r.path.name for r in splits.train] == ["a.avi", "d (1)!.avi"]
    assert [r.path.name for r in splits.test] == ["b.avi"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("a.avi 1\ngarbage\n", r"walk_test_split1.txt:2: malformed line 'garbage'"),
        ("a.avi 7\n", "malformed line 'a.avi 7'"),
        ("a.avi 1\na.avi 2\n", "a.avi is listed twice"),
    ],
)
def test_bad_split_lines_are_named(tmp_path, text, message):
    root = make_root(tmp_path, three_splits("walk", text), {"walk": ["a.avi"]})
    with pytest.raises(DatasetError, match=message):
        load_splits("hmdb51", root, SplitOptions())


def test_missing_class_split_file(tmp_path):
    files = three_splits("walk", "a.avi 1\n")
    del files["walk_test_split2.txt"]
    root = make_root(tmp_path, files, {"walk": ["a.avi"]})
    with pytest.raises(DatasetError, match="walk_test_split2.txt is missing"):
        load_splits("hmdb51", root, SplitOptions())


def test_missing_videos_error_or_skip(tmp_path):
    root = make_root(tmp_path, three_splits("walk", "a.avi 1\nb.avi 1\nc.avi 2\n"), {"walk": ["a.avi", "c.avi"]})
    with pytest.raises(DatasetError, match="1 videos named in the split files are missing.*--on-missing skip"):
        load_splits("hmdb51", root, SplitOptions())
    splits = load_splits("hmdb51", root, SplitOptions(on_missing="skip", val_fraction=0.0))
    assert [p.name for p in splits.missing] == ["b.avi"]
    assert summarize(splits)["counts"] == {"train": 1, "val": 0, "test": 1}


def test_missing_root(tmp_path):  # the split number is checked by the config (tests/test_config.py)
    with pytest.raises(DatasetError, match="does not exist"):
        load_splits("hmdb51", tmp_path / "nope", SplitOptions())
    with pytest.raises(DatasetError, match="no HMDB51 split files"):
        load_splits("hmdb51", tmp_path, SplitOptions())


def test_holdout_is_stratified_seeded_and_disjoint():
    records = [VideoRecord(Path(f"{c}/{i}.avi"), label, c) for label, c in enumerate("abc") for i in range(70)]
    train, val = stratified_holdout(records, 0.1, seed=3)
    assert Counter(r.label for r in val) == {0: 7, 1: 7, 2: 7}
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(records)
    assert stratified_holdout(list(reversed(records)), 0.1, seed=3) == (train, val)
    assert stratified_holdout(records, 0.1, seed=4)[1] != val


def test_val_on_test_for_notebook_parity(tmp_path):
    root = make_root(
        tmp_path, three_splits("walk", "a.avi 1\nb.avi 1\nc.avi 2\n"), {"walk": ["a.avi", "b.avi", "c.avi"]}
    )
    splits = load_splits("hmdb51", root, SplitOptions(val_on_test=True))
    assert splits.val == splits.test and len(splits.train) == 2 and splits.val_is_test


def test_ucf101_layout(tmp_path):
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 Archery\r\n")
    (lists / "trainlist01.txt").write_text("ApplyEyeMakeup/v_A_g08_c01.avi 1\nArchery/v_B_g08_c01.avi 2\n")
    (lists / "testlist01.txt").write_text("Archery/v_B_g01_c01.avi\n")
    for rel in ("ApplyEyeMakeup/v_A_g08_c01.avi", "Archery/v_B_g08_c01.avi", "Archery/v_B_g01_c01.avi"):
        (tmp_path / "UCF-101" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "UCF-101" / rel).write_bytes(b"v")
    splits = load_splits("ucf101", tmp_path, SplitOptions(val_fraction=0.0))
    assert splits.classes == ("ApplyEyeMakeup", "Archery")
    assert [(r.path.name, r.label) for r in splits.train] == [("v_A_g08_c01.avi", 0), ("v_B_g08_c01.avi", 1)]
    assert [(r.path.name, r.label) for r in splits.test] == [("v_B_g01_c01.avi", 1)]


def test_folder_layout_with_and_without_csv(tmp_path):
    for cls in ("jump", "run"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            (tmp_path / cls / f"{i}.mp4").write_bytes(b"v")
    (tmp_path / "jump" / "notes.txt").write_text("not a video")
    splits = load_splits("folder", tmp_path, SplitOptions(val_fraction=0.0))
    assert splits.classes == ("jump", "run")
    assert (len(splits.train), len(splits.test)) == (14, 6)
    csv_path = tmp_path / "split.csv"
    csv_path.write_text("path,subset\njump/0.mp4,train\nrun/1.mp4,test\n")
    splits = load_splits("folder", tmp_path, SplitOptions(val_fraction=0.0, split_csv=str(csv_path)))
    assert [r.path.name for r in splits.train] == ["0.mp4"] and [r.label for r in splits.test] == [1]
    csv_path.write_text("jump/99.mp4,train\n")
    with pytest.raises(DatasetError, match="split.csv:1"):
        load_splits("folder", tmp_path, SplitOptions(split_csv=str(csv_path)))


def test_the_hmdb51_holdout_keeps_clips_of_one_source_video_together():
    """HMDB51 cuts several clips from one video (``..._goo_0``, ``_1``, ``_2``): none may straddle train and val."""
    from actionmoe.data.splits import hmdb51_source

    split_dir = builtin_hmdb51_split_dir()
    records = []
    for label, name in enumerate(hmdb51_class_names(split_dir)):
        for video, subset in parse_hmdb51_split_file(split_dir / f"{name}_test_split1.txt"):
            if subset == "train":
                records.append(VideoRecord(Path(name) / video, label, name))
    sources = lambda rows: {hmdb51_source(r.path) for r in rows}
    plain_train, plain_val = stratified_holdout(records, 0.1, seed=0)
    assert sources(plain_train) & sources(plain_val)  # the fault: near-duplicates on both sides
    train, val = stratified_holdout(records, 0.1, seed=0, source=hmdb51_source)
    assert not sources(train) & sources(val)
    assert len(train) + len(val) == len(records) and 0.08 < len(val) / len(records) < 0.14
    assert {r.label for r in val} == set(range(51))  # every class still validated


def test_holdout_groups_through_load_splits_and_singletons_change_nothing(tmp_path):
    clips = [f"{s}_{c}.avi" for s in ("alpha", "beta", "gamma", "delta", "eps", "zeta") for c in range(3)]
    root = make_root(tmp_path, three_splits("walk", "".join(f"{v} 1\n" for v in clips)), {"walk": clips})
    splits = load_splits("hmdb51", root, SplitOptions(val_fraction=0.3))
    held_sources = {p.path.stem.rsplit("_", 1)[0] for p in splits.val}
    assert len(splits.val) == 6 and len(held_sources) == 2  # two whole source videos
    assert not held_sources & {p.path.stem.rsplit("_", 1)[0] for p in splits.train}
    records = [VideoRecord(Path(f"c/{i}_x.avi"), i % 3, "c") for i in range(60)]
    assert stratified_holdout(records, 0.2, 5, source=lambda p: str(p)) == stratified_holdout(records, 0.2, 5)
