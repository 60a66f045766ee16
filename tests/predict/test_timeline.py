"""Long videos as a timeline: windows, segments, bounded memory, short videos, bad spans."""

import json
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from actionmoe.cli import main
from actionmoe.data.decode import stream_frames
from actionmoe.predict.predictor import Predictor
from actionmoe.predict.timeline import Timeline, Window, parse_span, predict_timeline


@pytest.fixture(scope="module")
def long_video(tmp_path_factory, shared_data) -> Path:
    """Two minutes at 320x240, 25 fps: the four real videos re-encoded back to back, again and again."""
    path = tmp_path_factory.mktemp("long") / "two_minutes.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"XVID"), 25.0, (320, 240))
    written, sources = 0, sorted((shared_data / "videos").iterdir())
    while written < 120 * 25:
        for frame in stream_frames(sources[written % len(sources)], (240, 320)):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            written += 1
            if written == 120 * 25:
                break
    writer.release()
    return path


def test_a_short_video_is_one_window_equal_to_the_plain_prediction(predictor, dataset_root):
    video = next((dataset_root / "videos" / "move_up").iterdir())  # 12 frames at 25 fps: under 1 s
    timeline = predict_timeline(predictor, video, "2.0", "1.0", top_k=3)
    (window,) = timeline.windows
    plain = predictor.predict(video, top_k=3).predictions
    assert [p.label for p in window.predictions] == [p.label for p in plain]
    assert np.allclose([p.score for p in window.predictions], [p.score for p in plain], atol=1e-6)
    assert window.start_s == 0.0 and window.end_s == pytest.approx(12 / 25)


@pytest.mark.slow
def test_a_two_minute_video_streams_in_bounded_memory(predictor, long_video, tmp_path):
    tracemalloc.start()
    timeline = predict_timeline(predictor, long_video, "2.0", "1.0", top_k=2, batch_size=16)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(timeline.windows) == 119  # starts at 0, 1, ..., 118 s; each 2 s long
    assert timeline.windows[-1].end_s == pytest.approx(120.0)
    all_frames_resized = 3000 * 32 * 40 * 3  # what keeping every (already small) frame would take
    assert peak < all_frames_resized / 2, f"peak {peak / 2**20:.1f} MiB"
    segments = timeline.segments()
    assert segments[0].start_s == 0.0 and segments[-1].end_s == pytest.approx(120.0)
    assert all(a.end_s == b.start_s for a, b in zip(segments, segments[1:]))  # no overlap, no gap


