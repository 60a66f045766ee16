"""The service: FastAPI's test client, real HTTP to uvicorn on loopback, and Debian's headless Chromium."""

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from actionmoe.web.server import ServiceLimits, create_app, safe_suffix
from tests.helpers import free_port

CHROMIUM = shutil.which("chromium")


FIXTURE_VIDEOS = Path(__file__).resolve().parents[1] / "fixtures" / "videos"


@pytest.fixture
def uploads(tmp_path) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


@pytest.fixture
def client(predictor, uploads):
    app = create_app(
        predictor, top_k=3, limits=ServiceLimits(max_upload_bytes=2_000_000, workers=2, queue=30), upload_dir=uploads
    )
    with TestClient(app) as client:
        yield client


def a_video(dataset_root) -> Path:
    return next((dataset_root / "videos" / "move_up").iterdir())


def expected(predictor, video, top_k=3) -> list[tuple[str, float]]:
    return [(p.label, p.score) for p in predictor.predict(video, top_k).predictions]


def test_multipart_and_raw_uploads_equal_predict(client, predictor, dataset_root, uploads):
    video = a_video(dataset_root)
    multipart = client.post("/api/predict", files={"file": (video.name, video.read_bytes(), "video/x-msvideo")})
    raw = client.post("/api/predict", content=video.read_bytes(), headers={"X-Filename": video.name})
    for response in (multipart, raw):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["video"] == video.name and body["error"] is None
        got = [(p["label"], p["score"]) for p in body["predictions"]]
        assert [g[0] for g in got] == [e[0] for e in expected(predictor, video)]
        assert [g[1] for g in got] == pytest.approx([e[1] for e in expected(predictor, video)], abs=1e-6)
    assert list(uploads.iterdir()) == []  # every upload deleted after use


def test_errors_are_json_with_a_reason(client, uploads):
    assert client.post("/api/predict", content=b"x" * 2_000_001).status_code == 413
    text = client.post("/api/predict", files={"file": ("notes.txt", b"not a video\n" * 100, "text/plain")})
    assert text.status_code == 422 and "notes.txt" in text.json()["error"] and "not a video" in text.json()["error"]
    garbage = client.post("/api/predict", files={"file": ("clip.avi", b"garbage", "video/x-msvideo")})
    assert garbage.status_code == 422 and "clip.avi" in garbage.json()["error"]
    assert "/tmp" not in garbage.json()["error"]  # the temporary file's name is not shown
    assert client.post("/api/predict", content=b"").status_code == 400
    assert client.post("/api/predict?top_k=0", content=b"x").status_code == 400
    assert client.get("/api/nothing").status_code == 404
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/api/info").json()["classes"] == ["move_left", "move_right", "move_up"]
    assert "/api/predict" in client.get("/openapi.json").json()["paths"] and client.get("/docs").status_code == 200
    assert list(uploads.iterdir()) == []


def test_a_traversal_file_name_never_writes_outside_the_upload_folder(client, dataset_root, uploads, tmp_path):
    video = a_video(dataset_root)
    for name in ("../../x.mp4", "..\\..\\y.avi", "/etc/z.avi", "a/../../../w.mp4"):
        response = client.post("/api/predict", files={"file": (name, video.read_bytes(), "video/mp4")})
        assert response.status_code == 200, response.text
    assert safe_suffix("../../x.mp4") == ".mp4" and safe_suffix("evil.mp4/../../x") == ".bin"
    assert not any(Path(p).exists() for p in (tmp_path / "x.mp4", tmp_path.parent / "x.mp4", Path("/etc/z.avi")))
    assert list(uploads.iterdir()) == []


def test_a_long_video_as_a_timeline(client, shared_data):
    video = shared_data / "videos" / "test.mp4"  # 10 s
    response = client.post(
        "/api/predict?window=2.0&stride=1.0&top_k=1", files={"file": (video.name, video.read_bytes(), "video/mp4")}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["windows"]) == 9 and body["segments"][-1]["end_s"] == pytest.approx(10.0)
    assert client.post("/api/predict?window=0", files={"file": ("a.mp4", video.read_bytes())}).status_code == 400


