"""The metadata-JSONL layout of HMDB51 (the Hugging Face Hub copy, and Kaggle uploads of it).

    ROOT/Videos/<class>/<video>.avi
    ROOT/metadata_split{1,2,3}.jsonl    one record per video and line:
        {"video_path": "Videos/<class>/<video>.avi", "label": "<class>", "subset": 0 | 1 | 2}

``subset`` 1 = train, 2 = test, 0 = unused, as in the official split files. Pure parsing and
checking here; ``data.splits`` turns the records into VideoRecords.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from actionmoe.errors import DatasetError

SUBSETS = {0: None, 1: "train", 2: "test"}


@dataclass(frozen=True)
class MetadataRecord:
    video_path: str  # relative to the root, POSIX form
    label: str
    subset: str | None  # train | test | None (unused)

    @property
    def video_name(self) -> str:
        return PurePosixPath(self.video_path).name


def metadata_file(root: Path, split: int) -> Path:
    return root / f"metadata_split{split}.jsonl"


def has_metadata_layout(root: Path) -> bool:
    return metadata_file(root, 1).is_file()


def parse_metadata_file(path: Path) -> list[MetadataRecord]:
    """Every record of one ``metadata_split{N}.jsonl``.

    Raises:
        DatasetError: a missing file, or a line that is not such a record (the message names file and line).
    """
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; a metadata-JSONL dataset needs metadata_split1..3.jsonl")
    records, seen = [], set()
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        record = _parse_line(path, number, line)
        if record.video_path in seen:  # compared after normalising: ./Videos/x and Videos/x are one video
            raise DatasetError(f"{path}:{number}: video {record.video_path} is listed twice")
        seen.add(record.video_path)
        records.append(record)
    if not records:
        raise DatasetError(f"{path} holds no records; a metadata-JSONL dataset lists every video, one per line")
    return records


def _parse_line(path: Path, number: int, line: str) -> MetadataRecord:
    where = f"{path}:{number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not a JSON object ({exc.msg})") from exc
    if not isinstance(row, dict) or not {"video_path", "label", "subset"} <= set(row):
        raise DatasetError(f'{where}: expected {{"video_path", "label", "subset"}}, got {line.strip()[:80]!r}')
    video_path, label, subset = row["video_path"], row["label"], row["subset"]
    text = str(video_path).replace("\\", "/")
    parts = [part for part in PurePosixPath(text).parts if part != "."]  # ./Videos/x is Videos/x
    if not isinstance(label, str) or not label or len(parts) < 2 or ".." in parts or text.startswith("/"):
        raise DatasetError(f"{where}: expected a relative video_path and a class label, got {line.strip()[:80]!r}")
    if parts[-2] != label:
        raise DatasetError(f"{where}: label {label!r} but the video lies in the folder {parts[-2]!r}")
    if not isinstance(subset, int) or isinstance(subset, bool) or subset not in SUBSETS:
        raise DatasetError(f"{where}: subset must be 0 (unused), 1 (train) or 2 (test), got {subset!r}")
    return MetadataRecord("/".join(parts), label, SUBSETS[subset])


def official_mismatches(
    records: dict[int, list[MetadataRecord]], official: dict[tuple[int, str, str], str | None]
) -> list[str]:
    """Where the records' assignment differs from the official split files, per split, as readable lines.

    ``official`` maps (split, class, video) -> train | test | None, as ``data.splits.hmdb51_assignments``
    reads it. A video the official files do not list counts as unused; a label that is not an
    official class is reported too.
    """
    classes = {name for _, name, _ in official}
    problems = []
    for split, split_records in sorted(records.items()):
        listed = set()
        for record in split_records:
            if record.label not in classes:
                problems.append(f"split {split}: unknown label {record.label!r} ({record.video_path})")
                continue
            key = (split, record.label, record.video_name)
            listed.add(key)
            expected = official.get(key)
            if record.subset != expected:
                problems.append(
                    f"split {split}: {record.video_path} is {record.subset or 'unused'}, "
                    f"officially {expected or 'unused'}"
                )
        problems += [
            f"split {s}: {c}/{v} ({subset}) has no record"
            for (s, c, v), subset in sorted(official.items())
            if s == split and subset and (s, c, v) not in listed
        ]
    return problems
