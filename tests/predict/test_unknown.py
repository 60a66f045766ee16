"""An "unknown" answer: --min-confidence in the Predictor, the CLI, timelines, the service; the risk-coverage curve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actionmoe.evaluation.metrics import risk_coverage, topk_accuracy
from actionmoe.predict.predictor import Prediction
from actionmoe.predict.timeline import Timeline, Window, timeline_summary
from tests.helpers import FIXTURES, run

VIDEOS = FIXTURES / "videos"


def test_min_confidence_one_answers_unknown_for_every_video_and_zero_never(capsys, trained_run):
    checkpoint = str(trained_run / "best.safetensors")
    code, out, _ = run(capsys, "predict", str(VIDEOS), "--checkpoint", checkpoint, "--json", "--min-confidence", "1")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 4
    assert all(row["answer"] == "unknown" and len(row["predictions"]) == 3 for row in rows)  # the ranking stays
    code, out, _ = run(capsys, "predict", str(VIDEOS), "--checkpoint", checkpoint, "--json", "--min-confidence", "0")
    assert all(row["answer"] == row["predictions"][0]["label"] for row in json.loads(out))
    code, out, _ = run(capsys, "predict", str(VIDEOS / "test.avi"), "--checkpoint", checkpoint, "--min-confidence", "1")
    assert out.startswith(f"{VIDEOS / 'test.avi'}: unknown (")


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_a_min_confidence_outside_zero_to_one_is_refused_before_the_checkpoint_is_read(capsys, tmp_path, value):
    code, out, err = run(
        capsys, "predict", str(VIDEOS / "test.avi"), "--checkpoint", str(tmp_path / "none.safetensors"),
        "--min-confidence", value,
    )  # fmt: skip
    assert code == 2 and "--min-confidence must be between 0 and 1" in err and len(err.strip().splitlines()) == 1


def test_a_timeline_marks_windows_below_the_threshold_unknown_and_does_not_merge_across_them():
    def window(start: float, score: float) -> Window:
        return Window(start, start + 2.0, [Prediction("run", score), Prediction("walk", 1 - score)])

    windows = [window(0.0, 0.9), window(1.0, 0.4), window(2.0, 0.8), window(3.0, 0.85)]
    timeline = Timeline("v.mp4", 25.0, 50, 25, windows, np.zeros((4, 2)), ("run", "walk"), min_confidence=0.5)
    assert timeline.answers() == ["run", "unknown", "run", "run"]
    segments = timeline.segments()
    assert [(s.label, s.start_s, s.end_s) for s in segments] == [("run", 0.0, 1.5), ("run", 2.5, 5.0)]
    assert [w["answer"] for w in timeline.to_json()["windows"]] == ["run", "unknown", "run", "run"]
    assert "1 of 4 windows unknown" in timeline_summary(timeline)
    plain = Timeline("v.mp4", 25.0, 50, 25, windows, np.zeros((4, 2)), ("run", "walk"))
    assert [(s.start_s, s.end_s) for s in plain.segments()] == [(0.0, 5.0)]  # without a threshold: one segment


def test_the_risk_coverage_curve_ends_at_the_plain_top1_at_full_coverage():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55], [0.7, 0.3]])
    labels = np.array([0, 0, 0, 1, 1])  # right, wrong, right, right, wrong
    curve = risk_coverage(scores, labels)
    assert curve["coverage"][-1] == 1.0 and curve["accuracy"][-1] == pytest.approx(topk_accuracy(scores, labels, 1))
    assert curve["min_confidence"][-1] == 0.0
    by_coverage = dict(zip(curve["coverage"], curve["accuracy"]))
    assert by_coverage[0.2] == 1.0  # the most confident video (0.9) is right
    assert by_coverage[0.4] == 0.5  # then 0.8, wrong
    at_forty = curve["coverage"].index(0.4)
    threshold = curve["min_confidence"][at_forty]
    assert (scores.max(axis=1) > threshold).mean() == pytest.approx(0.4)  # the P that answers exactly that share


def test_the_service_answers_unknown_per_request_and_refuses_a_bad_threshold(trained_run):
    from fastapi.testclient import TestClient

    from actionmoe.predict.predictor import Predictor
    from actionmoe.web.server import create_app

    app = create_app(Predictor.from_checkpoint(trained_run / "best.safetensors", device="cpu"))
    video = (VIDEOS / "test.mp4").read_bytes()
    with TestClient(app) as client:
        sure = client.post("/api/predict?min_confidence=1", files={"file": ("test.mp4", video)}).json()
        plain = client.post("/api/predict", files={"file": ("test.mp4", video)}).json()
        bad = client.post("/api/predict?min_confidence=2", files={"file": ("test.mp4", video)})
    assert sure["answer"] == "unknown" and sure["predictions"]
    assert plain["answer"] == plain["predictions"][0]["label"]
    assert bad.status_code == 400 and "min_confidence must be between 0 and 1" in bad.json()["error"]
