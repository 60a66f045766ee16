"""``actionmoe app``: a Gradio app around a Predictor, for hosted notebooks (Colab, Kaggle) and Spaces.

Upload or record a video (the webcam), get the ranked actions as a label, the answer (``unknown``
below the minimum-confidence slider) and, for a video longer than one window, the timeline plot;
on request, the Grad-CAM strip of where the model looked (per expert if asked).
``build_app(predictor)`` returns the Blocks, so a notebook cell
can ``launch(share=True)``: the public link is how a browser reaches an app inside Colab or Kaggle.
Predictions go through the same Predictor as ``predict`` and ``serve``; Gradio's queue bounds how
many run at once (``concurrency``). Uploads live in Gradio's content-addressed cache, where two
clients sending the same file share one copy, so they are not deleted per request (that would pull
the file from under the other); Gradio's sweep deletes every upload and answer older than
``CACHE_SECONDS`` (checked as often). Answers' images are handed to Gradio as PNG files, one new
file per answer, which Gradio copies into its cache under a temporary name and renames (arrays it
would save by rewriting the shared cached file in place, truncating it under a client downloading
it). An unreadable file is one message (a Gradio error), and the next upload works.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
import weakref
from dataclasses import replace
from pathlib import Path

from actionmoe.data.decode import video_duration
from actionmoe.errors import UsageError, VideoDecodeError
from actionmoe.predict.predictor import UNKNOWN, Predictor, check_min_confidence
from actionmoe.predict.timeline import plot_timeline, predict_timeline
from actionmoe.predict.visualize import save_prediction_grid

log = logging.getLogger(__name__)

API_NAME = "classify"  # gradio_client: Client(url).predict(handle_file(video), api_name="/classify")
EXPLAIN_API_NAME = "explain"  # Client(url).predict(handle_file(video), per_expert, api_name="/explain")
TIMELINE_WINDOW, TIMELINE_STRIDE = "2.0", "1.0"  # seconds
CACHE_SECONDS = 600  # uploads older than this are deleted, swept this often


def build_app(predictor: Predictor, concurrency: int = 2, top_k: int = 5, examples: tuple[Path, ...] = ()):
    """The Gradio Blocks of ``predictor``; ``concurrency`` predictions at most run at once (the rest queue).

    ``examples``: videos offered as one-click examples (for instance one per class of the checkpoint).

    Raises:
        UsageError: Gradio is not installed, or ``concurrency`` is below 1.
    """
    try:
        import gradio as gr
    except ImportError:
        raise UsageError("the app needs Gradio: pip install 'actionmoe[app]'") from None
    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")

    scratch = Path(tempfile.mkdtemp(prefix="actionmoe-app-"))  # answers' PNGs until Gradio has copied them

    def classify(video: str | None, min_confidence: float = predictor.min_confidence):
        if not video:
            raise gr.Error("Upload or record a video first.")
        try:
            return answer(predictor, Path(video), top_k, _new_folder(scratch), min_confidence)
        except (VideoDecodeError, UsageError) as exc:
            raise gr.Error(f"Cannot classify this file: {exc}") from None

    def where(video: str | None, per_expert: bool = False):
        if not video:
            raise gr.Error("Upload or record a video first.")
        try:
            return explanation_strip(predictor, Path(video), per_expert, _new_folder(scratch))
        except (VideoDecodeError, UsageError) as exc:
            raise gr.Error(f"Cannot explain this file: {exc}") from None

    sweep = (CACHE_SECONDS, CACHE_SECONDS)  # Gradio's copies of uploads and answers: deleted when this old
    with gr.Blocks(title="actionmoe", analytics_enabled=False, delete_cache=sweep) as app:
        gr.Markdown(
            f"# Action recognition\n{len(predictor.classes)} classes: {', '.join(predictor.classes[:20])}"
            + (" ..." if len(predictor.classes) > 20 else "")
        )
        with gr.Row():
            video = gr.Video(sources=["upload", "webcam"], label="video", elem_id="video")
            with gr.Column():
                verdict = gr.Textbox(label="answer", elem_id="answer", interactive=False)
                label = gr.Label(num_top_classes=top_k, label="actions", elem_id="actions")
                thumbnail = gr.Image(label="middle frame and top three", type="filepath", elem_id="thumbnail")
                timeline = gr.Image(label="timeline (videos longer than one window)", type="filepath")
        threshold = gr.Slider(
            0.0,
            1.0,
            value=predictor.min_confidence,
            step=0.01,
            label="minimum confidence (below it the answer is 'unknown')",
            elem_id="min-confidence",
        )
        button = gr.Button("Classify", variant="primary")
        outputs = [label, thumbnail, timeline, verdict]
        button.click(classify, inputs=[video, threshold], outputs=outputs, api_name=API_NAME)
        with gr.Accordion("Where did the model look? (Grad-CAM)", open=False):
            per_expert = gr.Checkbox(label="one row per expert", value=False, elem_id="per-expert")
            explain_button = gr.Button("Explain", elem_id="explain")
            strip = gr.Image(label="heat over the frames, one row per map", type="filepath", elem_id="strip")
        explain_button.click(where, inputs=[video, per_expert], outputs=strip, api_name=EXPLAIN_API_NAME)
        if examples:
            gr.Examples([[str(path)] for path in examples], inputs=video, label="examples")
    app.queue(default_concurrency_limit=concurrency)
    weakref.finalize(app, shutil.rmtree, scratch, ignore_errors=True)
    return app


def _new_folder(scratch: Path) -> Path:
    """A new folder in ``scratch`` for one answer's images; answers older than ``CACHE_SECONDS`` are deleted."""
    for old in scratch.iterdir():
        if time.time() - old.stat().st_mtime > CACHE_SECONDS:
            shutil.rmtree(old, ignore_errors=True)
    folder = scratch / uuid.uuid4().hex
    folder.mkdir()
    return folder


