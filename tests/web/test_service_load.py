"""The service under load and abuse, over real HTTP to uvicorn: a queue that absorbs bursts, slots taken
only for complete uploads, predictions that stop at their limit or when their client leaves, and SIGTERM.

Reliability round 3 (docs/reliability.md), items 12-14 and "the service holds load".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from actionmoe.cli import main
from actionmoe.web.server import ServiceLimits, create_app
from tests.helpers import free_port


class Live:
    """uvicorn serving an app on a loopback port, in a thread, as ``actionmoe serve`` runs it."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", backlog=2048)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def post(url: str, video: Path, query: str = "", timeout: float = 120) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        f"{url}api/predict{query}", data=video.read_bytes(), method="POST", headers={"X-Filename": video.name}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), {k.lower(): v for k, v in error.headers.items()}


def ranked(body: dict) -> list[str]:
    return [p["label"] for p in body["predictions"]]


def test_a_burst_of_twenty_is_queued_and_all_answered_with_the_default_limits(predictor, dataset_root, tmp_path):
    videos = sorted((dataset_root / "videos").glob("*/*.avi"))[:20]
    with Live(create_app(predictor, top_k=3, upload_dir=tmp_path)) as url, ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda v: (v, post(url, v)), videos))
        info = json.loads(urllib.request.urlopen(url + "api/info", timeout=30).read())
    for video, (status, body, _) in answers:
        assert status == 200, body
        assert ranked(body) == [p.label for p in predictor.predict(video, 3).predictions]
    queue = info["queue"]
    assert queue["workers"] == 1 and queue["capacity"] >= 19 and queue["served"] == 20
    assert queue["running"] == 0 and queue["waiting"] == 0 and queue["mean_wait_s"] > 0


def test_a_hundred_at_once_get_200_or_503_never_a_reset(predictor, dataset_root, tmp_path):
    videos = sorted((dataset_root / "videos").glob("*/*.avi"))
    expected = {v: [p.label for p in predictor.predict(v, 3).predictions] for v in videos}
    jobs = [videos[i % len(videos)] for i in range(100)]
    with Live(create_app(predictor, top_k=3, upload_dir=tmp_path)) as url, ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(lambda v: (v, post(url, v)), jobs))
    statuses = [status for _, (status, _, _) in answers]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 33, statuses
    for video, (status, body, headers) in answers:
        if status == 200:
            assert ranked(body) == expected[video]
        else:
            assert int(headers["retry-after"]) >= 1 and "busy" in body["error"]
    assert list(tmp_path.iterdir()) == []


def slow_sender(port: int, stop: threading.Event) -> socket.socket:
    """A client that declares 100000 bytes and sends one every 0.3 s."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nX-Filename: slow.avi\r\n\r\n")

    def trickle() -> None:
        while not stop.is_set():
            try:
                sock.sendall(b"x")
            except OSError:
                return
            time.sleep(0.3)

    threading.Thread(target=trickle, daemon=True).start()
    return sock


def test_slow_uploads_neither_take_slots_nor_stay_forever(predictor, dataset_root, tmp_path):
    limits = ServiceLimits(workers=1, queue=0, read_idle_s=5, min_upload_bytes_per_s=50_000, upload_grace_s=2)
    video = next((dataset_root / "videos" / "move_up").iterdir())
    stop = threading.Event()
    with Live(create_app(predictor, top_k=3, limits=limits, upload_dir=tmp_path)) as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        slow = [slow_sender(port, stop) for _ in range(5)]
        time.sleep(0.5)
        status, body, _ = post(url, video)
        assert status == 200, body  # five stalled uploads hold no slot
        answers = []
        for sock in slow:
            sock.settimeout(20)
            answers.append(sock.recv(200).split(b"\r\n")[0])
        stop.set()
        for sock in slow:
            sock.close()
    assert all(b" 408 " in line for line in answers), answers
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def slow_model(predictor, monkeypatch) -> dict:
    """Each model call takes 0.3 s and is counted, so a test can see when a prediction stops."""
    calls = {"count": 0}
    original = predictor.video_probs

    def slow(views):
        calls["count"] += 1
        time.sleep(0.3)
        return original(views)

    monkeypatch.setattr(predictor, "video_probs", slow)
    return calls


def test_a_prediction_past_its_time_limit_stops_and_frees_the_worker(predictor, slow_model, shared_data, tmp_path):
    limits = ServiceLimits(workers=1, queue=4, timeout_s=1.0)
    long_video = shared_data / "videos" / "test.avi"
    with Live(create_app(predictor, top_k=3, limits=limits, upload_dir=tmp_path)) as url:
        status, body, _ = post(url, long_video, "?window=4f&stride=1f")
        assert status == 504 and "longer than 1 s" in body["error"]
        calls_at_timeout = slow_model["count"]
        time.sleep(1.0)
        assert slow_model["count"] <= calls_at_timeout + 1  # stopped at the next window
        queue = json.loads(urllib.request.urlopen(url + "api/info", timeout=30).read())["queue"]
        assert queue["running"] == 0 and queue["waiting"] == 0  # its place was freed once, not twice
        started = time.monotonic()
        status, _, _ = post(url, long_video)
        assert status == 200 and time.monotonic() - started < 5  # not queued behind an orphaned timeline


def test_a_client_that_leaves_stops_its_prediction(predictor, slow_model, shared_data, tmp_path):
    long_video = (shared_data / "videos" / "test.avi").read_bytes()
    with Live(create_app(predictor, top_k=3, upload_dir=tmp_path)) as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = (
            "POST /api/predict?window=4f&stride=1f HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(long_video)}\r\nX-Filename: long.avi\r\n\r\n"
        )
        sock.sendall(head.encode() + long_video)
        deadline = time.time() + 30
        while slow_model["count"] < 2 and time.time() < deadline:
            time.sleep(0.05)
        sock.close()
        time.sleep(1.5)
        after_leaving = slow_model["count"]
        time.sleep(1.5)
        assert slow_model["count"] <= after_leaving + 1, "the prediction went on after its client left"


def connect_when_listening(port: int) -> socket.socket:
    deadline = time.time() + 30
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def test_sigterm_ends_the_server_promptly_and_removes_pending_uploads(trained_run, shared_data, tmp_path):
    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-m", "actionmoe", "serve", "--checkpoint", str(trained_run / "best.safetensors"),
         "--port", str(port), "--device", "cpu"],
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert "serving" in server.stdout.readline()
        sock = connect_when_listening(port)
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 50_000)
        deadline = time.time() + 10
        while not list(scratch.rglob("actionmoe-upload-*")) and time.time() < deadline:
            time.sleep(0.05)
        assert list(scratch.rglob("actionmoe-upload-*")), "the upload never reached its temporary file"
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
        assert time.monotonic() - started < 15
        sock.close()
    finally:
        if server.poll() is None:
            server.kill()
    assert not list(scratch.rglob("actionmoe-upload-*"))


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_serve_refuses_a_timeout_that_is_not_a_positive_number(capsys, trained_run, value):
    code = main(["serve", "--checkpoint", str(trained_run / "best.safetensors"), "--timeout", value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--timeout" in err