def test_twenty_concurrent_uploads_are_all_answered_correctly(client, predictor, dataset_root):
    videos = sorted((dataset_root / "videos").glob("*/*.avi"))[:20]

    def upload(video):
        return video, client.post("/api/predict", files={"file": (video.name, video.read_bytes(), "video/avi")})

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(upload, videos))
    for video, response in answers:
        assert response.status_code == 200, response.text
        assert [p["label"] for p in response.json()["predictions"]] == [e[0] for e in expected(predictor, video)]


def test_a_full_pool_answers_503_with_retry_after(predictor, dataset_root, uploads, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    original = predictor.predict

    def slow_predict(*args, **kwargs):
        entered.set()
        release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(predictor, "predict", slow_predict)
    app = create_app(predictor, limits=ServiceLimits(workers=1, queue=0), upload_dir=uploads)
    video = a_video(dataset_root).read_bytes()
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(client.post, "/api/predict", files={"file": ("a.avi", video)})
        assert entered.wait(30)  # the first upload holds the only slot
        busy = client.post("/api/predict", files={"file": ("b.avi", video)})
        release.set()
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "2" and "busy" in busy.json()["error"]
        assert first.result(timeout=60).status_code == 200


@pytest.fixture(scope="module")
def live_server(predictor):
    """uvicorn on a loopback port, as ``actionmoe serve`` runs it."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(predictor, top_k=3), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


def test_real_http_to_uvicorn(live_server, dataset_root):
    video = a_video(dataset_root)
    request = urllib.request.Request(
        live_server + "api/predict", data=video.read_bytes(), method="POST", headers={"X-Filename": video.name}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200 and json.loads(response.read())["video"] == video.name
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(urllib.request.Request(live_server + "api/predict", data=b"junk", method="POST"))
    assert info.value.code == 422


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_upload_page_in_a_real_browser(live_server, predictor, dataset_root, shared_data, tmp_path):
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
        posts = []
        page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
        page.goto(live_server)
        page.wait_for_function("document.getElementById('model').textContent.includes('3 classes')")
        assert page.locator("#preview").is_hidden()  # no empty player before a file is chosen
        page.set_input_files("#video", str(video))
        page.click("#submit")
        page.wait_for_function("document.getElementById('top').textContent.length > 0", timeout=60_000)
        assert page.inner_text("#top") == predictor.predict(video, 1).predictions[0].label
        assert page.locator("#results tbody tr").count() == 3  # the server's --top-k
        assert page.locator("#timeline").is_hidden()  # 12 frames: shorter than two windows
        # HMDB51's own format, 6.6 s: Chromium cannot play XviD AVI, the server reads it
        avi = shared_data / "videos" / "test.avi"
        posts.clear()
        page.set_input_files("#video", str(avi))
        page.wait_for_selector("#preview-note:not([hidden])", timeout=10_000)
        assert "cannot preview" in page.inner_text("#preview-note")
        page.click("#submit")
        page.wait_for_function("document.getElementById('status').textContent.includes('timeline')", timeout=10_000)
        page.wait_for_selector("#timeline:not([hidden]) .segment", timeout=120_000)
        assert len(posts) == 1  # one upload answers the ranking and the timeline
        labels = page.locator("#timeline .legend li").all_inner_texts()
        assert labels and all(label in predictor.classes for label in labels)  # whole names, in a legend
        ticks = page.locator("#timeline .ticks span").all_inner_texts()
        assert ticks[0] == "0 s" and ticks[-1].endswith(" s") and len(ticks) >= 3
        assert "done" in page.inner_text("#status")
        page.screenshot(path=str(tmp_path / "page.png"))
        page.set_input_files("#video", str(garbage))
        page.click("#submit")
        page.wait_for_function("document.getElementById('status').className === 'error'", timeout=60_000)
        assert "broken.avi" in page.inner_text("#status")
        browser.close()


def test_the_openapi_description_declares_the_upload_and_the_error_body(client):
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/api/predict"]["post"]
    content = operation["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert content["application/octet-stream"]["schema"]["format"] == "binary"
    for status in ("400", "408", "413", "415", "422", "503", "504"):
        body = operation["responses"][status]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/ErrorBody"}, status
    assert schema["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
    response = client.post("/api/predict", content=b'{"video": 1}', headers={"Content-Type": "application/json"})
    assert response.status_code == 415 and "multipart/form-data" in response.json()["error"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_docs_render_offline_and_try_it_out_uploads_a_video(live_server, predictor, dataset_root):
    """/docs from the package's own Swagger UI assets: nothing is fetched from outside the server."""
    from playwright.sync_api import sync_playwright

    video = a_video(dataset_root)
    outside = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()

        def only_this_server(route):
            if route.request.url.startswith(live_server):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_this_server)
        page.goto(live_server + "docs")
        operation = page.locator("#operations-default-predict_api_predict_post")
        operation.locator(".opblock-summary").click(timeout=30_000)
        operation.locator(".try-out__btn").click()
        operation.locator("input[type=file]").set_input_files(str(video))
        operation.locator(".execute").click()
        status = operation.locator(".live-responses-table .response .response-col_status").first
        status.wait_for(timeout=60_000)
        assert status.inner_text().strip().startswith("200")
        body = json.loads(operation.locator(".live-responses-table .microlight").first.inner_text())
        assert body["video"] == video.name
        assert body["predictions"][0]["label"] == predictor.predict(video, 1).predictions[0].label
        browser.close()
    assert outside == []


