"""What notebooks/hmdb51.ipynb calls: where it runs, what it shows inline, and the upload widget.

Each notebook step is one or two calls into the package; this module holds the few that only make
sense in a notebook. IPython and ipywidgets (the ``notebook`` extra) are imported where used.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from actionmoe.config import Config, load_config
from actionmoe.data.builders import build_splits
from actionmoe.data.decode import video_duration
from actionmoe.errors import ActionMoEError
from actionmoe.files import safe_suffix
from actionmoe.predict.predictor import Predictor, VideoPrediction
from actionmoe.predict.timeline import Timeline, plot_timeline, predict_timeline
from actionmoe.predict.visualize import ranked_bars_png, save_prediction_grid

KAGGLE_INPUT = Path("/kaggle/input")
EVALUATION_PLOTS = (
    "training_curves.png",
    "confusion_matrix.png",
    "per_class_accuracy.png",
    "expert_usage.png",
    "class_expert_routing.png",
)


@dataclass(frozen=True)
class Environment:
    name: str  # kaggle | colab | local
    search: tuple[Path, ...]  # where attached datasets live (/kaggle/input on Kaggle)
    device: str  # what training will run on

    def describe(self) -> str:
        where = {"kaggle": "Kaggle", "colab": "Google Colab", "local": "a local Jupyter"}[self.name]
        return f"running on {where}; training device: {self.device}"


def detect_environment(environ: Mapping[str, str] = os.environ, kaggle_input: Path = KAGGLE_INPUT) -> Environment:
    """Kaggle (its kernel variables or /kaggle/input), Colab (its release tag or module), else local."""
    if "KAGGLE_KERNEL_RUN_TYPE" in environ or "KAGGLE_URL_BASE" in environ or kaggle_input.is_dir():
        name, search = "kaggle", (kaggle_input,)
    elif "COLAB_RELEASE_TAG" in environ or "google.colab" in sys.modules:
        name, search = "colab", ()
    else:
        name, search = "local", ()
    return Environment(name, search, _device_description())


def _device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"CUDA ({torch.cuda.get_device_name(0)})"
    return f"CPU ({os.cpu_count()} cores)"


def show_logs(level: int = logging.INFO) -> None:
    """actionmoe's log lines (one per epoch, what was found and done) printed in the cell's output."""
    logger = logging.getLogger("actionmoe")
    logger.handlers = [h for h in logger.handlers if not getattr(h, "actionmoe_notebook", False)]
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.actionmoe_notebook = True
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def notebook_config(name: str, split: int, epochs: int | None = None, overrides: list[str] = ()) -> Config:
    """The named config (or TOML file) with the notebook's parameters applied, like the CLI's --set.

    ``epochs`` None keeps the config's own (hmdb51: 30, demo: 12).
    """
    epoch_override = [] if epochs is None else [f"train.epochs={epochs}"]
    return load_config(name, [f"data.split={split}", *epoch_override, *overrides])


def show_evaluation(evaluation_dir: Path) -> dict:
    """The evaluation report (headline, classification report, routing) and its plots, inline; returns metrics."""
    from IPython.display import Image, Markdown, display

    display(Markdown((evaluation_dir / "report.md").read_text()))
    for name in EVALUATION_PLOTS:
        if (evaluation_dir / name).is_file():
            display(Image(filename=str(evaluation_dir / name)))
    return json.loads((evaluation_dir / "metrics.json").read_text())


def sample_test_videos(config: Config, count: int) -> list[Path]:
    """Up to ``count`` existing test videos of the config's split, taking the classes in turn."""
    by_class: dict[int, list[Path]] = {}
    for record in build_splits(config.data).test:
        by_class.setdefault(record.label, []).append(record.path)
    chosen, round_index = [], 0
    while len(chosen) < count and any(round_index < len(v) for v in by_class.values()):
        chosen += [v[round_index] for _, v in sorted(by_class.items()) if round_index < len(v)]
        round_index += 1
    return chosen[:count]


def show_prediction_grid(predictor: Predictor, videos: list[Path], out: Path) -> list[VideoPrediction]:
    """Predict ``videos`` and show the thumbnail grid (actual class, top-3, green when right) inline."""
    from IPython.display import Image, display

    results = predictor.predict_many(videos, top_k=3)
    display(Image(filename=str(save_prediction_grid(results, predictor.classes, out))))
    return results


def _user_named(message: str, path: Path, name: str) -> str:
    """``message`` with the temporary file (its path, folder or name) replaced by the user's file name."""
    return message.replace(str(path), name).replace(str(path.parent), "").replace(path.name, name)


