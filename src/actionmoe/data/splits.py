"""Split files -> lists of VideoRecord: HMDB51 (official files, or the Hub copy's JSON lines), UCF101, class folders.

Labels are indices into the sorted class names. A seeded, stratified validation holdout is carved
from the training list so that the test split is never used for model selection.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from actionmoe.data.metadata_jsonl import (
    MetadataRecord,
    has_metadata_layout,
    metadata_file,
    official_mismatches,
    parse_metadata_file,
)
from actionmoe.errors import DatasetError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v", ".gif")  # GIF: animated
HMDB51_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>[123])\.txt$")
HMDB51_IDS = {"0": None, "1": "train", "2": "test"}


@dataclass(frozen=True)
class VideoRecord:
    path: Path
    label: int
    class_name: str


@dataclass(frozen=True)
class DatasetSplits:
    """Train / val / test records of one split, plus what the split files name but disk lacks."""

    classes: tuple[str, ...]
    train: tuple[VideoRecord, ...]
    val: tuple[VideoRecord, ...]
    test: tuple[VideoRecord, ...]
    missing: tuple[Path, ...] = field(default=())
    val_is_test: bool = False


@dataclass(frozen=True)
class SplitOptions:
    split: int = 1
    val_fraction: float = 0.1
    val_on_test: bool = False
    on_missing: str = "error"
    seed: int = 0
    split_csv: str = ""


def load_splits(dataset: str, root: Path, options: SplitOptions = SplitOptions()) -> DatasetSplits:
    """Read the records of ``options.split`` for ``dataset`` ('hmdb51', 'ucf101' or 'folder')."""
    readers: dict[str, Callable[[Path, SplitOptions], tuple[tuple[str, ...], list, list]]] = {
        "hmdb51": _read_hmdb51,
        "hmdb51_jsonl": _read_hmdb51_jsonl,
        "ucf101": _read_ucf101,
        "folder": _read_folder,
    }
    if dataset not in readers:
        raise DatasetError(f"unknown dataset {dataset!r}; choose one of {', '.join(readers)}")
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist; run `actionmoe data download` first")
    classes, train, test = readers[dataset](root, options)
    train, test, missing = _handle_missing(train, test, options.on_missing)
    if options.val_on_test:
        return DatasetSplits(classes, tuple(train), tuple(test), tuple(test), missing, val_is_test=True)
    train, val = stratified_holdout(train, options.val_fraction, options.seed, SOURCE_VIDEO.get(dataset))
    return DatasetSplits(classes, tuple(train), tuple(val), tuple(test), missing)


def hmdb51_source(path: Path) -> str:
    """The source video an HMDB51 clip was cut from: its name without the trailing clip index (``..._goo_2``)."""
    return re.sub(r"_\d+$", "", Path(path).stem)


def ucf101_group(path: Path) -> str:
    """UCF101's group (``v_ApplyEyeMakeup_g08_c01`` -> ``g08``): clips of one group share actor and scene."""
    match = re.search(r"_(g\d+)_c\d+$", Path(path).stem)
    return match.group(1) if match else Path(path).stem


# Datasets whose clips come in groups cut from one source: a validation holdout takes whole groups.
SOURCE_VIDEO: dict[str, Callable[[Path], str]] = {
    "hmdb51": hmdb51_source,
    "hmdb51_jsonl": hmdb51_source,
    "ucf101": ucf101_group,
}