def test_the_service_names_its_own_parameters_not_command_line_flags(client, dataset_root):
    video = a_video(dataset_root)
    for query in ("window=0", "window=2&stride=abc", "top_k=0"):
        response = client.post(f"/api/predict?{query}", files={"file": (video.name, video.read_bytes())})
        assert response.status_code == 400 and "--" not in response.json()["error"], response.json()


def test_one_upload_answers_the_ranking_and_for_a_long_video_its_timeline(client, predictor, dataset_root, shared_data):
    short = a_video(dataset_root)  # 12 frames: no timeline
    body = client.post("/api/predict?timeline=true", files={"file": (short.name, short.read_bytes())}).json()
    assert body["timeline"] is None and len(body["predictions"]) == 3
    long = shared_data / "videos" / "test.avi"  # 6.6 s: longer than two windows of 2 s
    body = client.post("/api/predict?timeline=true", files={"file": (long.name, long.read_bytes())}).json()
    want = expected(predictor, long)
    assert [p["label"] for p in body["predictions"]] == [label for label, _ in want]
    assert [p["score"] for p in body["predictions"]] == pytest.approx([score for _, score in want], abs=1e-5)
    windows = body["timeline"]["windows"]
    assert len(windows) == 5 and windows[1]["start_s"] == pytest.approx(1.0)
    assert body["timeline"]["segments"][-1]["end_s"] == pytest.approx(windows[-1]["end_s"])


def test_the_service_explains_on_request_and_refuses_an_unknown_class(client, uploads):
    import base64

    video = {"file": ("test.avi", (FIXTURE_VIDEOS / "test.avi").read_bytes())}
    shown = client.post("/api/explain?per_expert=true", files=video).json()
    refused = client.post("/api/explain?class_name=jump", files=video)
    assert shown["strip"].startswith("data:image/png;base64,") and shown["maps"][0] == "model"
    assert base64.b64decode(shown["strip"].split(",", 1)[1])[:4] == b"\x89PNG" and "expert 1" in shown["maps"]
    assert refused.status_code == 400 and "class_name 'jump' is not a class" in refused.json()["error"]
    assert list(uploads.iterdir()) == []  # the upload and its strip are gone
