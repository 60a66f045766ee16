"""Long videos as a timeline: overlapping windows, each classified like a test clip, merged into segments.

    actionmoe predict match.mp4 --checkpoint best.safetensors --window 2.0 --stride 1.0 --out timeline.json

A window of W frames is sampled exactly as a whole test video is (``presample_frames`` uniform
frames, then the test views). Overlapping windows: the video is decoded once, in order
(``data.decode.stream_frames``), keeping only the frames pending windows still need, so memory
stays bounded for an hour of footage. Windows with gaps between them: PyAV seeks to each
(``data.decode.seek_frames``). A video shorter than one window gives one window: the plain prediction of the file.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from actionmoe.data.decode import frame_count, probe_video, seek_frames, stream_frames, video_fps
from actionmoe.data.sampling import uniform_indices
from actionmoe.data.workers import batched
from actionmoe.errors import PredictionStoppedError, UsageError, VideoDecodeError
from actionmoe.files import check_output_file, pyplot, save_figure, write_atomically, write_json
from actionmoe.predict.predictor import UNKNOWN, Prediction, Predictor, answer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float
    predictions: list[Prediction]


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    label: str
    score: float  # mean top-1 score over the segment's windows


@dataclass(frozen=True)
class Timeline:
    source: str
    fps: float
    window_frames: int
    stride_frames: int
    windows: list[Window]
    probabilities: np.ndarray  # [windows, classes], for the plot
    classes: tuple[str, ...]
    min_confidence: float = 0.0  # a window whose top probability is not above it is unknown

    def answers(self) -> list[str]:
        """Each window's answer: its top class, or ``unknown``."""
        return [answer(w.predictions, self.min_confidence) or UNKNOWN for w in self.windows]

    def segments(self) -> list[Segment]:
        """Consecutive windows with the same top label, merged into segments; unknown windows belong to none.

        Overlapping windows would give overlapping segments; instead each window speaks for the
        span around its centre, up to halfway to its neighbours' centres (from 0 for the first,
        to its end for the last), so one moment has one label. Without unknown windows the
        segments tile the video; an unknown window leaves a gap and ends the segment before it.
        """
        spans, answers = self._own_spans(), self.answers()
        merged: list[list[int]] = []
        for index, label in enumerate(answers):
            if label == UNKNOWN:
                merged.append([])  # ends the run before it
            elif merged and merged[-1] and answers[merged[-1][-1]] == label:
                merged[-1].append(index)
            else:
                merged.append([index])
        merged = [run for run in merged if run]
        return [
            Segment(
                spans[run[0]][0],
                spans[run[-1]][1],
                self.windows[run[0]].predictions[0].label,
                float(np.mean([self.windows[i].predictions[0].score for i in run])),
            )
            for run in merged
        ]

    def _own_spans(self) -> list[tuple[float, float]]:
        """(start_s, end_s) each window speaks for: consecutive, never overlapping."""
        centres = [(w.start_s + w.end_s) / 2 for w in self.windows]
        cuts = [(a + b) / 2 for a, b in zip(centres, centres[1:])]
        return list(zip([0.0, *cuts], [*cuts, self.windows[-1].end_s]))

    def to_json(self) -> dict:
        return {
            "path": self.source,
            "fps": self.fps,
            "window_frames": self.window_frames,
            "stride_frames": self.stride_frames,
            "min_confidence": self.min_confidence,
            "windows": [
                {
                    "start_s": w.start_s,
                    "end_s": w.end_s,
                    "answer": label,
                    "predictions": [asdict(p) for p in w.predictions],
                }
                for w, label in zip(self.windows, self.answers())
            ],
            "segments": [asdict(s) for s in self.segments()],
        }


MAX_SPAN_S = 86_400.0  # one day of video
MAX_SPAN_FRAMES = 10_000_000