def answer(
    predictor: Predictor, path: Path, top_k: int, folder: Path, min_confidence: float = 0.0
) -> tuple[dict, Path, Path | None, str]:
    """{label: score} of the whole video, its thumbnail with the top three (as ``predict --grid`` draws it),
    the timeline plot when it spans several windows (its unknown windows shaded), and the answer: the
    top class, or ``unknown`` when its probability is not above ``min_confidence``. Images are PNG files
    written in ``folder``.

    Raises:
        VideoDecodeError: the file cannot be read as a video.
        UsageError: ``min_confidence`` outside [0, 1].
    """
    check_min_confidence(min_confidence)
    result = replace(predictor.predict(path, top_k=top_k), min_confidence=min_confidence)
    if result.error:
        raise VideoDecodeError(result.error)
    scores = {p.label: p.score for p in result.predictions}
    verdict = result.answer if result.answer != UNKNOWN else f"unknown (no class above {min_confidence:.2f})"
    thumbnail = save_prediction_grid([result], predictor.classes, folder / "thumbnail.png")
    duration = video_duration(path)  # from the header: a short video is not decoded again for a timeline
    if 0 < duration <= float(TIMELINE_WINDOW) + float(TIMELINE_STRIDE):
        return scores, thumbnail, None, verdict
    timeline = predict_timeline(predictor, path, TIMELINE_WINDOW, TIMELINE_STRIDE, top_k=top_k)
    if len(timeline.windows) < 2:
        return scores, thumbnail, None, verdict
    plot_timeline(replace(timeline, min_confidence=min_confidence), folder / "timeline.png")
    return scores, thumbnail, folder / "timeline.png", verdict


def explanation_strip(predictor: Predictor, path: Path, per_expert: bool, folder: Path) -> Path:
    """The Grad-CAM frame strip of the predicted class (``predict.explain``), a PNG in ``folder``.

    Raises:
        UsageError: an ONNX predictor (no gradients).
        VideoDecodeError: the file cannot be read as a video.
    """
    from actionmoe.predict.explain import explain, save_strip

    return save_strip(explain(predictor, path, None, per_expert), folder / "gradcam.png")


SPACE_APP = """\
# A Hugging Face Space (Gradio SDK) for an actionmoe model, written by `actionmoe app --space`.
from actionmoe.predict.predictor import UNKNOWN, Predictor, check_min_confidence
from actionmoe.web.app import build_app

app = build_app(Predictor.from_checkpoint("model", device="auto"), concurrency={concurrency})

if __name__ == "__main__":
    app.launch()
"""


def write_space(checkpoint: Path, out: Path, concurrency: int = 2) -> Path:
    """A Space folder: ``app.py``, ``requirements.txt`` (this actionmoe with its app extra), ``README.md``
    (the Space's settings) and the model folder in ``model/`` (``predict.share.write_model_folder``).

    Raises:
        UsageError: ``out`` is not an empty folder.
        CheckpointError: the checkpoint does not load.
    """
    from actionmoe import __version__
    from actionmoe.files import check_output_folder, write_atomically
    from actionmoe.predict.share import write_model_folder

    check_output_folder(out, "--space")
    if any(out.iterdir()):
        raise UsageError(f"--space {out} is not empty; give a new or empty folder")
    write_model_folder(checkpoint, out / "model")
    write_atomically(out / "app.py", SPACE_APP.format(concurrency=concurrency))
    write_atomically(out / "requirements.txt", f"actionmoe[app]=={__version__}\n")
    settings = "---\ntitle: actionmoe\nsdk: gradio\napp_file: app.py\npinned: false\n---\n\nAction recognition.\n"
    write_atomically(out / "README.md", settings)
    return out