def stratified_holdout(
    records: Sequence[VideoRecord], fraction: float, seed: int, source: Callable[[Path], str] | None = None
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """Move ``fraction`` (0 <= fraction < 1) of each class, at least one video when a class has two, into a holdout.

    With ``source``, clips cut from the same source video move together (whole groups, until the
    class's share is reached), so the holdout holds no near-duplicate of a training clip; a class
    whose clips all come from one source keeps them all. Without it every clip is its own group.
    """
    by_class: dict[int, list[VideoRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.label, str(r.path))):
        by_class[record.label].append(record)
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label in sorted(by_class):
        members = by_class[label]
        groups = _source_groups(members, source)  # [[index into members], ...] in order of appearance
        order = rng.permutation(len(groups))
        count = int(round(len(members) * fraction))
        if fraction > 0 and count == 0 and len(members) >= 2:
            count = 1
        chosen: set[int] = set()
        for taken, group in enumerate(order):
            if len(chosen) >= count or taken == len(groups) - 1:  # the last group stays in training
                break
            chosen.update(groups[group])
        held += [members[i] for i in sorted(chosen)]
        kept += [members[i] for i in range(len(members)) if i not in chosen]
    return kept, held


def _source_groups(members: list[VideoRecord], source: Callable[[Path], str] | None) -> list[list[int]]:
    if source is None:
        return [[index] for index in range(len(members))]
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(members):
        groups.setdefault(source(record.path), []).append(index)
    return list(groups.values())


def class_counts(records: Sequence[VideoRecord], num_classes: int) -> list[int]:
    """Videos per class label, [num_classes]."""
    counts = [0] * num_classes
    for record in records:
        counts[record.label] += 1
    return counts


def inverse_frequency(counts: Sequence[int]) -> list[float]:
    """Class weights N / (C * n_c): 1 for every class when balanced; 0 for a class without videos."""
    total = sum(counts)
    present = sum(1 for count in counts if count)
    return [total / (present * count) if count else 0.0 for count in counts]


def _handle_missing(train, test, on_missing: str):
    missing = tuple(r.path for r in [*train, *test] if not r.path.exists())
    if missing and on_missing == "error":
        raise DatasetError(
            f"{len(missing)} videos named in the split files are missing, e.g. {missing[0]}; "
            "re-extract the dataset or pass --on-missing skip"
        )
    absent = set(missing)
    return [r for r in train if r.path not in absent], [r for r in test if r.path not in absent], missing


def builtin_hmdb51_split_dir() -> Path:
    """The official HMDB51 split files shipped inside the package (the 6,371 videos used in some split)."""
    return Path(str(resources.files("actionmoe.data") / "hmdb51_splits"))


def find_hmdb51_split_dir(root: Path) -> Path:
    """The folder holding ``<class>_test_split<N>.txt`` under ``root`` (searched two levels deep)."""
    for candidate in (root / "splits" / "testTrainMulti_7030_splits", root / "testTrainMulti_7030_splits", root):
        if any(candidate.glob("*_test_split1.txt")):
            return candidate
    for candidate in sorted(root.glob("*/*")):
        if candidate.is_dir() and any(candidate.glob("*_test_split1.txt")):
            return candidate
    raise DatasetError(f"no HMDB51 split files (<class>_test_split1.txt) found under {root}")


def find_class_folder_root(root: Path, classes: Sequence[str]) -> Path:
    """Where the ``<class>/`` video folders live: ``root/videos``, ``root/hmdb51_org`` or ``root``."""
    for candidate in (root / "videos", root / "hmdb51_org", root):
        if candidate.is_dir() and any((candidate / c).is_dir() for c in classes):
            return candidate
    return root / "videos"


def hmdb51_class_names(split_dir: Path) -> tuple[str, ...]:
    """Sorted class names; every class must have all three split files."""
    found: dict[str, set[int]] = defaultdict(set)
    for path in split_dir.iterdir():
        match = HMDB51_SPLIT_FILE.match(path.name)
        if match:
            found[match["cls"]].add(int(match["split"]))
    for name, splits in sorted(found.items()):
        if splits != {1, 2, 3}:
            absent = sorted({1, 2, 3} - splits)
            raise DatasetError(f"split file {name}_test_split{absent[0]}.txt is missing from {split_dir}")
    return tuple(sorted(found))


def parse_hmdb51_split_file(path: Path) -> list[tuple[str, str | None]]:
    """Lines ``<video>.avi <id>`` -> [(video, 'train' | 'test' | None)]; tolerant of CRLF and trailing spaces."""
    entries, seen = [], set()
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or parts[1] not in HMDB51_IDS:
            raise DatasetError(f"{path}:{number}: malformed line {raw!r}; expected '<video>.avi <0|1|2>'")
        if parts[0] in seen:
            raise DatasetError(f"{path}:{number}: video {parts[0]} is listed twice")
        seen.add(parts[0])
        entries.append((parts[0], HMDB51_IDS[parts[1]]))
    return entries


def hmdb51_assignments(split_dir: Path) -> dict[tuple[int, str, str], str | None]:
    """(split, class, video) -> 'train' | 'test' | None for every line of every split file in ``split_dir``."""
    assignments = {}
    for name in hmdb51_class_names(split_dir):
        for split in (1, 2, 3):
            for video, subset in parse_hmdb51_split_file(split_dir / f"{name}_test_split{split}.txt"):
                assignments[(split, name, video)] = subset
    return assignments


def differences_from_builtin(split_dir: Path) -> list[str] | None:
    """How the split files in ``split_dir`` differ from the official ones shipped in the package.

    Returns None when ``split_dir`` is not HMDB51's (other class names, e.g. the synthetic
    dataset). A video the shipped files do not list must be unused (0) in every split: they name
    the 6,371 videos used in some split, not all 6,766.
    """
    builtin_dir = builtin_hmdb51_split_dir()
    if hmdb51_class_names(split_dir) != hmdb51_class_names(builtin_dir):
        return None
    found, official = hmdb51_assignments(split_dir), hmdb51_assignments(builtin_dir)
    problems = [
        f"split {s} {c}/{v}: {found.get((s, c, v)) or 'absent or unused'} instead of {subset}"
        for (s, c, v), subset in sorted(official.items())
        if found.get((s, c, v)) != subset
    ]
    problems += [
        f"split {s} {c}/{v}: {subset} but unused in the official files"
        for (s, c, v), subset in sorted(found.items())
        if subset and (s, c, v) not in official
    ]
    return problems


def _read_hmdb51(root: Path, options: SplitOptions):
    if has_metadata_layout(root) and not _has_split_files(root):  # the Hub copy: same dataset, other layout
        return _read_hmdb51_jsonl(root, options)
    split_dir = find_hmdb51_split_dir(root)
    classes = hmdb51_class_names(split_dir)
    video_root = find_class_folder_root(root, classes)
    subsets: dict[str, list[VideoRecord]] = {"train": [], "test": []}
    for label, name in enumerate(classes):
        for video, subset in parse_hmdb51_split_file(split_dir / f"{name}_test_split{options.split}.txt"):
            if subset:
                subsets[subset].append(VideoRecord(video_root / name / video, label, name))
    return classes, subsets["train"], subsets["test"]


def _has_split_files(root: Path) -> bool:
    try:
        find_hmdb51_split_dir(root)
    except DatasetError:
        return False
    return True


def _read_hmdb51_jsonl(root: Path, options: SplitOptions):
    """The metadata-JSONL layout (see ``data.metadata_jsonl``), checked against the official split files."""
    records = {split: parse_metadata_file(metadata_file(root, split)) for split in (1, 2, 3)}
    check_against_official(records, root)
    classes = tuple(sorted({record.label for record in records[1]}))
    labels = {name: index for index, name in enumerate(classes)}
    subsets: dict[str, list[VideoRecord]] = {"train": [], "test": []}
    for record in records[options.split]:
        if record.label not in labels:
            raise DatasetError(
                f"{metadata_file(root, options.split)}: label {record.label!r} is not in split 1's classes"
            )
        if record.subset:
            subsets[record.subset].append(VideoRecord(root / record.video_path, labels[record.label], record.label))
    return classes, subsets["train"], subsets["test"]


def check_against_official(records: dict[int, list[MetadataRecord]], root: Path) -> None:
    """HMDB51 records must assign every video as the official split files do (other datasets are not checked).

    Raises:
        DatasetError: with the number of disagreements and the first few.
    """
    official_dir = builtin_hmdb51_split_dir()
    official_classes = set(hmdb51_class_names(official_dir))
    labels = {record.label for split_records in records.values() for record in split_records}
    if len(labels & official_classes) * 2 < len(labels):  # not HMDB51 (the synthetic dataset, another set)
        return
    problems = official_mismatches(records, hmdb51_assignments(official_dir))
    if problems:
        raise DatasetError(
            f"the metadata files in {root} disagree with the official HMDB51 splits in "
            f"{len(problems)} places (e.g. {'; '.join(problems[:2])})"
        )


def _read_ucf101(root: Path, options: SplitOptions):
    list_dir = next((d for d in (root / "ucfTrainTestlist", root) if (d / "classInd.txt").is_file()), None)
    if list_dir is None:
        raise DatasetError(f"no ucfTrainTestlist/classInd.txt under {root}")
    classes = _read_class_index(list_dir / "classInd.txt")
    video_root = find_class_folder_root(root / "UCF-101" if (root / "UCF-101").is_dir() else root, classes)
    labels = {name: i for i, name in enumerate(classes)}
    train = _read_ucf_list(list_dir / f"trainlist0{options.split}.txt", video_root, labels)
    test = _read_ucf_list(list_dir / f"testlist0{options.split}.txt", video_root, labels)
    return classes, train, test


def _read_class_index(path: Path) -> tuple[str, ...]:
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetError(f"{path}:{number}: malformed line {line!r}; expected '<index> <class>'")
        pairs.append((int(parts[0]), parts[1]))
    return tuple(name for _, name in sorted(pairs))


def _read_ucf_list(path: Path, video_root: Path, labels: dict[str, int]) -> list[VideoRecord]:
    if not path.is_file():
        raise DatasetError(f"split list {path} does not exist")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        class_name = parts[0].replace("\\", "/").split("/")[0]
        if class_name not in labels:
            raise DatasetError(f"{path}:{number}: unknown class {class_name!r}")
        records.append(VideoRecord(video_root / parts[0], labels[class_name], class_name))
    return records


def _read_folder(root: Path, options: SplitOptions):
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise DatasetError(f"{root} has no class folders; expected {root}/<class>/<video>")
    labels = {name: i for i, name in enumerate(classes)}
    records = [
        VideoRecord(path, labels[name], name)
        for name in classes
        for path in sorted((root / name).iterdir())
        if path.suffix.lower() in VIDEO_EXTENSIONS
    ]
    if options.split_csv:
        return (classes, *_split_by_csv(records, root, Path(options.split_csv)))
    train, test = stratified_holdout(records, 0.3, options.seed + options.split)
    return classes, train, test


def _split_by_csv(records: list[VideoRecord], root: Path, csv_path: Path):
    """CSV rows ``relative/path,subset`` with subset train or test; unlisted videos are unused."""
    if not csv_path.is_file():
        raise DatasetError(f"split CSV {csv_path} does not exist")
    by_path = {os.path.relpath(r.path, root).replace(os.sep, "/"): r for r in records}
    subsets: dict[str, list[VideoRecord]] = {"train": [], "test": []}
    with open(csv_path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].startswith("#") or row == ["path", "subset"]:
                continue
            if len(row) != 2 or row[1].strip() not in subsets or row[0].strip() not in by_path:
                raise DatasetError(
                    f"{csv_path}:{number}: expected '<class>/<video>,train|test' naming a video under {root}"
                )
            subsets[row[1].strip()].append(by_path[row[0].strip()])
    return subsets["train"], subsets["test"]


def summarize(splits: DatasetSplits) -> dict:
    """Counts per subset and class, plus missing and unreadable files, as plain JSON-able data."""
    subsets = {"train": splits.train, "val": splits.val, "test": splits.test}
    unreadable = sorted(
        {str(r.path) for r in [*splits.train, *splits.test] if r.path.exists() and not _readable(r.path)}
    )
    per_class = {name: dict.fromkeys(subsets, 0) for name in splits.classes}
    for subset, records in subsets.items():
        for name, count in Counter(r.class_name for r in records).items():
            per_class[name][subset] = count
    return {
        "classes": list(splits.classes),
        "num_classes": len(splits.classes),
        "counts": {subset: len(records) for subset, records in subsets.items()},
        "val_is_test": splits.val_is_test,
        "per_class": per_class,
        "missing": [str(p) for p in splits.missing],
        "unreadable": unreadable,
    }


def format_summary(summary: dict, split: int) -> str:
    """``summarize``'s result as the few lines ``actionmoe data summary`` prints."""
    counts = summary["counts"]
    val_note = " (validation = test, as in the original notebook)" if summary["val_is_test"] else ""
    lines = [
        f"split {split}: {summary['num_classes']} classes, train {counts['train']}, val {counts['val']}, "
        f"test {counts['test']}{val_note}"
    ]
    if summary["missing"]:
        lines.append(f"missing videos skipped: {len(summary['missing'])} (e.g. {summary['missing'][0]})")
    if summary["unreadable"]:
        lines.append(f"unreadable videos: {len(summary['unreadable'])} (e.g. {summary['unreadable'][0]})")
    return "\n".join(lines)


def _readable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK) and path.stat().st_size > 0