def parse_span(text: str, name: str) -> tuple[float, str]:
    """``2.0`` or ``2.0s`` (seconds) or ``48f`` (frames) -> (value, unit), at most a day or 10 million frames."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([sf]?)\s*", str(text))
    if match is None or float(match[1]) <= 0:
        raise UsageError(f"{name} must be a positive number of seconds (2.0) or frames (48f), got {text!r}")
    value, unit = float(match[1]), "frames" if match[2] == "f" else "seconds"
    if value > (MAX_SPAN_FRAMES if unit == "frames" else MAX_SPAN_S):
        raise UsageError(f"{name} must be at most {MAX_SPAN_S:g} s or {MAX_SPAN_FRAMES}f, got {text!r}")
    return value, unit


def predict_timeline(
    predictor: Predictor,
    video: Path,
    window: str,
    stride: str,
    top_k: int = 3,
    batch_size: int = 8,
    seek: bool | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Timeline:
    """Classify overlapping windows of ``video``; ``window`` and ``stride`` as ``parse_span`` reads them.

    Raises:
        UsageError: a window or stride that is not positive.
        VideoDecodeError: the file cannot be decoded.
        PredictionStoppedError: ``should_stop()`` turned true (it is asked before every batch of windows).
    """
    window_span, stride_span = parse_span(window, "window"), parse_span(stride, "stride")
    probe_video(video)  # not a video (text, audio only, no decoder): one line before any path decodes
    fps = video_fps(video)
    window_frames = span_frames(*window_span, fps)
    stride_frames = span_frames(*stride_span, fps)
    offsets = window_offsets(predictor, window_frames)  # [V, clip_len] frame offsets inside a window
    windows, probabilities, seen = [], [], {"frames": 0}
    for batch in batched(_views(video, offsets, window_frames, stride_frames, fps, predictor, seek, seen), batch_size):
        starts, views = [start for start, _ in batch], [view for _, view in batch]
        if should_stop():
            raise PredictionStoppedError(f"the timeline of {video} was stopped after {len(windows)} windows")
        probs = predictor.video_probs(views)  # [B, classes]
        probabilities.append(probs)
        windows += [
            Window(start / fps, (start + window_frames) / fps, predictor.rank(p, top_k))
            for start, p in zip(starts, probs)
        ]
    if not windows:  # shorter than one window: the plain prediction of the whole file
        return _single_window(predictor, video, fps, window_frames, stride_frames, top_k, seen["frames"])
    return Timeline(
        str(video),
        fps,
        window_frames,
        stride_frames,
        windows,
        np.concatenate(probabilities),
        predictor.classes,
        predictor.min_confidence,
    )


def _views(
    video: Path,
    offsets: np.ndarray,
    window_frames: int,
    stride_frames: int,
    fps: float,
    predictor: Predictor,
    seek: bool | None,
    seen: dict,
) -> Iterator[tuple[int, np.ndarray]]:
    """Window views: by seeking to each window when windows leave gaps (PyAV), else by one pass in order.

    ``seek`` forces one way (None: seek when the stride is longer than the window and PyAV is there);
    ``seen["frames"]`` counts the frames of a single pass, for a video shorter than one window.
    """
    if seek is None:
        seek = stride_frames > window_frames and importlib.util.find_spec("av") is not None
    if not seek:
        return _window_views(
            _counted(stream_frames(video, predictor.preprocessing.resize), seen), offsets, stride_frames
        )
    return _seeked_views(video, offsets, stride_frames, fps, predictor.preprocessing.resize)


def _counted(frames: Iterator[np.ndarray], seen: dict) -> Iterator[np.ndarray]:
    for frame in frames:
        seen["frames"] += 1
        yield frame


def _seeked_views(video: Path, offsets: np.ndarray, stride: int, fps: float, size) -> Iterator[tuple[int, np.ndarray]]:
    last = int(offsets.max())
    total = frame_count(video)
    spans = [(start, start + last) for start in range(0, max(total - last, 0), stride)]
    found = 0
    try:
        for start, frames in seek_frames(video, spans, fps, size):
            wanted = [start + int(o) for o in offsets.reshape(-1)]
            if not all(index in frames for index in wanted):  # the stream ended early (a header overstated it)
                return
            found += 1
            yield start, np.stack([frames[i] for i in wanted]).reshape(*offsets.shape, *frames[wanted[0]].shape)
    except VideoDecodeError:
        if not found:
            raise
        log.info("%s is damaged after %d windows; the timeline ends there", video, found)  # as plain predict does


def span_frames(value: float, unit: str, fps: float) -> int:
    """A span of ``parse_span`` in frames at ``fps``: at least one."""
    return max(1, round(value if unit == "frames" else value * fps))


def window_offsets(predictor: Predictor, window_frames: int) -> np.ndarray:
    """The frames a window of ``window_frames`` contributes to each view, as a whole test video would."""
    pre = predictor.preprocessing
    rng = np.random.default_rng(0)
    if pre.presample_frames <= 0:
        return pre.indices(window_frames, False, rng)
    presampled = uniform_indices(window_frames, pre.presample_frames)  # [P]
    return presampled[pre.indices(len(presampled), False, rng)]  # [V, clip_len]


def _window_views(frames: Iterator[np.ndarray], offsets: np.ndarray, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, uint8 views [V, clip_len, H, W, 3]) of every complete window, keeping only frames still needed."""
    wanted = np.unique(offsets)
    last = int(offsets.max())
    kept: dict[int, np.ndarray] = {}
    next_start = 0
    for index, frame in enumerate(frames):
        if any(
            0 <= index - start <= last and (index - start) in wanted for start in range(next_start, index + 1, stride)
        ):
            kept[index] = frame
        while next_start + last <= index:  # the window starting at next_start has all its frames
            yield (
                next_start,
                np.stack([kept[next_start + int(o)] for o in offsets.reshape(-1)]).reshape(
                    *offsets.shape, *frame.shape
                ),
            )
            next_start += stride
            for old in [i for i in kept if i < next_start]:
                del kept[old]


