"""Timelines: every option checked before decoding, and odd files met by the seeking path (reliability
round 3, item 16)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from actionmoe.predict.predictor import Predictor
from tests.helpers import one_line, run


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--window", "100000000000000000000000000000000"], "window must be at most"),
        (["--window", "1", "--top-k", "0"], "--top-k"),
        (["--window", "1", "--batch-size", "0"], "--batch-size"),
        (["--window", "1", "--out", "tl.txt"], "--out must end in"),
    ],
)
def test_timeline_options_are_refused_before_any_decoding(
    capsys, trained_run, shared_data, tmp_path, monkeypatch, extra, message
):
    import actionmoe.predict.timeline as timeline

    def never(*args, **kwargs):
        raise AssertionError("decoded before the options were checked")

    monkeypatch.setattr(timeline, "stream_frames", never)
    monkeypatch.setattr(timeline, "seek_frames", never)
    monkeypatch.chdir(tmp_path)
    video = shared_data / "videos" / "test.avi"
    code, out, err = run(capsys, "predict", video, "--checkpoint", trained_run / "best.safetensors", *extra)
    assert code == 2 and one_line(err) and message in err and out == "", err


def test_a_png_out_writes_the_plot(capsys, trained_run, shared_data, tmp_path):
    out = tmp_path / "timeline.png"
    video = shared_data / "videos" / "test.avi"
    code, _, err = run(capsys, "predict", video, "--checkpoint", trained_run / "best.safetensors", "--window", "2",
                       "--out", out)  # fmt: skip
    assert code == 0 and out.stat().st_size > 1000, err


def audio_only(path: Path) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for _ in range(20):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("kind", ["text", "audio"])
def test_sparse_windows_of_a_file_that_is_not_a_video_are_one_line(capsys, trained_run, tmp_path, kind):
    path = tmp_path / "x.mp4"
    if kind == "text":
        path.write_text("not a video\n" * 100)
    else:
        audio_only(path)
    code, out, err = run(capsys, "predict", path, "--checkpoint", trained_run / "best.safetensors",
                         "--window", "4f", "--stride", "20f")  # fmt: skip
    assert code == 1 and one_line(err) and "not a video" in err, err


def test_sparse_windows_of_a_truncated_mp4_keep_what_decodes(trained_run, tmp_path):
    import av
    import numpy as np

    from actionmoe.predict.timeline import predict_timeline

    whole = tmp_path / "whole.mp4"  # the index (moov) first, as phones and web videos write it
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(300):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.7)])
    predictor = Predictor.from_checkpoint(trained_run / "best.safetensors", device="cpu")
    plain = predictor.predict(cut)  # the frames before the damage
    assert plain.error is None
    timeline = predict_timeline(predictor, cut, "4f", "20f")
    assert timeline.windows and timeline.windows[-1].end_s < 300 / 30


def test_a_stopped_timeline_stops_at_the_next_batch(trained_run, shared_data):
    from actionmoe.errors import PredictionStoppedError
    from actionmoe.predict.timeline import predict_timeline

    predictor = Predictor.from_checkpoint(trained_run / "best.safetensors", device="cpu")
    deadline = time.monotonic() + 0.01
    with pytest.raises(PredictionStoppedError):
        predict_timeline(predictor, shared_data / "videos" / "test.avi", "4f", "1f", batch_size=2,
                         should_stop=lambda: time.monotonic() > deadline)  # fmt: skip
