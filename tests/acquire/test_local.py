"""An HMDB51 copy already on disk (a Kaggle input): the two RARs or an extracted tree, found and used in place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from actionmoe.acquire.local import adopt_extracted_tree, find_local_hmdb51
from actionmoe.config import load_config
from actionmoe.data.splits import builtin_hmdb51_split_dir, parse_hmdb51_split_file
from actionmoe.errors import DatasetError
from actionmoe.workflows import acquire_dataset

CLASSES = ("brush_hair", "cartwheel", "catch")
SYNTHETIC_ARCHIVES = ["download.splits_md5=", "download.videos_members=0", "download.splits_members=0"]


def extracted_tree(folder: Path, video: Path, per_subset: int = 2) -> Path:
    """Class folders named as in HMDB51, holding copies of a real video under official split-1 names."""
    for name in CLASSES:
        entries = parse_hmdb51_split_file(builtin_hmdb51_split_dir() / f"{name}_test_split1.txt")
        chosen = [v for v, s in entries if s == "train"][:per_subset] + [v for v, s in entries if s == "test"][
            :per_subset
        ]
        (folder / name).mkdir(parents=True)
        for file_name in chosen:
            shutil.copyfile(video, folder / name / file_name)
    return folder


def snapshot(tree: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(tree)): (p.stat().st_size, p.stat().st_mtime_ns) for p in tree.rglob("*")}


def test_attached_archives_are_found_and_acquired(tiny_archives, tmp_path):
    attached = tmp_path / "input" / "hmdb51-rars"
    attached.mkdir(parents=True)
    (tmp_path / "input" / "other-dataset" / "images").mkdir(parents=True)
    for name in ("hmdb51_org.rar", "test_train_splits.rar"):
        shutil.copyfile(tiny_archives / name, attached / name)
    copy = find_local_hmdb51(tmp_path / "input")
    assert copy is not None and copy.kind == "archives" and copy.path == attached
    config = load_config("demo", SYNTHETIC_ARCHIVES)
    first = acquire_dataset(config, "auto", tmp_path / "data", (tmp_path / "input",))
    assert "archives in" in first.message and first.summary["num_classes"] == 3
    assert first.config.data.root == str(tmp_path / "data")
    again = acquire_dataset(config, "auto", tmp_path / "data", (tmp_path / "input",))
    assert again.message == f"HMDB51 already at {tmp_path / 'data'}"


def test_an_extracted_tree_without_split_files_is_used_in_place(shared_data, tmp_path):
    tree = extracted_tree(tmp_path / "input" / "hmdb51" / "HMDB51", shared_data / "videos" / "test.avi")
    before = snapshot(tmp_path / "input")
    copy = find_local_hmdb51(tmp_path / "input")
    assert copy is not None and copy.kind == "extracted" and copy.path == tree and copy.split_dir is None
    config = load_config("hmdb51", ["data.on_missing=skip"])
    outcome = acquire_dataset(config, "auto", tmp_path / "data", (tmp_path / "input",))
    assert snapshot(tmp_path / "input") == before  # a read-only Kaggle input is never written to
    assert (tmp_path / "data" / "videos").resolve() == tree.resolve()  # linked, not copied
    summary = outcome.summary
    assert summary["num_classes"] == 51 and summary["counts"]["test"] == 6
    assert summary["counts"]["train"] + summary["counts"]["val"] == 6
    assert "extracted HMDB51 tree" in outcome.message and "no split files" in outcome.message


def test_split_files_beside_a_tree_are_checked_against_the_official_ones(shared_data, tmp_path):
    tree = extracted_tree(tmp_path / "input" / "hmdb51" / "videos", shared_data / "videos" / "test.avi", 1)
    splits = tmp_path / "input" / "hmdb51" / "testTrainMulti_7030_splits"
    shutil.copytree(builtin_hmdb51_split_dir(), splits)
    copy = find_local_hmdb51(tmp_path / "input")
    assert copy is not None and copy.split_dir == splits
    adopt_extracted_tree(tmp_path / "good", copy)
    assert sorted((tmp_path / "good" / "splits").rglob("*.txt")) and (tmp_path / "good" / "videos").is_dir()

    edited = splits / "catch_test_split2.txt"
    lines = edited.read_text().splitlines()
    edited.write_text("\n".join([lines[0].replace(" 1", " 2"), *lines[1:]]) + "\n")
    with pytest.raises(DatasetError, match="disagree with the official HMDB51 splits in 1 places"):
        adopt_extracted_tree(tmp_path / "bad", find_local_hmdb51(tmp_path / "input"))
    assert not (tmp_path / "bad" / "videos").exists() and not (tmp_path / "bad" / "splits").exists()
    assert tree.is_dir()


def test_a_folder_with_no_copy_is_one_clear_error(tmp_path):
    (tmp_path / "empty" / "nested").mkdir(parents=True)
    assert find_local_hmdb51(tmp_path / "empty") is None
    with pytest.raises(DatasetError, match="no HMDB51 archives or extracted class folders found under"):
        acquire_dataset(load_config("hmdb51"), str(tmp_path / "empty"), tmp_path / "data")


def test_the_command_uses_a_found_tree_and_says_what_it_did(shared_data, tmp_path, capsys):
    from actionmoe.cli import main

    extracted_tree(tmp_path / "input" / "ds" / "hmdb51_org", shared_data / "videos" / "test.avi", 1)
    assert (
        main(["data", "download", "hmdb51", "--root", str(tmp_path / "data"), "--find", str(tmp_path / "input")]) == 0
    )
    assert "linked 3 classes" in capsys.readouterr().out
    assert main(["data", "download", "hmdb51", "--root", str(tmp_path / "x"), "--find", str(tmp_path / "no")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
