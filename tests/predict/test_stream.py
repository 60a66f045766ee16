"""actionmoe stream: a file as the timeline sees it, a file in real time, a slow model, a loopback stream that stops."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from actionmoe.acquire.synthetic import render_video
from actionmoe.predict.stream import StreamOptions, run_stream
from actionmoe.predict.timeline import predict_timeline
from tests.helpers import free_port, one_line, run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "videos"


def test_a_file_streamed_gives_the_timeline_s_windows(predictor):
    video = FIXTURES / "test.mp4"
    rows = []
    summary = run_stream(predictor, str(video), StreamOptions("1.0", "0.5"), rows.append)
    timeline = predict_timeline(predictor, video, "1.0", "0.5", top_k=3)
    assert summary.ended == "source ended" and summary.skipped_windows == 0 and summary.dropped_frames == 0
    assert [r["start_s"] for r in rows] == pytest.approx([w.start_s for w in timeline.windows])
    assert [r["end_s"] for r in rows] == pytest.approx([w.end_s for w in timeline.windows])
    assert [r["predictions"][0]["label"] for r in rows] == [w.predictions[0].label for w in timeline.windows]
    scores = [p["score"] for r in rows for p in r["predictions"]]
    assert scores == pytest.approx([p.score for w in timeline.windows for p in w.predictions], abs=1e-5)


def synthetic_file(folder: Path, seconds: float, fps: int = 10, suffix: str = ".avi") -> Path:
    from actionmoe.data.decode import write_video

    frames = render_video("move_left", np.random.default_rng(0), int(seconds * fps), 40, 48)
    path = folder / f"clip{suffix}"
    write_video(path, frames, fps=fps)
    return path


def test_realtime_follows_the_file_s_clock(predictor, tmp_path):
    video = synthetic_file(tmp_path, 3.0)
    rows = []
    started = time.monotonic()
    summary = run_stream(predictor, str(video), StreamOptions("1.0", "0.5", realtime=True), rows.append)
    elapsed = time.monotonic() - started
    assert elapsed >= 2.7  # 30 frames at 10 fps, not as fast as they decode
    assert [r["start_s"] for r in rows] == pytest.approx([0.5 * k for k in range(len(rows))])
    assert summary.windows == len(rows) >= 4 and all(r["latency_s"] >= 0 for r in rows)
    timeline = predict_timeline(predictor, video, "1.0", "0.5", top_k=3)
    answered = {round(r["start_s"], 3): r["predictions"][0]["label"] for r in rows}
    same_windows = {
        round(w.start_s, 3): w.predictions[0].label for w in timeline.windows if round(w.start_s, 3) in answered
    }
    assert same_windows == answered  # the timeline's top label for every window answered live


def test_a_model_slower_than_real_time_skips_windows_and_says_so(predictor, tmp_path, monkeypatch):
    video = synthetic_file(tmp_path, 4.0)
    real = predictor.video_probs

    def slow(views):
        time.sleep(0.6)
        return real(views)

    monkeypatch.setattr(predictor, "video_probs", slow)
    rows = []
    summary = run_stream(predictor, str(video), StreamOptions("1.0", "0.2", realtime=True), rows.append)
    assert summary.skipped_windows > 0 and summary.windows == len(rows)
    assert summary.windows + summary.skipped_windows >= 14  # every complete window answered or counted
    assert "skipped (model behind)" in summary.line()


def ts_stream(folder: Path, seconds: float) -> bytes:
    """An MPEG-TS file (what live HTTP streams carry) of a synthetic motion."""
    import av

    frames = render_video("move_up", np.random.default_rng(1), int(seconds * 10), 48, 64)
    path = folder / "live.ts"
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


@pytest.mark.slow
def test_a_loopback_stream_that_stops_ends_in_one_line_with_the_summary(trained_run, tmp_path):
    body = ts_stream(tmp_path, 6.0)
    sent = threading.Event()

    class Live(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # half of the stream, paced, then the server goes away
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            half = len(body) // 2
            for start in range(0, half, 4096):
                self.wfile.write(body[start : min(start + 4096, half)])
                self.wfile.flush()
                time.sleep(0.01)
            sent.set()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Live)
    url = f"http://127.0.0.1:{server.server_address[1]}/live.ts"
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    command = [sys.executable, "-m", "actionmoe", "stream", url, "--checkpoint", str(trained_run / "best.safetensors")]
    process = subprocess.Popen(
        [*command, "--window", "1.0", "--stride", "0.5", "--reconnects", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert sent.wait(timeout=120)  # the command connected and got half the stream
    time.sleep(0.5)
    server.shutdown()  # the source is gone: reconnects fail
    server.server_close()
    out, err = process.communicate(timeout=120)
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows and all(r["predictions"] for r in rows), err  # windows answered while it was live
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("stream ended (") and "reconnects" in last, err


def test_bad_sources_are_one_line(trained_run, tmp_path, capsys):
    checkpoint = str(trained_run / "best.safetensors")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for source, words in (
        (f"http://127.0.0.1:{free_port()}/none.ts", "cannot open"),
        ("9", "no webcam 9"),
        (str(text), "not a video"),
        ("gopher://x/y", "unsupported stream protocol"),
    ):
        code, _, err = run(capsys, "stream", source, "--checkpoint", checkpoint)
        assert code == 1 and one_line(err) and words in err, (source, err)
    code, _, err = run(capsys, "stream", str(text), "--checkpoint", checkpoint, "--window", "60")
    assert code == 2 and one_line(err) and "--window" in err


@pytest.mark.slow
def test_ctrl_c_ends_the_stream_with_its_summary_and_out_holds_the_windows(trained_run, tmp_path):
    import signal

    video = synthetic_file(tmp_path, 20.0)
    out = tmp_path / "live.jsonl"
    command = [sys.executable, "-m", "actionmoe", "stream", str(video), "--realtime", "--window", "1.0"]
    command += ["--stride", "0.5", "--checkpoint", str(trained_run / "best.safetensors"), "--out", str(out)]
    # Ctrl-C as a terminal sends it, even when the suite itself runs in the background (where the shell
    # starts it with SIGINT ignored, which Python and its children would inherit)
    restore_ctrl_c = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=restore_ctrl_c
    )
    deadline = time.time() + 120
    while (not out.exists() or not out.read_text().strip()) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("stream ended (interrupted)")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and rows[0]["start_s"] == 0.0 and len(rows) < 39  # stopped long before the 20 s file ended
