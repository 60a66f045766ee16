"""List files -> VideoRecords: ``path LABEL`` per line, as MMAction2, PySlowFast and VideoMAE write them.

One video a line: ``relative/path.mp4 LABEL`` (the label after the last comma when the line has
one, else after the last run of spaces, so paths may hold spaces). LABEL is a class name, or an
integer index into ``classes_file`` (one class name a line, in label order). ``#`` starts a
comment line; blank lines are skipped. Relative paths are under the dataset root and may not
leave it; absolute paths are taken as they are.

Every line of every list is checked before any video is read; the problems are reported together,
each as ``FILE:LINE: what is wrong``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from actionmoe.data.splits import DatasetSplits, VideoRecord, stratified_holdout
from actionmoe.errors import DatasetError

MAX_LISTED_PROBLEMS = 5  # lines named in the error; the rest are counted


@dataclass(frozen=True)
class ListEntry:
    path: Path
    label: str  # as written: a class name or an integer index
    source: str  # "FILE:LINE", for messages


@dataclass
class ListProblems:
    lines: list[str] = field(default_factory=list)

    def add(self, where: str, problem: str) -> None:
        self.lines.append(f"{where}: {problem}")

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        shown = "; ".join(self.lines[:MAX_LISTED_PROBLEMS])
        more = len(self.lines) - MAX_LISTED_PROBLEMS
        raise DatasetError(shown + (f"; and {more} more lines like these" if more > 0 else ""))


def read_list(path: Path, root: Path, problems: ListProblems) -> list[ListEntry]:
    """The entries of one list file; bad lines go to ``problems`` (format, a path leaving the root)."""
    if not path.is_file():
        raise DatasetError(f"list file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"list file {path} is not UTF-8 text") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{path}:{number}"
        video, label = _split_line(stripped)
        if not video or not label:
            problems.add(where, "expected 'relative/path.mp4 LABEL' (or 'path,LABEL')")
            continue
        resolved = _resolve(video, root)
        if resolved is None:
            problems.add(where, f"{video} leaves the dataset root {root}")
            continue
        entries.append(ListEntry(resolved, label, where))
    return entries


def _split_line(line: str) -> tuple[str, str]:
    """(path, label): at the last comma when there is one, else at the last run of whitespace."""
    if "," in line:
        video, _, label = line.rpartition(",")
    else:
        parts = line.rsplit(maxsplit=1)
        video, label = (parts[0], parts[1]) if len(parts) == 2 else ("", "")
    return video.strip(), label.strip()


def _resolve(video: str, root: Path) -> Path | None:
    """The video's path; None for a relative path that leaves ``root`` (``..``)."""
    path = Path(video)
    if path.is_absolute():
        return path
    joined = Path(os.path.normpath(root / path))
    return joined if joined.is_relative_to(os.path.normpath(root)) else None


def read_classes_file(path: Path) -> tuple[str, ...]:
    """Class names, one a line, in label order (blank and ``#`` lines skipped)."""
    if not path.is_file():
        raise DatasetError(f"data.classes_file {path} does not exist")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    classes = tuple(name for name in names if name and not name.startswith("#"))
    if len(set(classes)) != len(classes) or not classes:
        raise DatasetError(f"data.classes_file {path} must name each class once, one a line")
    return classes


def label_records(
    entries: list[ListEntry], classes: tuple[str, ...], indexed: bool, problems: ListProblems
) -> list[VideoRecord]:
    """VideoRecords of ``entries``; unknown labels go to ``problems``.

    ``indexed``: the classes come from a classes file, so an integer label is an index into it.
    """
    labels = {name: index for index, name in enumerate(classes)}
    records = []
    for entry in entries:
        label = entry.label
        if label.isdigit() and not indexed:
            problems.add(entry.source, f"label {label} is a number: integer labels need data.classes_file")
            continue
        if label.isdigit():
            if int(label) >= len(classes):
                problems.add(
                    entry.source, f"label {label} is not an index of data.classes_file ({len(classes)} classes)"
                )
                continue
            label = classes[int(label)]
        elif label not in labels:
            problems.add(entry.source, f"label {label!r} is not a class of data.classes_file")
            continue
        records.append(VideoRecord(entry.path, labels[label], label))
    return records


def check_duplicates(subsets: dict[str, list[ListEntry]], problems: ListProblems) -> None:
    """A video listed twice (in one list, or in two of them) is a mistake that leaks test videos into training."""
    seen: dict[Path, str] = {}
    for entries in subsets.values():
        for entry in entries:
            if entry.path in seen:
                problems.add(entry.source, f"{entry.path} is already listed at {seen[entry.path]}")
            else:
                seen[entry.path] = entry.source


def classes_of(entries: list[ListEntry]) -> tuple[str, ...]:
    """The sorted class names of lists without a classes file."""
    return tuple(sorted({entry.label for entry in entries}))


def load_list_splits(
    root: Path, lists: dict[str, str], classes_file: str, on_missing: str, val_fraction: float, seed: int
) -> DatasetSplits:
    """Train / val / test from list files (``lists``: subset -> file; an empty val list: a holdout of train).

    Raises:
        DatasetError: a list or the classes file is missing, or lines are wrong (all of them named,
            ``FILE:LINE``): their format, a path leaving the root, an unknown label, a video listed
            twice, a missing video (unless ``on_missing`` is ``skip``).
    """
    problems = ListProblems()
    entries = {subset: read_list(Path(file), root, problems) for subset, file in lists.items() if file}
    check_duplicates(entries, problems)
    every = [entry for subset in entries.values() for entry in subset]
    classes = read_classes_file(Path(classes_file)) if classes_file else classes_of(every)
    missing = [entry for entry in every if not entry.path.is_file()]
    if on_missing != "skip":
        for entry in missing:
            problems.add(entry.source, f"{entry.path} does not exist (data.on_missing = skip leaves it out)")
    records = {
        subset: label_records([e for e in found if e.path.is_file()], classes, bool(classes_file), problems)
        for subset, found in entries.items()
    }
    problems.raise_if_any()
    train, test = records["train"], records["test"]
    val = records.get("val")
    if val is None:
        train, val = stratified_holdout(train, val_fraction, seed)
    return DatasetSplits(classes, tuple(train), tuple(val), tuple(test), tuple(e.path for e in missing))
