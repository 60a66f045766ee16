"""Video file I/O: the only module that imports a video library.

``probe_video`` checks a file is a video (a container with a video stream, not text or a still
image) before any decode; ``frame_count`` and ``video_fps`` read its header; ``stream_frames`` and
``seek_frames`` serve timelines. Readers return RGB uint8 frames shaped [T, H, W, C] for requested
frame indices, resized right after decoding (so a 1080p video never holds more than one full-size
frame), plus the number of frames the file really holds. AVI headers sometimes overstate the frame
count; ``read_clip`` notices when the stream ends early and samples again from the true count.

A truncated file yields the frames decodable before the damage; a file with no decodable frame
raises ``VideoDecodeError``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from actionmoe.data.sampling import uniform_indices
from actionmoe.errors import VideoDecodeError

Size = tuple[int, int]  # (height, width)


@dataclass(frozen=True)
class DecodedClip:
    frames: np.ndarray  # [T, H, W, 3] uint8 RGB, one per requested index that exists
    num_frames: int  # frames the stream really holds (exact when the stream was read to its end)
    complete: bool  # every requested index was found


class VideoReader(Protocol):
    name: str

    def frame_count(self, path: Path) -> int:
        """Frame count from the container header (may be wrong or 0)."""

    def read(self, path: Path, indices: np.ndarray, size: Size | None) -> DecodedClip:
        """Decode the frames at ``indices`` (sorted or not, repeats allowed)."""


def _quiet_ffmpeg() -> None:
    """FFmpeg's own log lines ("moov atom not found") stay off the terminal and the server log:
    every failure reaches the user once, as our one-line reason. OpenCV's FFmpeg reads its level
    when it opens its first file; a level the user set is kept."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    try:
        import av
    except ImportError:
        return
    av.logging.set_level(None)


_quiet_ffmpeg()


def unopenable_reason(path: Path) -> str:
    """Why a file no decoder could open, as the user should read it."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    if head[4:8] == b"ftyp":  # an MP4/MOV whose index (the moov atom) is missing: a cut copy or download
        return "truncated or damaged (no moov atom: the MP4's index is missing); copy or download it again"
    return "cannot open (not a video, or an unsupported container)"


def check_readable(path: Path) -> None:
    """Raise a one-line VideoDecodeError for the file-system problems a user can cause."""
    if not path.exists():
        raise VideoDecodeError(f"{path}: file does not exist")
    if path.is_dir():
        raise VideoDecodeError(f"{path}: is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(f"{path}: permission denied")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")


# FFmpeg demuxers that turn files which are not videos into frames: text (tty renders .txt/.ans/.nfo
# files as ANSI art) and still images (image2 and the *_pipe image demuxers).
NOT_VIDEO_DEMUXERS = ("tty", "image2", "image2pipe")
NOT_VIDEO_CODECS = ("ansi", "text", "subrip", "ass")


@dataclass(frozen=True)
class VideoProbe:
    """What the container's headers say about its first video stream (read with PyAV, nothing decoded)."""

    demuxer: str
    codec: str
    frames: int  # the header's frame count; 0 when it does not say


def probe_video(path: Path) -> VideoProbe | None:
    """The one check every reader, the timeline, the service and the datasets run before decoding.

    Refuses what is not a video: a file FFmpeg would only render as text or a still image, a
    container without a video stream, or one whose video stream has no decoder here (an SVG
    saved as .mp4). Returns None without PyAV or for a file PyAV cannot open at all (the reader
    then reports its own reason).

    Raises:
        VideoDecodeError: a missing, unreadable or empty file, or one that is not a video.
    """
    check_readable(path)
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            demuxer = container.format.name
            streams = list(container.streams.video)
            contexts = [stream.codec_context for stream in streams]
            frames = int(streams[0].frames or 0) if streams else 0
    except (av.FFmpegError, OSError, ValueError):
        return None
    if demuxer in NOT_VIDEO_DEMUXERS or demuxer.endswith("_pipe"):
        raise VideoDecodeError(f"{path}: not a video (FFmpeg reads it as {demuxer!r}: text or a still image)")
    codecs = [context.name for context in contexts if context is not None]
    if not streams:
        raise VideoDecodeError(f"{path}: not a video (no video stream)")
    if not codecs:
        raise VideoDecodeError(f"{path}: not a video (no decodable video stream)")
    if all(codec in NOT_VIDEO_CODECS for codec in codecs):
        raise VideoDecodeError(f"{path}: not a video (no video stream, only {codecs})")
    return VideoProbe(demuxer, codecs[0], frames)


