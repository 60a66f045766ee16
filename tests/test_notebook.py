"""notebooks/hmdb51.ipynb: stored clean, executed end to end, its upload widget in Python and in a real browser."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest

from actionmoe.data.decode import write_video
from actionmoe.notebook import UploadPanel, detect_environment, sample_test_videos
from actionmoe.predict.predictor import Predictor
from tests.helpers import free_port
from tests.notebooks import DEMO_PARAMETERS, NOTEBOOK, execute, with_parameters

CHROMIUM = shutil.which("chromium")


def test_the_committed_notebook_has_no_outputs_and_a_parameters_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in DEMO_PARAMETERS:  # the test's parameters are the notebook's, no more
        assert f"\n{name} = " in "\n" + tagged[0].source


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> tuple[nbformat.NotebookNode, Path]:
    """The notebook run on the demo parameters (offline, synthetic data) in a fresh kernel."""
    folder = tmp_path_factory.mktemp("notebook")
    notebook = with_parameters(nbformat.read(NOTEBOOK, as_version=4), DEMO_PARAMETERS)
    return execute(notebook, folder), folder


def _outputs(notebook: nbformat.NotebookNode, cell_id: str) -> list:
    return next(cell for cell in notebook.cells if cell.get("id") == cell_id).outputs


@pytest.mark.slow
def test_the_notebook_s_gradio_cell_launches_the_app_on_loopback(executed):
    notebook, _ = executed
    text = "".join(out.get("text", "") for out in _outputs(notebook, "gradio") if out.output_type == "stream")
    assert "app: http://127.0.0.1:" in text  # share_app=False: no public link in CI


@pytest.mark.slow
def test_the_notebook_runs_end_to_end_on_the_demo_parameters(executed):
    notebook, folder = executed
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    assert not [out for cell in code for out in cell.outputs if out.output_type == "error"]
    images = [out for out in _outputs(notebook, "evaluate") if "image/png" in out.get("data", {})]
    assert len(images) >= 3  # training curves, confusion matrix, per-class accuracy, routing
    assert base64.b64decode(images[0]["data"]["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    report = "".join(
        out["data"]["text/markdown"] for out in _outputs(notebook, "evaluate") if "text/markdown" in out.get("data", {})
    )
    assert "Per class" in report and "top-1" in report
    assert any("image/png" in out.get("data", {}) for out in _outputs(notebook, "predictions"))
    assert any("widget-view" in key for out in _outputs(notebook, "upload") for key in out.get("data", {}))
    run = folder / "runs" / "notebook" / "split1"
    assert (run / "best.safetensors").is_file() and (run / "evaluation" / "metrics.json").is_file()
    assert (folder / "runs" / "notebook" / "model.onnx.json").is_file()


@pytest.mark.slow
def test_a_second_run_resumes_instead_of_training_again(executed):
    notebook, folder = executed
    again = execute(with_parameters(nbformat.read(NOTEBOOK, as_version=4), DEMO_PARAMETERS), folder)
    printed = "".join(out.get("text", "") for out in _outputs(again, "train"))
    assert "holds a finished run" in printed


def test_environment_detection():
    assert detect_environment({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, Path("/nonexistent")).name == "kaggle"
    kaggle = detect_environment({}, Path(__file__).parent)  # a /kaggle/input folder alone is enough
    assert kaggle.name == "kaggle" and kaggle.search == (Path(__file__).parent,)
    assert detect_environment({"COLAB_RELEASE_TAG": "release-colab"}, Path("/nonexistent")).name == "colab"
    local = detect_environment({}, Path("/nonexistent"))
    assert local.name == "local" and local.search == () and "local" in local.describe()


def _upload(panel: UploadPanel, path: Path, name: str | None = None) -> None:
    """The state message a browser sends after choosing ``path``, through the widget's own deserialiser."""
    content = path.read_bytes()
    sent = {"name": name or path.name, "type": "video/x-msvideo", "size": len(content), "last_modified": 0}
    panel.upload.set_state({"value": [{**sent, "content": memoryview(content)}]})


def _ranked_in_html(panel: UploadPanel) -> list[tuple[str, float]]:
    import re

    return [
        (label, float(score))
        for label, score in re.findall(r'data-label="([^"]+)" data-score="([^"]+)"', panel.ranked.value)
    ]


def test_the_upload_widget_shows_what_predict_says(predictor, dataset_root):
    video = sorted((dataset_root / "videos" / "move_up").iterdir())[0]
    panel = UploadPanel(predictor, top_k=3)
    _upload(panel, video)  # the FileUpload value as the browser sets it; its observer runs the handler
    expected = predictor.predict(video, top_k=3)
    assert [(p.label, p.score) for p in panel.last.predictions] == [(p.label, p.score) for p in expected.predictions]
    assert _ranked_in_html(panel) == [(p.label, round(p.score, 6)) for p in expected.predictions]
    assert panel.bars.value[:8] == b"\x89PNG\r\n\x1a\n" and panel.bars.layout.display is None
    assert panel.timeline.layout.display == "none"  # under long_video_s: no timeline
    assert video.name in panel.status.value


def test_a_long_upload_also_gets_a_timeline(predictor, dataset_root, tmp_path):
    frames = [np.stack(list(_frames(v))) for v in sorted((dataset_root / "videos" / "move_up").iterdir())[:4]]
    long_video = tmp_path / "four_clips.avi"
    write_video(long_video, np.concatenate(frames), fps=12)  # 48 frames: 4 s
    panel = UploadPanel(predictor, top_k=3, long_video_s=3.0, window="1.0", stride="0.5")
    _upload(panel, long_video)
    assert panel.timeline.layout.display is None and panel.timeline.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert _ranked_in_html(panel)[0][0] == predictor.predict(long_video, top_k=3).predictions[0].label


