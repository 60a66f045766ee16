"""The Gradio app on loopback, through Gradio's own client: the Predictor's ranking, a bad upload, ten clients."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from tests.helpers import free_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "videos"


@pytest.fixture(scope="module")
def app_url(predictor):
    from actionmoe.web.app import build_app

    app = build_app(predictor, concurrency=2)
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
        label, _ = app.predict(handle_file(str(video)), api_name="/classify")
        expected = predictor.predict(video)
        ranked = [(c["label"], c["confidence"]) for c in label["confidences"]]
        assert [name for name, _ in ranked] == [p.label for p in expected.predictions], video.name
        assert [score for _, score in ranked] == pytest.approx([p.score for p in expected.predictions], abs=1e-5)
        assert label["label"] == expected.predictions[0].label


def test_an_unreadable_upload_is_one_message_and_the_next_one_works(app_url, tmp_path):
    from gradio_client import handle_file

    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n")
    app = client(app_url)
    with pytest.raises(Exception, match="Cannot classify this file"):
        app.predict(handle_file(str(bad)), api_name="/classify")
    label, _ = app.predict(handle_file(str(FIXTURES / "test.mp4")), api_name="/classify")
    assert label["confidences"]


def test_ten_clients_at_once_are_all_answered(app_url, predictor):
    from gradio_client import handle_file

    video = FIXTURES / "test.avi"
    expected = predictor.predict(video).predictions[0].label

    def ask(_: int) -> str:
        label, _ = client(app_url).predict(handle_file(str(video)), api_name="/classify")
        return label["label"]

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(ask, range(10), timeout=600))
    assert answers == [expected] * 10