def test_timeline_files_and_the_command(predictor, trained_run, shared_data, tmp_path, capsys):
    video = shared_data / "videos" / "test.mp4"  # 300 frames at 30 fps: 10 s
    out = tmp_path / "timeline.csv"
    code = main(
        [
            "predict",
            str(video),
            "--checkpoint",
            str(trained_run / "best.safetensors"),
            "--window",
            "60f",
            "--stride",
            "1.0",
            "--out",
            str(out),
            "--top-k",
            "2",
        ]
    )
    assert code == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "start_s,end_s,answer,label_1,score_1,label_2,score_2" and len(rows) == 1 + 9  # starts 0..8 s
    assert (tmp_path / "timeline.png").stat().st_size > 2000
    capsys.readouterr()
    assert (
        main(["predict", str(video), "--checkpoint", str(trained_run / "best.safetensors"), "--window", "2", "--json"])
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["fps"] == pytest.approx(30.0) and data["window_frames"] == 60 and len(data["windows"]) == 9
    assert {"start_s", "end_s", "label", "score"} == set(data["segments"][0])


def test_segments_merge_consecutive_windows_without_overlapping():
    """Each window speaks for the stride around its centre: segments tile the video, one label at a time."""
    from actionmoe.predict.predictor import Prediction

    labels = ["walk", "walk", "run", "run", "run", "walk"]
    windows = [Window(float(i), i + 2.0, [Prediction(label, 0.5 + 0.1 * (i % 2))]) for i, label in enumerate(labels)]
    timeline = Timeline("x", 25.0, 50, 25, windows, np.zeros((6, 2)), ("run", "walk"))
    assert [(s.start_s, s.end_s, s.label) for s in timeline.segments()] == [
        (0.0, 2.5, "walk"),
        (2.5, 5.5, "run"),
        (5.5, 7.0, "walk"),
    ]


@pytest.mark.parametrize(
    "window, stride, message",
    [
        ("0", "1.0", "window must be a positive number"),
        ("2.0", "0", "stride must be a positive number"),
        ("2.0", "-1", "stride must be a positive number"),
        ("abc", "1.0", "window must be"),
    ],
)
def test_bad_spans_are_one_line_usage_errors(trained_run, shared_data, capsys, window, stride, message):
    code = main(
        [
            "predict",
            str(shared_data / "videos" / "test.avi"),
            "--checkpoint",
            str(trained_run / "best.safetensors"),
            "--window",
            window,
            "--stride",
            stride,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
    assert parse_span("48f", "window") == (48.0, "frames") and parse_span("2.5s", "window") == (2.5, "seconds")


@pytest.fixture(scope="module")
def motion_model(easy_run) -> Path:
    """The tiny model after tests.helpers.EASY's last epoch, which tells its training clips apart.

    Not the best checkpoint: 17 training clips do not generalise to the 9 held-out ones, so validation
    stays near chance and the best checkpoint can be the first epoch's, which predicts one class for
    every video. The test below needs clips the model tells apart, not generalisation.
    """
    return easy_run / "last.safetensors"


@pytest.mark.slow
def test_the_top_label_changes_between_two_motions_back_to_back(motion_model, dataset_root, tmp_path):
    predictor = Predictor.from_checkpoint(motion_model, device="cpu")
    halves = {}
    for motion in ("move_up", "move_left"):  # clips the plain prediction gets right: the model is strong enough
        clips = [
            v
            for v in sorted((dataset_root / "videos" / motion).iterdir())
            if predictor.predict(v, 1).predictions[0].label == motion
        ]
        assert len(clips) >= 2, f"the tiny model does not recognise {motion}; train it longer"
        halves[motion] = clips[:2]
    video = tmp_path / "up_then_left.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"XVID"), 25.0, (48, 40))
    for clip in halves["move_up"] + halves["move_left"]:  # 4 clips of 12 frames: 48 frames, 1.92 s
        for frame in stream_frames(clip, None):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    timeline = predict_timeline(predictor, video, "12f", "12f", top_k=1)
    tops = [w.predictions[0].label for w in timeline.windows]
    assert len(tops) == 4 and tops[:2] == ["move_up", "move_up"] and tops[2:] == ["move_left", "move_left"]
    assert [(s.label, round(s.start_s, 2), round(s.end_s, 2)) for s in timeline.segments()] == [
        ("move_up", 0.0, 0.96),
        ("move_left", 0.96, 1.92),
    ]


def write_gop_video(path: Path, seconds: int = 20, gop: int = 25) -> Path:
    """MPEG-4 at 25 fps with a key frame every ``gop`` frames, written with PyAV."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = gop
        for index in range(seconds * 25):
            image = np.full((48, 64, 3), (index * 7) % 255, np.uint8) + rng.integers(0, 20, (48, 64, 3), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_sparse_windows_seek_instead_of_decoding_everything(predictor, tmp_path, monkeypatch):
    from actionmoe.data import decode
    from actionmoe.predict import timeline as timeline_module

    video = write_gop_video(tmp_path / "gop.avi")  # 500 frames
    stats = {}
    real_seek = decode.seek_frames
    monkeypatch.setattr(timeline_module, "seek_frames", lambda *args: real_seek(*args, stats=stats))
    seeked = predict_timeline(predictor, video, "10f", "100f", top_k=3, seek=None)  # gaps: seeks by itself
    streamed = predict_timeline(predictor, video, "10f", "100f", top_k=3, seek=False)
    assert [w.start_s for w in seeked.windows] == [0.0, 4.0, 8.0, 12.0, 16.0] == [w.start_s for w in streamed.windows]
    assert np.allclose(seeked.probabilities, streamed.probabilities, atol=1e-6)
    assert 0 < stats["decoded"] < 500 / 2  # each window decodes from the key frame before it, not from the start
