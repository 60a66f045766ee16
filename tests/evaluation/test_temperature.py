"""Temperature scaling: fitted on validation, stored in the checkpoint, applied by every way of predicting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from actionmoe.evaluation.calibration import fit_temperature, nll, scaled_video_probs


def overconfident(n: int = 3000, classes: int = 5, sharpen: float = 4.0, seed: int = 0, views: int = 1):
    """Logits whose softmax is calibrated by construction (labels drawn from it), then sharpened ``sharpen`` times."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, views, classes))  # [N, V, C]
    probs = scaled_video_probs(logits, 1.0)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return logits * sharpen, labels


def test_fitting_recovers_the_temperature_that_undoes_the_over_confidence():
    logits, labels = overconfident(sharpen=4.0)
    temperature = fit_temperature(logits, labels)
    assert 3.0 < temperature < 5.5
    assert nll(logits, labels, temperature) < nll(logits, labels, 1.0) - 0.2
    before, after = scaled_video_probs(logits, 1.0), scaled_video_probs(logits, temperature)
    assert (before.argmax(axis=1) == after.argmax(axis=1)).all()  # a temperature never changes a view's argmax
    np.testing.assert_allclose(after.sum(axis=1), 1.0, atol=1e-6)


def test_an_already_calibrated_model_keeps_a_temperature_near_one_and_never_gets_worse():
    logits, labels = overconfident(sharpen=1.0, seed=1, views=2)
    temperature = fit_temperature(logits, labels)
    assert 0.9 < temperature < 1.1
    assert nll(logits, labels, temperature) <= nll(logits, labels, 1.0) + 1e-12


def test_view_probabilities_are_averaged_after_scaling_each_view():
    logits = np.array([[[2.0, 0.0], [0.0, 4.0]]])  # one video, two views
    expected = (torch.tensor(logits[0]) / 2.0).softmax(dim=1).mean(dim=0).numpy()
    np.testing.assert_allclose(scaled_video_probs(logits, 2.0)[0], expected, rtol=1e-6)


def test_fitting_refuses_nothing_to_fit_on():
    with pytest.raises(ValueError, match="no validation videos"):
        fit_temperature(np.zeros((0, 1, 3)), np.zeros(0, dtype=int))


@pytest.fixture(scope="module")
def overconfident_checkpoint(trained_run, tmp_path_factory):
    """The tiny run's best weights with the head's outputs multiplied by 8 (the same argmax, far too sure)."""
    from actionmoe.runtime.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

    original = load_checkpoint(trained_run / "best.safetensors")
    model = {name: t.clone() for name, t in original.model.items()}
    for name in model:
        if name in (
            "head.experts.w_out",
            "head.experts.b_out",
            "head.fc.weight",
            "head.fc.bias",
        ):  # logits linear in these
            model[name] *= 8.0
    meta = {k: v for k, v in original.meta.items() if k != "calibration"}
    path = tmp_path_factory.mktemp("overconfident") / "best.safetensors"
    save_checkpoint(path, Checkpoint(model, meta))
    return path


def test_training_fits_a_temperature_on_validation_and_the_report_shows_both(trained_run):
    from actionmoe.runtime.checkpoint import load_checkpoint

    record = load_checkpoint(trained_run / "best.safetensors").meta["calibration"]
    assert record["fitted_on"] == "validation" and record["videos"] > 0
    assert record["nll_after"] <= record["nll_before"]
    metrics = json.loads((trained_run / "evaluation" / "metrics.json").read_text())
    assert metrics["calibration"]["temperature"] == pytest.approx(record["temperature"])
    assert {"ece", "brier"} <= set(metrics["calibration"]["before_scaling"])
    report = (trained_run / "evaluation" / "report.md").read_text()
    assert "temperature" in report and "Before temperature scaling" in report


def test_an_overconfident_model_gets_a_temperature_above_one_that_keeps_its_answers(
    overconfident_checkpoint, dataset_root
):
    from actionmoe.evaluation.calibration import calibrate_checkpoint
    from actionmoe.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint
    from actionmoe.runtime.checkpoint import load_checkpoint

    options = EvaluationOptions(root=str(dataset_root), device="cpu", num_workers=0)
    plain = evaluate_checkpoint(overconfident_checkpoint, options).metrics
    record = calibrate_checkpoint(overconfident_checkpoint, root=str(dataset_root), device="cpu", num_workers=0)
    assert record["temperature"] > 2.0 and record["nll_after"] < record["nll_before"]
    assert load_checkpoint(overconfident_checkpoint).meta["calibration"] == record
    scaled = evaluate_checkpoint(overconfident_checkpoint, options).metrics
    assert scaled["video_level"]["top1"] == plain["video_level"]["top1"]  # one view a video: the same argmax
    assert scaled["calibration"]["before_scaling"]["ece"] == pytest.approx(plain["video_level"]["calibration"]["ece"])


def test_the_temperature_survives_export_to_onnx(overconfident_checkpoint, dataset_root, tmp_path):
    from actionmoe.evaluation.calibration import calibrate_checkpoint
    from actionmoe.predict.export import export_checkpoint
    from actionmoe.predict.predictor import Predictor
    from actionmoe.runtime.checkpoint import load_checkpoint
    from tests.helpers import FIXTURES

    if "calibration" not in load_checkpoint(overconfident_checkpoint).meta:
        calibrate_checkpoint(overconfident_checkpoint, root=str(dataset_root), device="cpu", num_workers=0)
    video = FIXTURES / "videos" / "test.avi"
    torch_probs = Predictor.from_checkpoint(overconfident_checkpoint, device="cpu").probabilities(video)
    export_checkpoint(overconfident_checkpoint, tmp_path / "model.onnx")
    onnx_probs = Predictor.from_checkpoint(tmp_path / "model.onnx", device="cpu").probabilities(video)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
    restored_t = load_checkpoint(overconfident_checkpoint).meta["calibration"]["temperature"]
    assert json.loads((tmp_path / "model.onnx.json").read_text())["temperature"] == pytest.approx(restored_t)
    assert torch_probs.max() < 0.999  # softened: the raw head would be near-certain


def test_no_temperature_is_fitted_when_val_on_test_makes_validation_the_test_split(trained_run, dataset_root, tmp_path):
    """``data.val_on_test`` (the original notebook's protocol): fitting there would fit on test."""
    import shutil

    from actionmoe.evaluation.calibration import calibrate_checkpoint
    from actionmoe.runtime.checkpoint import load_checkpoint, save_checkpoint

    original = load_checkpoint(trained_run / "best.safetensors")
    meta = json.loads(json.dumps(original.meta))
    meta["config"]["data"]["val_on_test"] = True
    meta.pop("calibration", None)
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, type(original)(original.model, meta))
    record = calibrate_checkpoint(path, root=str(dataset_root), device="cpu", num_workers=0)
    assert record["temperature"] == 1.0 and record["fitted_on"] is None and "test split" in record["reason"]
    shutil.rmtree(tmp_path, ignore_errors=True)
