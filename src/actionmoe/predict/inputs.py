"""What a user names on the command line -> the video files to predict: files, folders, glob patterns."""

from __future__ import annotations

import glob
from pathlib import Path

from actionmoe.data.splits import VIDEO_EXTENSIONS
from actionmoe.errors import DatasetError


def is_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders and glob patterns expanded (recursively) to their video files, sorted.

    Raises:
        DatasetError: an input that does not exist, or inputs that hold no video at all.
    """
    found: list[Path] = []
    for text in inputs:
        path = Path(text)
        if is_glob(text):
            found += sorted(Path(p) for p in glob.glob(text, recursive=True) if _is_video(Path(p)))
        elif path.is_dir():
            found += sorted(p for p in path.rglob("*") if _is_video(p))
        elif path.exists():
            found.append(path)
        else:
            raise DatasetError(f"{path} does not exist")
    if not found:
        raise DatasetError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in {', '.join(inputs)}")
    return list(dict.fromkeys(found))


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS
