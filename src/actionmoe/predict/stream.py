"""``actionmoe stream``: classify a live source (webcam, RTSP/HTTP/UDP stream, or a file) window by window.

A reader thread takes frames as they arrive (``data.decode.LiveReader``) into a bounded buffer;
the main loop classifies each complete window (``--window``, every ``--stride``, sampled exactly
as a timeline samples its windows) and reports it as one JSON object: its start and end on the
source's clock, the top-k, and the latency from the window's last frame to the answer.

It never falls behind in silence. On a live source (a webcam, a network stream, a file with
``--realtime``) a model slower than real time skips to the newest complete window and counts the
windows it skipped; frames the buffer had to drop are counted too. A file read as fast as it
decodes gets every window, as the timeline does. A network source that drops is reopened with
exponential backoff (``reconnects`` times); the summary says how the stream ended.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from actionmoe.data.decode import LiveReader, LiveSource, live_source
from actionmoe.errors import UsageError, VideoDecodeError
from actionmoe.predict.predictor import Predictor, answer
from actionmoe.predict.timeline import parse_span, span_frames, window_offsets

MAX_WINDOW_S = 30.0  # the buffer holds at most this much video (frames are kept resized)


@dataclass(frozen=True)
class StreamOptions:
    window: str = "2.0"  # seconds, or frames with an f: 48f
    stride: str = "1.0"
    top_k: int = 3
    realtime: bool = False  # read a file at its own frame rate, as a live source
    reconnects: int = 3  # reopen a dropped network source this many times (backoff 1, 2, 4 ... s)
    backoff_s: float = 1.0


@dataclass
class StreamSummary:
    windows: int = 0  # answered
    skipped_windows: int = 0  # complete windows not classified because the model was behind
    frames: int = 0  # received
    dropped_frames: int = 0  # received but pushed out of the buffer before use
    reconnects: int = 0
    seconds: float = 0.0
    ended: str = ""  # why it stopped

    def line(self) -> str:
        return (
            f"stream ended ({self.ended}): {self.windows} windows answered, {self.skipped_windows} skipped "
            f"(model behind), {self.frames} frames, {self.dropped_frames} dropped, {self.reconnects} reconnects, "
            f"{self.seconds:.1f} s"
        )


def check_stream_options(options: StreamOptions) -> None:
    """Raises UsageError for a window or stride that is not positive or a window longer than the buffer holds."""
    window, stride = parse_span(options.window, "--window"), parse_span(options.stride, "--stride")
    for (value, unit), name in ((window, "--window"), (stride, "--stride")):
        if unit == "seconds" and value > MAX_WINDOW_S:
            raise UsageError(f"{name} must be at most {MAX_WINDOW_S:g} s (the frames the buffer holds), got {value:g}")
    if options.top_k < 1 or options.reconnects < 0 or options.backoff_s < 0:
        raise UsageError("--top-k must be at least 1, --reconnects and the backoff 0 or more")


class FrameBuffer:
    """Frames by absolute index, the oldest dropped (live) or the reader held back (a file read at full speed)."""

    def __init__(self, capacity: int, live: bool) -> None:
        self.capacity, self.live = capacity, live
        self.frames: collections.OrderedDict[int, tuple[float, np.ndarray]] = collections.OrderedDict()
        self.received = 0
        self.dropped = 0
        self.closed = False
        self.condition = threading.Condition()

    def put(self, frame: np.ndarray) -> None:
        with self.condition:
            while not self.live and len(self.frames) >= self.capacity and not self.closed:
                self.condition.wait()
            if len(self.frames) >= self.capacity:
                self.frames.popitem(last=False)
                self.dropped += 1
            self.frames[self.received] = (time.monotonic(), frame)
            self.received += 1
            self.condition.notify_all()

    def wait_for(self, count: int) -> int:
        """Block until ``count`` frames were received or the source closed; returns the frames received."""
        with self.condition:
            while self.received < count and not self.closed:
                self.condition.wait(timeout=0.5)
            return self.received

    def take(self, indices: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The frames at ``indices`` [N] and the arrival time of the last, or None when one was dropped."""
        with self.condition:
            if any(int(i) not in self.frames for i in np.unique(indices)):
                return None
            frames = np.stack([self.frames[int(i)][1] for i in indices])
            return frames, self.frames[int(indices.max())][0]

    def release(self, before: int) -> None:
        with self.condition:
            for index in [i for i in self.frames if i < before]:
                del self.frames[index]
            self.condition.notify_all()

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify_all()


