"""The Gradio app on loopback, through Gradio's own client: the Predictor's ranking, a bad upload, ten clients."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.helpers import free_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "videos"


@pytest.fixture(scope="module")
def app_url(predictor):
    from actionmoe.web.app import build_app

    app = build_app(predictor, concurrency=2, examples=(FIXTURES / "test.mp4",))
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False)


def test_the_app_ranks_real_videos_as_the_predictor_does(app_url, predictor):
    from gradio_client import handle_file

    app = client(app_url)
    for video in sorted(FIXTURES.iterdir()):
        label, thumbnail, _, answer = app.predict(handle_file(str(video)), api_name="/classify")
        expected = predictor.predict(video)
        ranked = [(c["label"], c["confidence"]) for c in label["confidences"]]
        assert [name for name, _ in ranked] == [p.label for p in expected.predictions], video.name
        assert [score for _, score in ranked] == pytest.approx([p.score for p in expected.predictions], abs=1e-5)
        assert label["label"] == expected.predictions[0].label
        assert thumbnail is not None  # the middle frame with the top three, as predict --grid draws it
        assert answer == expected.predictions[0].label  # the slider starts at the predictor's 0: always an answer


def test_the_explain_button_answers_with_the_grad_cam_strip(app_url):
    from gradio_client import handle_file

    strip = client(app_url).predict(handle_file(str(FIXTURES / "test.avi")), True, api_name="/explain")
    with open(strip, "rb") as image:
        assert image.read(4) == b"\x89PNG"


def test_the_slider_turns_every_answer_unknown_at_one_and_keeps_the_ranking(app_url):
    from gradio_client import handle_file

    label, _, _, answer = client(app_url).predict(handle_file(str(FIXTURES / "test.avi")), 1.0, api_name="/classify")
    assert answer.startswith("unknown") and label["confidences"]


def test_an_unreadable_upload_is_one_message_and_the_next_one_works(app_url, tmp_path):
    from gradio_client import handle_file

    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n")
    app = client(app_url)
    with pytest.raises(Exception, match="Cannot classify this file"):
        app.predict(handle_file(str(bad)), api_name="/classify")
    label, *_ = app.predict(handle_file(str(FIXTURES / "test.mp4")), api_name="/classify")
    assert label["confidences"]


def test_ten_clients_at_once_are_all_answered_and_no_image_is_rewritten_while_downloaded(app_url, predictor):
    """Identical answers share one file in Gradio's cache; each new answer used to truncate and rewrite it, so a
    client downloading it at that moment got a short body (a CI failure). Three clients download the first
    answer's thumbnail over and over while ten clients ask about the same video."""
    import threading

    import httpx
    from gradio_client import Client, handle_file

    video = FIXTURES / "test.avi"
    expected = predictor.predict(video).predictions[0].label
    _, thumbnail, *_ = Client(app_url, verbose=False, download_files=False).predict(
        handle_file(str(video)), api_name="/classify"
    )
    whole = httpx.get(thumbnail["url"]).content
    done, broken, downloads = threading.Event(), [], []

    def download() -> None:
        with httpx.Client(timeout=60) as http:
            while not done.is_set():
                try:
                    body = http.get(thumbnail["url"]).content
                    broken.extend([len(body)] if body != whole else [])
                except httpx.HTTPError as exc:
                    broken.append(repr(exc))
                downloads.append(1)

    def ask(_: int) -> str:
        label, *_ = client(app_url).predict(handle_file(str(video)), api_name="/classify")
        return label["label"]

    readers = [threading.Thread(target=download) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(ask, range(10), timeout=600))
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert answers == [expected] * 10
    assert len(downloads) > 100 and broken == []


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_a_real_browser_uploads_a_video_and_sees_the_ranked_actions(app_url, predictor):
    from playwright.sync_api import sync_playwright

    video = FIXTURES / "test.mp4"
    expected = predictor.predict(video).predictions[0].label
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        page = browser.new_page()
        page.goto(app_url)
        actions = page.locator("#actions")
        actions.wait_for()
        assert expected not in actions.inner_text()  # nothing ranked before a video is sent
        page.locator("#video input[type=file]").set_input_files(str(video))
        page.get_by_role("button", name="Classify").click()
        actions.get_by_text(expected).first.wait_for(timeout=120_000)
        page.locator("#thumbnail img").first.wait_for(timeout=30_000)  # the middle frame with the top three
        assert page.locator("#min-confidence").count() == 1  # the unknown threshold's slider
        shown = actions.inner_text()
        browser.close()
    assert all(label in shown for label in predictor.classes) and "%" in shown  # every class ranked, in percent


def test_a_space_folder_runs_the_same_app(trained_run, predictor, tmp_path, capsys):
    import runpy

    from gradio_client import handle_file

    from tests.helpers import run

    space = tmp_path / "space"
    code, out, err = run(capsys, "app", "--checkpoint", str(trained_run / "best.safetensors"), "--space", str(space))
    assert code == 0, err
    assert sorted(p.name for p in space.iterdir()) == ["README.md", "app.py", "model", "requirements.txt"]
    assert "sdk: gradio" in (space / "README.md").read_text()
    assert (space / "requirements.txt").read_text().startswith("actionmoe[app]==")
    here = os.getcwd()
    os.chdir(space)  # a Space runs app.py from its own folder
    try:
        app = runpy.run_path("app.py", run_name="space")["app"]
    finally:
        os.chdir(here)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        video = FIXTURES / "arm_wrestling.mp4"
        label, *_ = client(f"http://127.0.0.1:{port}/").predict(handle_file(str(video)), api_name="/classify")
    finally:
        app.close()
    assert label["label"] == predictor.predict(video).predictions[0].label
    code, _, err = run(capsys, "app", "--checkpoint", str(trained_run / "best.safetensors"), "--space", str(space))
    assert code == 2 and "not empty" in err


def test_uploads_are_swept_from_gradio_s_cache(predictor, monkeypatch, tmp_path):
    """Gradio keeps an upload in its cache; the app's sweep deletes it once CACHE_SECONDS old."""
    import tempfile

    import numpy as np
    from gradio_client import handle_file

    import actionmoe.web.app as app_module
    from actionmoe.acquire.synthetic import render_video
    from actionmoe.data.decode import write_video

    video = tmp_path / f"swept_{time.time_ns()}.avi"  # content and name of its own: no other test shares it
    write_video(video, render_video("move_up", np.random.default_rng(time.time_ns() % 2**32), 12, 40, 48), fps=10)
    monkeypatch.setattr(app_module, "CACHE_SECONDS", 1)
    app = app_module.build_app(predictor)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    caches = {Path(tempfile.gettempdir()) / "gradio", Path(os.environ.get("GRADIO_TEMP_DIR", tmp_path / "none"))}
    uploads = lambda: [p for cache in caches for p in cache.rglob(video.name)]
    try:
        client(f"http://127.0.0.1:{port}/").predict(handle_file(str(video)), api_name="/classify")
        assert uploads()  # Gradio kept it while it was answered
        deadline = time.time() + 30
        while uploads() and time.time() < deadline:
            time.sleep(0.5)
        assert not uploads()
    finally:
        app.close()