def _frames(video: Path):
    from actionmoe.data.decode import stream_frames

    return stream_frames(video, None)


def test_an_unreadable_upload_is_one_line_and_the_next_one_works(predictor, dataset_root, tmp_path):
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video" * 100)
    panel = UploadPanel(predictor, top_k=3)
    _upload(panel, broken, name="../../etc/broken.avi")
    assert panel.last is None and "cannot classify broken.avi" in panel.status.value
    assert panel.ranked.value == "" and panel.bars.layout.display == "none"
    video = sorted((dataset_root / "videos" / "move_left").iterdir())[0]
    _upload(panel, video)
    assert panel.last is not None and _ranked_in_html(panel)


def test_sample_test_videos_takes_the_classes_in_turn(dataset_root):
    from actionmoe.config import load_config

    config = load_config("demo", [f"data.root={dataset_root}"])
    chosen = sample_test_videos(config, 4)
    assert len(chosen) == 4 and len({path.parent.name for path in chosen[:3]}) == 3


@pytest.fixture(scope="module")
def voila(executed):
    """Voila serving the parameterised notebook from the executed run's folder (so training resumes as done)."""
    _, folder = executed
    app = folder / "app.ipynb"
    nbformat.write(with_parameters(nbformat.read(NOTEBOOK, as_version=4), DEMO_PARAMETERS), app)
    port = free_port()
    command = [sys.executable, "-m", "voila", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1", app.name]
    server = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(
                url + "voila/static/voila.js", timeout=5
            )  # the server is up; the page runs the notebook
            break
        except OSError:
            time.sleep(0.5)
    yield url, folder
    server.terminate()
    server.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_upload_widget_in_voila_in_a_real_browser(voila, tmp_path):
    from playwright.sync_api import sync_playwright

    url, folder = voila
    video = sorted((folder / "data" / "demo" / "hmdb51" / "videos" / "move_up").iterdir())[0]
    predictor = Predictor.from_checkpoint(folder / "runs" / "notebook" / "split1" / "best.safetensors", device="cpu")
    expected = predictor.predict(video, top_k=5)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(url, timeout=300_000)  # Voila runs the whole notebook before the widget is there
        page.wait_for_selector(".widget-upload", timeout=300_000)
        with page.expect_file_chooser() as chooser:
            page.click(".widget-upload")
        chooser.value.set_files(str(video))
        page.wait_for_selector("ol.actionmoe-ranked li", timeout=120_000)
        items = page.locator("ol.actionmoe-ranked li")
        shown = [
            (items.nth(i).get_attribute("data-label"), float(items.nth(i).get_attribute("data-score")))
            for i in range(items.count())
        ]
        page.screenshot(path=str(tmp_path / "voila.png"))
        browser.close()
    assert shown == [(p.label, round(p.score, 6)) for p in expected.predictions]


def test_odd_uploads_are_one_red_line_that_names_the_users_file(predictor, dataset_root, tmp_path):
    """A 250-character suffix, an undecodable stream (an SVG saved as .mp4): one line, the user's name, no temp path."""
    panel = UploadPanel(predictor, top_k=3)
    video = sorted((dataset_root / "videos" / "move_left").iterdir())[0]
    _upload(panel, video, name="clip." + "x" * 250)
    assert panel.last is not None  # the suffix is sanitised; the decoders find the format by its content
    drawing = tmp_path / "drawing.mp4"
    drawing.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>\n')
    _upload(panel, drawing)
    assert "cannot classify drawing.mp4" in panel.status.value and "not a video" in panel.status.value
    assert "actionmoe-upload-" not in panel.status.value and "/tmp" not in panel.status.value


def test_the_notebook_takes_the_configs_epochs_unless_set():
    from actionmoe.notebook import notebook_config

    assert notebook_config("demo", 1, None).train.epochs == 12  # the demo config's own
    assert notebook_config("demo", 1, 3).train.epochs == 3


def test_an_upload_is_named_as_the_user_named_it(predictor, dataset_root, tmp_path):
    """The timeline's title and every error line carry the uploaded name, never the temporary file's."""
    from actionmoe.predict.timeline import Timeline

    frames = [np.stack(list(_frames(v))) for v in sorted((dataset_root / "videos" / "move_up").iterdir())[:4]]
    long_video = tmp_path / "four_clips.avi"
    write_video(long_video, np.concatenate(frames), fps=12)
    panel = UploadPanel(predictor, top_k=3, long_video_s=3.0, window="1.0", stride="0.5")
    shown: list[Timeline] = []
    panel.plot = lambda timeline, path: shown.append(timeline) or path.write_bytes(b"\x89PNG\r\n\x1a\n")
    _upload(panel, long_video, name="my holiday.avi")
    assert [t.source for t in shown] == ["my holiday.avi"]
    broken = tmp_path / "x.avi"
    broken.write_bytes(b"\x00" * 5000)
    _upload(panel, broken, name="party.avi")
    assert "party.avi" in panel.status.value and "video.avi" not in panel.status.value


def test_the_panel_has_a_text_fallback_for_static_html(predictor, dataset_root):
    panel = UploadPanel(predictor, top_k=3)
    assert "upload" in panel._repr_mimebundle_()["text/html"].lower()
    _upload(panel, sorted((dataset_root / "videos" / "move_left").iterdir())[0])
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert panel.last.predictions[0].label in bundle["text/html"] and "data:image/png;base64," in bundle["text/html"]


def test_the_onnx_export_prints_nothing(trained_run, tmp_path, capfd):
    from actionmoe.predict.export import export_checkpoint

    export_checkpoint(trained_run / "best.safetensors", tmp_path / "m.onnx", fmt="onnx")
    out, err = capfd.readouterr()
    assert "[torch.onnx]" not in out + err
