"""List-file datasets: ``path LABEL`` lines as MMAction2 and PySlowFast write them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from actionmoe.config import load_config
from actionmoe.data.builders import build_splits
from actionmoe.errors import ConfigError, DatasetError
from tests.helpers import TINY, one_line, run

CLASSES = ("move_left", "move_right", "move_up")


@pytest.fixture(scope="module")
def list_root(dataset_root, tmp_path_factory) -> Path:
    """The test videos renamed with spaces and non-ASCII letters, in one flat folder, and three list files."""
    root = tmp_path_factory.mktemp("lists") / "my videos"
    (root / "clips").mkdir(parents=True)
    rows = {"train": [], "test": []}
    for label, name in enumerate(CLASSES):
        for index, video in enumerate(sorted((dataset_root / "videos" / name).iterdir())):
            target = root / "clips" / f"vidéo {name} n°{index}.avi"
            shutil.copyfile(video, target)
            subset = "test" if index < 3 else "train"
            rows[subset].append((f"clips/{target.name}", name if subset == "train" else str(label)))
    (root / "train.txt").write_text(
        "# my training videos\n\n" + "".join(f"{path} {label}\n" for path, label in rows["train"]), encoding="utf-8"
    )
    (root / "test.csv").write_text("".join(f"{path},{label}\n" for path, label in rows["test"]), encoding="utf-8")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def list_config(root: Path, *extra: str):
    files = [
        "data.dataset=list",
        f"data.root={root}",
        f"data.train_list={root / 'train.txt'}",
        f"data.test_list={root / 'test.csv'}",
        f"data.classes_file={root / 'classes.txt'}",
    ]
    return [*files, *TINY, *extra]


def test_a_list_dataset_trains_evaluates_and_predicts(list_root, tmp_path, capsys):
    config = load_config("demo", list_config(list_root))
    splits = build_splits(config.data)
    assert splits.classes == CLASSES and len(splits.test) == 9 and len(splits.train) + len(splits.val) == 21
    assert all(record.class_name == CLASSES[record.label] for record in splits.test)  # integer labels resolved
    argv = ["train", "--config", "demo", "--out", tmp_path / "run"]
    for item in list_config(list_root, "train.epochs=1"):
        argv += ["--set", item]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    assert metrics["videos"] == 9 and set(metrics["video_level"]["per_class"]) == set(CLASSES)
    video = next((list_root / "clips").iterdir())
    code, out, err = run(capsys, "predict", video, "--checkpoint", tmp_path / "run" / "best.safetensors", "--json")
    assert code == 0 and json.loads(out)[0]["predictions"][0]["label"] in CLASSES


BAD_LINES = [
    ("clips/only-a-path.avi\n", "expected 'relative/path.mp4 LABEL'"),
    ("../outside.avi move_up\n", "leaves the dataset root"),
    ("{first} jumping\n", "label 'jumping' is not a class of data.classes_file"),
    ("{first} 7\n", "label 7 is not an index of data.classes_file (3 classes)"),
    ("{first} move_up\n{first} move_up\n", "is already listed at"),
    ("clips/not-there.avi move_up\n", "does not exist (data.on_missing = skip leaves it out)"),
]


@pytest.mark.parametrize("text, message", BAD_LINES)
def test_each_bad_line_is_named_by_file_and_line(list_root, tmp_path, text, message):
    first = "clips/vidéo move_left n°5.avi"  # a training video: test.csv does not list it
    bad = list_root / f"bad-{abs(hash(text))}.txt"
    bad.write_text("# header\n" + text.format(first=first))
    config = load_config("demo", list_config(list_root, f"data.train_list={bad}"))
    with pytest.raises(DatasetError) as info:
        build_splits(config.data)
    assert f"{bad}:" in str(info.value) and message in str(info.value)
    line = str(info.value).split(f"{bad}:")[1].split(":")[0]
    assert line.isdigit() and int(line) >= 2  # the line number, after the header comment


def test_integer_labels_need_a_classes_file(list_root):
    config = load_config("demo", list_config(list_root, "data.classes_file="))
    with pytest.raises(DatasetError, match=r"test.csv:1: label 0 is a number: integer labels need data.classes_file"):
        build_splits(config.data)


def test_a_missing_video_can_be_skipped(list_root, tmp_path):
    listed = list_root / "with-missing.txt"
    listed.write_text((list_root / "train.txt").read_text() + "clips/gone.avi move_up\n")
    config = load_config("demo", list_config(list_root, f"data.train_list={listed}", "data.on_missing=skip"))
    splits = build_splits(config.data)
    assert [p.name for p in splits.missing] == ["gone.avi"]


def test_a_list_dataset_without_its_lists_is_a_config_error(capsys, list_root):
    with pytest.raises(ConfigError, match="data.train_list / data.test_list"):
        load_config("demo", ["data.dataset=list", f"data.train_list={list_root / 'train.txt'}"])
    code, _, err = run(capsys, "data", "summary", "--root", list_root, "--dataset", "list")
    assert code == 2 and one_line(err)