def _single_window(
    predictor: Predictor, video: Path, fps: float, window_frames: int, stride_frames: int, top_k: int, frames: int
) -> Timeline:
    probs = predictor.probabilities(video)
    frames = frames or sum(1 for _ in stream_frames(video, (8, 8)))  # counted already unless windows were seeked
    log.info(
        "%s (%.1f s) is shorter than one window (%.1f s): one window over the whole video",
        video,
        frames / fps,
        window_frames / fps,
    )
    window = Window(0.0, frames / fps, predictor.rank(probs, top_k))
    return Timeline(
        str(video),
        fps,
        window_frames,
        stride_frames,
        [window],
        probs[None],
        predictor.classes,
        predictor.min_confidence,
    )


TIMELINE_SUFFIXES = (".json", ".csv", ".png")


def check_timeline_output(out: Path) -> None:
    """Refuse an unusable timeline ``--out`` (and the plot beside it) before anything is decoded."""
    check_output_file(out, "--out", TIMELINE_SUFFIXES)
    check_output_file(out.with_suffix(".png"), "--out")


def write_timeline(timeline: Timeline, out: Path) -> list[Path]:
    """``out`` as .json (windows and segments) or .csv (one row per window), and ``out`` with .png (the plot).

    ``out`` ending in .png writes the plot alone.
    """
    check_timeline_output(out)
    written = []
    if out.suffix.lower() == ".json":
        written.append(write_json(out, timeline.to_json()))
    elif out.suffix.lower() == ".csv":
        written.append(write_atomically(out, lambda path: _write_csv(timeline, path)))
    plot = out.with_suffix(".png")
    plot_timeline(timeline, plot)
    return [*written, plot]


def _write_csv(timeline: Timeline, path: Path) -> None:
    top_k = len(timeline.windows[0].predictions)
    ranks = [f"{kind}_{r}" for r in range(1, top_k + 1) for kind in ("label", "score")]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["start_s", "end_s", "answer", *ranks])
        for window, label in zip(timeline.windows, timeline.answers()):
            ranked = [item for p in window.predictions for item in (p.label, f"{p.score:.6f}")]
            writer.writerow([f"{window.start_s:.3f}", f"{window.end_s:.3f}", label, *ranked])


def plot_timeline(timeline: Timeline, path: Path, classes_shown: int = 5) -> None:
    """The scores over time (window centres) of the classes that reach the highest scores, up to five."""
    plt = pyplot()
    probabilities = timeline.probabilities  # [W, C]
    shown = np.argsort(-probabilities.max(axis=0), kind="stable")[:classes_shown]
    centres = [(w.start_s + w.end_s) / 2 for w in timeline.windows]
    fig, ax = plt.subplots(figsize=(10, 3.4))
    for c in shown:
        ax.plot(centres, probabilities[:, c], marker="o" if len(centres) < 40 else None, label=timeline.classes[c])
    for window, label in zip(timeline.windows, timeline.answers()):
        if label == UNKNOWN:  # shaded: below the minimum confidence
            ax.axvspan(window.start_s, window.end_s, color="0.85", zorder=0, linewidth=0)
    if timeline.min_confidence > 0:
        ax.axhline(timeline.min_confidence, color="0.4", linestyle=":", linewidth=1, label="minimum confidence")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(
        f"{Path(timeline.source).name}: {len(timeline.windows)} windows of "
        f"{timeline.window_frames / timeline.fps:.3g} s every {timeline.stride_frames / timeline.fps:.3g} s"
    )
    fig.tight_layout()
    save_figure(fig, path)


def timeline_summary(timeline: Timeline) -> str:
    lines = [f"{s.start_s:7.2f}-{s.end_s:7.2f} s  {s.label} {s.score:.3f}" for s in timeline.segments()]
    unknown = timeline.answers().count(UNKNOWN)
    if unknown:
        lines.append(
            f"{unknown} of {len(timeline.windows)} windows unknown (top score not above {timeline.min_confidence:g})"
        )
    return "\n".join(lines)


def timeline_json(timeline: Timeline) -> str:
    return json.dumps(timeline.to_json(), indent=2)
