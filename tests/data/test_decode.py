import numpy as np
import pytest

from actionmoe.data.decode import (
    available_decoders,
    get_reader,
    read_clip,
    read_uniform_frames,
    video_duration,
    write_video,
)
from actionmoe.data.sampling import uniform_indices
from actionmoe.errors import VideoDecodeError

REAL = {"test.avi": 164, "test.mp4": 300, "arm_wrestling.mp4": 280, "ntu_drink_water.avi": 103}


@pytest.fixture(scope="module")
def reference(shared_data) -> dict[str, np.ndarray]:
    """Every frame of each real video, decoded by PyAV directly (independent of our readers)."""
    import av

    frames = {}
    for name in REAL:
        with av.open(str(shared_data / "videos" / name)) as container:
            frames[name] = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return frames


@pytest.mark.parametrize("name", sorted(REAL))
@pytest.mark.parametrize("decoder", available_decoders())
def test_real_videos_decode_to_the_same_frames(shared_data, reference, name, decoder):
    path = shared_data / "videos" / name
    reader = get_reader(decoder)
    clip = read_clip(reader, path, lambda n: uniform_indices(n, 16), None)
    expected = reference[name][uniform_indices(clip.num_frames, 16)]
    assert len(reference[name]) == REAL[name]
    assert clip.frames.shape == expected.shape and clip.frames.dtype == np.uint8
    if decoder == "torchcodec":  # system FFmpeg: the last N-VOP of test.avi decodes to nothing
        assert clip.num_frames in (REAL[name], REAL[name] - 1)
    else:
        assert clip.num_frames == REAL[name]
    error = np.abs(clip.frames.astype(int) - expected.astype(int)).mean(axis=(1, 2, 3))
    assert error.max() < (12 if decoder == "torchcodec" else 1.0), error


def test_resize_at_decode_time(shared_data):
    frames = read_uniform_frames(shared_data / "videos" / "ntu_drink_water.avi", 8, (128, 171))
    assert frames.shape == (8, 128, 171, 3)


def test_header_that_overstates_the_length_is_resampled(tmp_path):
    path = tmp_path / "v.avi"
    write_video(path, np.full((10, 32, 32, 3), 100, np.uint8), fps=10)

    class LyingReader:
        name = "liar"
        inner = get_reader("opencv")

        def frame_count(self, _path):
            return 40

        def read(self, path, indices, size):
            return self.inner.read(path, indices, size)

    clip = read_clip(LyingReader(), path, lambda n: uniform_indices(n, 16), None)
    assert clip.num_frames == 10 and len(clip.frames) == 16


def test_grayscale_like_video_gives_three_channels(tmp_path):
    path = tmp_path / "gray.avi"
    gray = np.repeat(np.linspace(0, 255, 32 * 32, dtype=np.uint8).reshape(1, 32, 32, 1), 5, axis=0)
    write_video(path, np.repeat(gray, 3, axis=-1), fps=5)
    for decoder in available_decoders():
        assert read_uniform_frames(path, 4, (16, 16), decoder).shape == (4, 16, 16, 3)


EXPECTED_ERRORS = {
    "empty.avi": "empty file",
    "random.avi": "cannot open|no decodable|cannot decode",
    "text.mp4": "cannot open|no decodable|cannot decode",
    "folder.avi": "is a directory",
    "missing.avi": "does not exist",
}


@pytest.mark.parametrize("decoder", available_decoders())
@pytest.mark.parametrize("name", sorted(EXPECTED_ERRORS))
def test_corrupt_inputs_raise_the_project_error(corrupt_videos, decoder, name):
    with pytest.raises(VideoDecodeError, match=EXPECTED_ERRORS[name]) as info:
        read_uniform_frames(corrupt_videos[name], 16, (32, 32), decoder)
    assert str(corrupt_videos[name]) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("decoder", available_decoders())
def test_truncated_files_give_their_decodable_part_or_a_clear_error(corrupt_videos, decoder):
    for name in ("half.avi", "half.mp4"):
        try:
            frames = read_uniform_frames(corrupt_videos[name], 16, (32, 32), decoder)
        except VideoDecodeError as exc:
            assert name in str(exc)
        else:
            assert frames.shape == (16, 32, 32, 3)
    frames = read_uniform_frames(corrupt_videos["one_frame.avi"], 16, (24, 32), decoder)
    assert frames.shape == (16, 24, 32, 3) and np.abs(frames.astype(int) - 200).max() < 10


def test_unknown_and_unavailable_decoder():
    with pytest.raises(VideoDecodeError, match="unknown decoder 'ffmpeg'"):
        get_reader("ffmpeg")


def test_video_duration_from_the_header(tmp_path, shared_data):
    path = tmp_path / "three_seconds.avi"
    write_video(path, np.zeros((36, 24, 32, 3), np.uint8), fps=12)
    assert video_duration(path) == pytest.approx(3.0, abs=0.1)
    assert video_duration(shared_data / "videos" / "test.mp4") == pytest.approx(10.0, abs=0.5)
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"not a video" * 50)
    assert video_duration(garbage) == 0.0
