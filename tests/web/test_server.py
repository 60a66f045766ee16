"""The upload page and JSON API: real HTTP on loopback, and a real headless Chromium (Debian's)."""

import json
import shutil
import threading
import urllib.error
import urllib.request

import pytest

from actionmoe.inference import Predictor
from actionmoe.web.server import PredictionServer

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def server(trained_run):
    predictor = Predictor.from_checkpoint(trained_run / "best.safetensors", device="cpu")
    server = PredictionServer(("127.0.0.1", 0), predictor, top_k=3, max_upload_bytes=2_000_000)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def post(url: str, body: bytes, name: str = "clip.avi") -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/octet-stream", "X-Filename": name}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def a_video(dataset_root):
    return next((dataset_root / "videos" / "move_up").iterdir())


def test_api_predicts_an_uploaded_video(server, dataset_root):
    video = a_video(dataset_root)
    status, body = post(server.url + "api/predict", video.read_bytes(), video.name)
    assert status == 200 and body["video"] == video.name
    expected = server.predictor.predict(video, 3).predictions
    assert [p["label"] for p in body["predictions"]] == [p.label for p in expected]
    assert [p["score"] for p in body["predictions"]] == pytest.approx([p.score for p in expected], abs=1e-6)


def test_api_errors_are_json_with_a_reason(server):
    status, body = post(server.url + "api/predict", b"not a video at all", "holiday.mp4")
    assert status == 422 and "holiday.mp4" in body["error"] and "actionmoe-upload" not in body["error"]
    status, body = post(server.url + "api/predict", b"x" * 2_000_001)
    assert status == 413 and "too large" in body["error"]
    status, body = post(server.url + "api/nothing", b"x")
    assert status == 404
    with urllib.request.urlopen(server.url + "api/info") as response:
        assert json.loads(response.read())["classes"] == ["move_left", "move_right", "move_up"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_upload_page_in_a_real_browser(server, dataset_root, tmp_path):
    from playwright.sync_api import sync_playwright

    video = a_video(dataset_root)
    garbage = tmp_path / "broken.avi"
    garbage.write_bytes(b"garbage")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        page = browser.new_page()
        page.goto(server.url)
        page.wait_for_function("document.getElementById('model').textContent.includes('3 classes')")
        page.set_input_files("#video", str(video))
        page.click("#submit")
        page.wait_for_function("document.getElementById('top').textContent.length > 0", timeout=60_000)
        top = page.inner_text("#top")
        assert top == server.predictor.predict(video, 1).predictions[0].label
        assert page.locator("#results tbody tr").count() == 3
        page.screenshot(path=str(tmp_path / "page.png"))
        page.set_input_files("#video", str(garbage))
        page.click("#submit")
        page.wait_for_function("document.getElementById('status').className === 'error'", timeout=60_000)
        assert "broken.avi" in page.inner_text("#status")
        browser.close()
    assert (tmp_path / "page.png").stat().st_size > 5000