def run_stream(
    predictor: Predictor,
    source_text: str,
    options: StreamOptions,
    emit: Callable[[dict], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> StreamSummary:
    """Classify ``source_text`` window by window until it ends, ``should_stop()`` or Ctrl-C; the summary.

    Raises:
        UsageError: bad options.
        VideoDecodeError: the source cannot be opened at all (a missing webcam, not a video, no answer).
    """
    check_stream_options(options)
    source = live_source(source_text)
    started = time.monotonic()
    summary = StreamSummary()
    reader = LiveReader(source, predictor.preprocessing.resize, options.realtime).__enter__()  # fails here, at once
    window_frames = span_frames(*parse_span(options.window, "--window"), reader.fps)
    stride_frames = span_frames(*parse_span(options.stride, "--stride"), reader.fps)
    live = source.kind != "file" or options.realtime
    buffer = FrameBuffer(capacity=window_frames + 2 * stride_frames + int(reader.fps), live=live)
    thread = threading.Thread(target=_read, args=(reader, source, options, buffer, summary), daemon=True)
    thread.start()
    try:
        _classify(predictor, buffer, window_frames, stride_frames, reader.fps, options, emit, summary, should_stop)
    except KeyboardInterrupt:
        summary.ended = "interrupted"
    finally:
        buffer.close()
    summary.frames, summary.dropped_frames = buffer.received, buffer.dropped
    summary.seconds = time.monotonic() - started
    summary.ended = summary.ended or "stopped"
    return summary


def _read(reader: LiveReader, source: LiveSource, options: StreamOptions, buffer: FrameBuffer, summary) -> None:
    """The reader thread: frames into the buffer; a network source that drops is reopened with backoff."""
    size, attempt = reader.size, 0
    while reader is not None:
        try:
            for _, frame in reader.frames():
                if buffer.closed:
                    return
                buffer.put(frame)
                attempt = 0  # frames flow again: the next drop starts the backoff afresh
            summary.ended = "source ended"
        except VideoDecodeError as exc:
            summary.ended = f"source failed: {exc}"
        finally:
            reader.__exit__(None, None, None)
        reader = None
        while source.kind == "network" and reader is None and attempt < options.reconnects and not buffer.closed:
            time.sleep(options.backoff_s * 2**attempt)
            attempt += 1
            summary.reconnects += 1
            try:
                reader = LiveReader(source, size, options.realtime).__enter__()
            except VideoDecodeError:
                reader = None
        if source.kind == "network" and reader is None and not buffer.closed:
            summary.ended = f"the source dropped and did not come back after {attempt} reconnects"
    buffer.close()


def _classify(predictor, buffer, window_frames, stride_frames, fps, options, emit, summary, should_stop) -> None:
    offsets = window_offsets(predictor, window_frames)  # [V, clip_len] frames inside a window
    end = window_frames  # the next window covers frames [end - window_frames, end)
    while not should_stop():
        received = buffer.wait_for(end)
        if received < end:
            if buffer.closed:
                return
            continue
        if buffer.live and received - end >= stride_frames:  # behind: jump to the newest complete window
            behind = (received - end) // stride_frames
            summary.skipped_windows += behind
            end += behind * stride_frames
        start = end - window_frames
        taken = buffer.take(start + offsets.reshape(-1))
        if taken is None:  # a frame it needs was dropped
            summary.skipped_windows += 1
        else:
            frames, arrived = taken
            views = frames.reshape(*offsets.shape, *frames.shape[1:])  # [V, clip_len, H, W, 3]
            probs = predictor.video_probs([views])[0]
            ranked = predictor.rank(probs, options.top_k)
            emit(
                {
                    "start_s": start / fps,
                    "end_s": end / fps,
                    "answer": answer(ranked, predictor.min_confidence),  # "unknown" below the minimum confidence
                    "predictions": [asdict(p) for p in ranked],
                    "latency_s": time.monotonic() - arrived,
                }
            )
            summary.windows += 1
        end += stride_frames
        buffer.release(end - window_frames)