class UploadPanel:
    """Choose a video; see its ranked actions as a list and a bar chart, and a timeline when it is long.

    ``panel.widget`` is the ipywidgets box (a cell that ends with the panel shows it);
    ``panel.last`` is the last VideoPrediction, equal to ``predictor.predict`` on the same file.
    """

    def __init__(
        self,
        predictor: Predictor,
        top_k: int = 5,
        long_video_s: float = 10.0,
        window: str = "2.0",
        stride: str = "1.0",
    ) -> None:
        import ipywidgets as widgets

        self.predictor, self.top_k = predictor, top_k
        self.long_video_s, self.window, self.stride = long_video_s, window, stride
        self.upload = widgets.FileUpload(accept="video/*,.avi,.mp4,.mkv,.mov,.webm", description="Choose a video")
        self.status = widgets.HTML("<i>Choose a video file to classify.</i>")
        self.ranked = widgets.HTML()
        self.bars = widgets.Image(format="png", layout=widgets.Layout(display="none", max_width="640px"))
        self.timeline = widgets.Image(format="png", layout=widgets.Layout(display="none", max_width="900px"))
        self.widget = widgets.VBox([self.upload, self.status, self.ranked, self.bars, self.timeline])
        self.last: VideoPrediction | None = None
        self.plot = plot_timeline  # (timeline, png path): replaceable, e.g. to look at what is drawn
        self.upload.observe(self._on_value, names="value")

    def _repr_mimebundle_(self, **kwargs):
        """The widget, and text for where widgets do not run (a notebook saved as HTML, a viewer)."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/html"] = self._static_html()
        return bundle

    def _static_html(self) -> str:
        if self.last is None:
            return "<p><i>An upload widget: run the notebook to classify your own video here.</i></p>"
        chart = base64.b64encode(self.bars.value).decode("ascii") if self.bars.value else ""
        image = f'<img alt="ranked actions" src="data:image/png;base64,{chart}">' if chart else ""
        return f"<p>{self.status.value}</p>{self.ranked.value}{image}"

    def _on_value(self, change: dict) -> None:
        if change["new"]:
            self.show_upload(change["new"][0])

    def show_upload(self, item: Mapping) -> VideoPrediction | None:
        """One FileUpload value entry (``name``, ``content``) -> the panel's contents; None when unreadable."""
        name = Path(str(item.get("name") or "upload")).name
        self.status.value = f"classifying <b>{html.escape(name)}</b>..."
        with tempfile.TemporaryDirectory(prefix="actionmoe-upload-") as folder:
            path = Path(folder) / f"video{safe_suffix(name)}"  # the user's name never reaches disk
            path.write_bytes(bytes(item["content"]))
            try:
                prediction = self.predictor.predict(path, top_k=self.top_k)
                timeline = self._timeline(path)
            except ActionMoEError as exc:
                self._show_error(name, _user_named(str(exc), path, name))
                return None
            if timeline is not None:
                timeline = replace(timeline, source=name)  # titles say the user's name
            self._show_timeline(timeline, name, Path(folder))
        self._show_ranked(prediction, name)
        self.last = prediction
        return prediction

    def _timeline(self, path: Path) -> Timeline | None:
        if video_duration(path) < self.long_video_s:
            return None
        return predict_timeline(self.predictor, path, self.window, self.stride, top_k=3)

    def _show_ranked(self, prediction: VideoPrediction, name: str) -> None:
        rows = "".join(
            f'<li data-label="{html.escape(p.label)}" data-score="{p.score:.6f}">'
            f"{html.escape(p.label)} <b>{p.score:.1%}</b></li>"
            for p in prediction.predictions
        )
        self.status.value = f"<b>{html.escape(name)}</b>: {prediction.seconds:.2f} s"
        self.ranked.value = f'<ol class="actionmoe-ranked">{rows}</ol>'
        self.bars.value = ranked_bars_png(prediction, title=name)
        self.bars.layout.display = None

    def _show_timeline(self, timeline: Timeline | None, name: str, folder: Path) -> None:
        if timeline is None or len(timeline.windows) < 2:
            self.timeline.layout.display = "none"
            return
        self.plot(timeline, folder / "timeline.png")
        self.timeline.value = (folder / "timeline.png").read_bytes()
        self.timeline.layout.display = None

    def _show_error(self, name: str, reason: str) -> None:
        self.status.value = (
            f'<span style="color:#b22222">cannot classify {html.escape(name)}: {html.escape(reason)}</span>'
        )
        self.ranked.value = ""
        self.bars.layout.display = "none"
        self.timeline.layout.display = "none"
        self.last = None
