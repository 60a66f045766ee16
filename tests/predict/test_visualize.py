"""Pictures of predictions: thumbnails keep the video's shape."""

from __future__ import annotations

import numpy as np

from actionmoe.data.decode import write_video
from actionmoe.predict.visualize import THUMBNAIL, middle_frame


def test_a_wide_video_is_letterboxed_not_squashed(tmp_path):
    """16:9 footage in a 4:3 cell: bands above and below, the picture at its own aspect ratio."""
    frames = np.full((5, 90, 160, 3), 200, dtype=np.uint8)  # 16:9, light grey
    video = tmp_path / "wide.avi"
    write_video(video, frames, 25.0)
    thumbnail = middle_frame(video)
    assert thumbnail.shape == (*THUMBNAIL, 3)
    rows = thumbnail.mean(axis=(1, 2))  # [H]
    picture = np.nonzero(rows > 150)[0]
    assert picture.size == round(THUMBNAIL[1] * 9 / 16)  # 90 rows of picture in a 160-wide cell
    assert rows[0] < 60 and rows[-1] < 60  # dark bands at the top and bottom