def check_is_video(path: Path) -> None:
    """``probe_video`` for its refusals alone."""
    probe_video(path)


def video_rotation(path: Path) -> int:
    """Degrees counter-clockwise the frames are turned to stand upright (the display matrix; 0 when none).

    Every reader applies it (OpenCV by itself, PyAV through ``frame_rgb``): one rotation policy.
    """
    import av

    try:
        with av.open(str(path)) as container:
            return int(getattr(next(container.decode(video=0)), "rotation", 0) or 0) % 360
    except (av.FFmpegError, OSError, ValueError, StopIteration):
        return 0


def upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """[H, W, 3] turned ``rotation`` degrees counter-clockwise, as players (and OpenCV) show the video."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(frame, turns)) if turns else frame


def opencv_can_open(path: Path) -> bool:
    """OpenCV's FFmpeg backend crashes the process (SIGSEGV) on a file name that is not valid UTF-8."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def resize_frame(frame: np.ndarray, size: Size | None) -> np.ndarray:
    """Resize one [H, W, 3] uint8 frame to ``size`` (area filter when shrinking, bilinear otherwise)."""
    if size is None or frame.shape[:2] == tuple(size):
        return np.ascontiguousarray(frame)
    import cv2

    shrinking = frame.shape[0] > size[0] and frame.shape[1] > size[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(frame, (size[1], size[0]), interpolation=interpolation)


def _gather(
    frames: Iterator[tuple[int, Callable[[], np.ndarray]]], indices: np.ndarray, size: Size | None
) -> DecodedClip:
    """Walk a sequential stream once, converting only the frames that are asked for."""
    wanted = {int(i) for i in indices}
    last_wanted = max(wanted)
    found: dict[int, np.ndarray] = {}
    count = 0
    for index, convert in frames:
        count = index + 1
        if index in wanted:
            found[index] = resize_frame(convert(), size)
        if index >= last_wanted:
            break
    complete = len(found) == len(wanted)
    kept = [found[int(i)] for i in indices if int(i) in found]
    empty = np.zeros((0, *(size or (0, 0)), 3), dtype=np.uint8)
    return DecodedClip(np.stack(kept) if kept else empty, count, complete)


class OpenCVReader:
    """Sequential grab/retrieve: decodes every frame, converts colour only for the wanted ones."""

    name = "opencv"

    def frame_count(self, path: Path) -> int:
        import cv2

        if not opencv_can_open(path):
            return PyAVReader().frame_count(path)
        capture = cv2.VideoCapture(str(path))
        try:
            return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        finally:
            capture.release()

    def read(self, path: Path, indices: np.ndarray, size: Size | None) -> DecodedClip:
        """OpenCV's frames; PyAV's when OpenCV cannot take the name or decodes nothing (AV1 has no
        software decoder in OpenCV's FFmpeg), so the default decoder reads what PyAV reads."""
        import cv2

        if not opencv_can_open(path):
            return PyAVReader().read(path, indices, size)
        capture = cv2.VideoCapture(str(path))
        try:
            clip = _gather(self._stream(capture), indices, size) if capture.isOpened() else None
        finally:
            capture.release()
        if clip is not None and clip.num_frames > 0:
            return clip
        if importlib.util.find_spec("av") is not None:
            with contextlib.suppress(VideoDecodeError):  # PyAV cannot either: OpenCV's reason stands
                return PyAVReader().read(path, indices, size)
        if clip is None:
            raise VideoDecodeError(f"{path}: {unopenable_reason(path)}")
        return clip

    @staticmethod
    def _stream(capture) -> Iterator[tuple[int, Callable[[], np.ndarray]]]:
        import cv2

        index = 0
        while capture.grab():
            yield index, lambda: cv2.cvtColor(capture.retrieve()[1], cv2.COLOR_BGR2RGB)
            index += 1


class PyAVReader:
    """FFmpeg through PyAV, decoding the first video stream in order."""

    name = "pyav"

    def frame_count(self, path: Path) -> int:
        import av

        try:
            with av.open(str(path)) as container:
                return int(container.streams.video[0].frames) if container.streams.video else 0
        except (av.FFmpegError, OSError, ValueError):
            return 0

    def read(self, path: Path, indices: np.ndarray, size: Size | None) -> DecodedClip:
        import av

        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise VideoDecodeError(f"{path}: has no video stream")
                return _gather(self._stream(container), indices, size)
        except av.InvalidDataError:
            raise VideoDecodeError(f"{path}: {unopenable_reason(path)}") from None
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise VideoDecodeError(f"{path}: cannot decode ({exc})") from exc

    @staticmethod
    def _stream(container) -> Iterator[tuple[int, Callable[[], np.ndarray]]]:
        import av

        frames = container.decode(video=0)
        index = 0
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except (av.FFmpegError, ValueError):  # damaged tail: keep what decoded before it
                return
            yield index, lambda frame=frame: frame_rgb(frame)
            index += 1


def frame_rgb(frame) -> np.ndarray:
    """A PyAV frame as upright RGB [H, W, 3] uint8 (its display matrix applied, as OpenCV does)."""
    return upright(frame.to_ndarray(format="rgb24"), int(getattr(frame, "rotation", 0) or 0))


class TorchCodecReader:
    """torchcodec (needs the system FFmpeg libraries): seeks to the wanted frames."""

    name = "torchcodec"

    def frame_count(self, path: Path) -> int:
        return int(self._decoder(path).metadata.num_frames or 0)

    def read(self, path: Path, indices: np.ndarray, size: Size | None) -> DecodedClip:
        decoder = self._decoder(path)
        available = self._decodable(decoder, int(decoder.metadata.num_frames or 0))
        present = [int(i) for i in indices if int(i) < available]
        if not present:
            return DecodedClip(np.zeros((0, *(size or (0, 0)), 3), dtype=np.uint8), available, False)
        batch = decoder.get_frames_at(indices=present).data  # [N, C, H, W] uint8
        frames = np.stack([resize_frame(f.permute(1, 2, 0).numpy(), size) for f in batch])
        return DecodedClip(frames, available, len(present) == len(indices))

    @staticmethod
    def _decodable(decoder, claimed: int) -> int:
        """Frames really decodable: the header can count packets that decode to nothing (N-VOPs in AVI)."""
        count = claimed
        while count > 0:
            try:
                decoder.get_frame_at(count - 1)
                return count
            except (RuntimeError, IndexError):
                count -= 1
        return 0

    @staticmethod
    def _decoder(path: Path):
        from torchcodec.decoders import VideoDecoder

        try:
            return VideoDecoder(str(path), seek_mode="approximate")
        except (RuntimeError, ValueError) as exc:
            raise VideoDecodeError(f"{path}: cannot open ({exc})") from exc


READERS: dict[str, Callable[[], VideoReader]] = {
    "opencv": OpenCVReader,
    "pyav": PyAVReader,
    "torchcodec": TorchCodecReader,
}
IMPORT_NAMES = {"opencv": "cv2", "pyav": "av", "torchcodec": "torchcodec.decoders"}


def available_decoders() -> list[str]:
    """Importable readers, in the order ``auto`` prefers them."""
    found = []
    for name, module in IMPORT_NAMES.items():
        try:
            __import__(module)
        except Exception:  # torchcodec raises RuntimeError/OSError when the system FFmpeg is absent
            continue
        found.append(name)
    return found


def get_reader(name: str = "auto") -> VideoReader:
    """A reader by name; ``auto`` picks the first available of opencv, pyav, torchcodec.

    OpenCV and PyAV return identical frames on HMDB-like XviD AVIs; torchcodec (through the system
    FFmpeg) decodes some of their frames differently and drops a trailing not-coded frame, so it is
    used only when asked for.
    """
    available = available_decoders()
    if name == "auto":
        if not available:
            raise VideoDecodeError("no video decoder installed: pip install opencv-python-headless av")
        name = available[0]
    if name not in READERS:
        raise VideoDecodeError(f"unknown decoder {name!r}; choose auto or one of {', '.join(READERS)}")
    if name not in available:
        raise VideoDecodeError(f"decoder {name!r} is not available here; available: {', '.join(available) or 'none'}")
    return READERS[name]()


def read_clip(reader: VideoReader, path: Path, sample: Callable[[int], np.ndarray], size: Size | None) -> DecodedClip:
    """Decode the frames ``sample(num_frames)`` picks, trusting the header only until the stream disagrees.

    Returns:
        DecodedClip whose ``frames`` has exactly ``len(sample(n))`` frames.
    """
    check_is_video(path)  # checks the file is there and readable first
    count = reader.frame_count(path)
    if count <= 0:  # no usable header: read to the end once to count
        count = reader.read(path, np.array([np.iinfo(np.int32).max]), size).num_frames
    if count <= 0:
        raise VideoDecodeError(f"{path}: no decodable video frames")
    clip = reader.read(path, sample(count), size)
    if not clip.complete:  # header overstated the length, or the file is truncated
        if clip.num_frames <= 0:
            raise VideoDecodeError(f"{path}: no decodable video frames")
        clip = reader.read(path, sample(clip.num_frames), size)
    if not clip.complete or len(clip.frames) == 0:
        raise VideoDecodeError(f"{path}: frames vanished between two reads")
    return clip


def read_uniform_frames(path: Path, count: int, size: Size, decoder: str = "auto") -> np.ndarray:
    """``count`` frames spread evenly over the whole video, resized to ``size``; [count, H, W, C] uint8."""
    return read_clip(get_reader(decoder), path, lambda n: uniform_indices(n, count), size).frames


def write_video(path: Path, frames: np.ndarray, fps: float, fourcc: str = "XVID") -> None:
    """Encode RGB frames [T, H, W, 3] uint8 to ``path`` (AVI with XviD by default, as HMDB51 ships)."""
    import cv2

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height))
    if not writer.isOpened():
        raise VideoDecodeError(f"OpenCV cannot write {fourcc} video to {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def stream_frames(path: Path, size: Size | None) -> Iterator[np.ndarray]:
    """Every frame of ``path`` in order, resized to ``size`` as it is decoded: one full-size frame in memory.

    PyAV when it is installed, else OpenCV. For long videos (timelines); clips use ``read_clip``.

    Raises:
        VideoDecodeError: the file cannot be opened as a video.
    """
    check_is_video(path)  # checks the file is there and readable first
    try:
        import av
    except ImportError:
        yield from _stream_opencv(path, size)
        return
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: has no video stream")
            for _, convert in PyAVReader._stream(container):
                yield resize_frame(convert(), size)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoDecodeError(f"{path}: cannot decode ({exc})") from exc


def _stream_opencv(path: Path, size: Size | None) -> Iterator[np.ndarray]:
    import cv2

    if not opencv_can_open(path):
        raise VideoDecodeError(f"{path}: a file name that is not UTF-8 needs PyAV (pip install av); rename it")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoDecodeError(f"{path}: {unopenable_reason(path)}")
    try:
        for _, convert in OpenCVReader._stream(capture):
            yield resize_frame(convert(), size)
    finally:
        capture.release()


def video_fps(path: Path) -> float:
    """Frames per second from the container (PyAV, else OpenCV); 25 when the file does not say."""
    fps = 0.0
    try:
        import av

        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate if container.streams.video else None
            fps = float(rate) if rate else 0.0
    except ImportError:
        import cv2

        capture = cv2.VideoCapture(str(path))
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        capture.release()
    except Exception:  # PyAV raises several error types for unreadable files; the decode reports them
        fps = 0.0
    return fps if fps > 0 else 25.0


def video_duration(path: Path) -> float:
    """Length in seconds from the container's header (PyAV, else OpenCV); 0.0 when it does not say."""
    try:
        import av

        with av.open(str(path)) as container:
            if container.duration:
                return float(container.duration) / av.time_base
            stream = container.streams.video[0] if container.streams.video else None
            return float(stream.duration * stream.time_base) if stream is not None and stream.duration else 0.0
    except ImportError:
        import cv2

        capture = cv2.VideoCapture(str(path))
        frames, fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        return float(frames / fps) if frames > 0 and fps > 0 else 0.0
    except Exception:  # PyAV raises several error types for unreadable files; the decode reports them
        return 0.0


def seek_frames(
    path: Path, spans: list[tuple[int, int]], fps: float, size: Size | None, stats: dict | None = None
) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
    """For each (first, last) frame span, seek there with PyAV and decode just that span: (first, {index: frame}).

    For timelines whose windows leave gaps (stride longer than the window): decoding starts at the
    key frame before each span instead of running through the whole video. Frame indices come from
    the frames' timestamps. ``stats["decoded"]`` counts the frames decoded.

    Raises:
        VideoDecodeError: the file cannot be decoded; ImportError without PyAV.
    """
    import av

    check_is_video(path)  # checks the file is there and readable first
    stats = stats if stats is not None else {}
    stats.setdefault("decoded", 0)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for first, last in spans:
                container.seek(int(first / fps / stream.time_base), stream=stream, backward=True, any_frame=False)
                yield first, _decode_span(container, stream, first, last, fps, size, stats)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoDecodeError(f"{path}: cannot decode ({exc})") from exc


def _decode_span(
    container, stream, first: int, last: int, fps: float, size: Size | None, stats: dict
) -> dict[int, np.ndarray]:
    frames: dict[int, np.ndarray] = {}
    for frame in container.decode(stream):
        stats["decoded"] += 1
        index = round(float(frame.pts * stream.time_base) * fps) if frame.pts is not None else first + len(frames)
        if index > last:
            break
        if index >= first:
            frames[index] = resize_frame(frame_rgb(frame), size)
    return frames


def frame_count(video: Path) -> int:
    """Frames in the header, or duration x rate; 0 when neither says (PyAV).

    Raises:
        VideoDecodeError: the file cannot be opened.
    """
    import av

    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            if stream.duration and stream.average_rate:
                return round(float(stream.duration * stream.time_base) * float(stream.average_rate))
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise VideoDecodeError(f"{video}: {unopenable_reason(video)} ({exc})") from None
    return 0


LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
LIVE_TIMEOUT_S = 5.0  # opening and reading a network stream; a silent source is a dropped one


@dataclass(frozen=True)
class LiveSource:
    """Where ``actionmoe stream`` reads: a webcam (an index or /dev/videoN), a network URL or a file."""

    target: str  # what FFmpeg opens
    kind: str  # webcam | network | file
    input_format: str | None = None  # v4l2 for webcams


def live_source(text: str) -> LiveSource:
    """Resolve ``0``, ``/dev/video0``, ``rtsp://...``/``http://...``/``udp://...`` or a file path.

    Raises:
        VideoDecodeError: a webcam index or device that does not exist, a file that is not a video.
    """
    if text.isdigit() or text.startswith("/dev/video"):
        device = f"/dev/video{text}" if text.isdigit() else text
        if not Path(device).exists():
            raise VideoDecodeError(f"no webcam {text}: {device} does not exist")
        return LiveSource(device, "webcam", "v4l2")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in LIVE_SCHEMES:
        return LiveSource(text, "network")
    if scheme:
        raise VideoDecodeError(f"{text}: unsupported stream protocol {scheme!r}; use one of {', '.join(LIVE_SCHEMES)}")
    check_is_video(Path(text))
    return LiveSource(text, "file")


class LiveReader:
    """Frames of a live source as they arrive: (seconds on the source's clock, RGB frame resized to ``size``).

    PyAV (FFmpeg) reads devices, network streams and files alike. With ``realtime`` a file is read
    at its own frame rate, as if it were live.

    Raises (on entering):
        VideoDecodeError: the source cannot be opened or holds no video stream.
    """

    def __init__(self, source: LiveSource, size: Size | None, realtime: bool = False) -> None:
        self.source, self.size, self.realtime = source, size, realtime
        self.container = None
        self.fps = 25.0

    def __enter__(self) -> LiveReader:
        import av

        _quiet_ffmpeg()
        try:
            self.container = av.open(
                self.source.target, format=self.source.input_format, timeout=(LIVE_TIMEOUT_S, LIVE_TIMEOUT_S)
            )
        except (av.FFmpegError, OSError, ValueError) as exc:
            if self.source.kind == "file":
                raise VideoDecodeError(f"{self.source.target}: {unopenable_reason(Path(self.source.target))}") from None
            raise VideoDecodeError(f"{self.source.target}: cannot open ({exc})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoDecodeError(f"{self.source.target}: has no video stream")
        stream = self.container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 25.0
        return self

    def __exit__(self, *exc) -> None:
        if self.container is not None:
            self.container.close()

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """Until the source ends, or its data stops making sense (a cut stream ends like a finished one)."""
        started, first = time.monotonic(), None
        for index, convert in PyAVReader._stream(self.container):
            seconds = index / self.fps
            if self.realtime:
                first = started if first is None else first
                delay = first + seconds - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield seconds, resize_frame(convert(), self.size)
