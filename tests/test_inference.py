"""Predictor and ``actionmoe predict``: from a checkpoint alone, same numbers as evaluation."""

import json

import numpy as np

from actionmoe.cli import main
from actionmoe.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint
from actionmoe.inference import Predictor


def test_predictions_match_the_evaluation_protocol(trained_run):
    checkpoint = trained_run / "best.safetensors"
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    evaluation = evaluate_checkpoint(checkpoint, EvaluationOptions(views=(1, 1), num_workers=0))
    from actionmoe.data.builders import build_splits

    test_videos = build_splits(predictor.restored.config.data).test
    for index in (0, len(test_videos) - 1):
        expected = evaluation.predictions.view_probs[index].mean(axis=0)
        assert np.allclose(predictor.probabilities(test_videos[index].path), expected, atol=1e-5)
    ranked = predictor.predict(test_videos[0].path, top_k=2)
    assert len(ranked) == 2 and ranked[0].score >= ranked[1].score and ranked[0].label in predictor.classes


def test_predict_command(trained_run, dataset_root, tmp_path, capsys):
    video = next((dataset_root / "videos" / "move_up").iterdir())
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"garbage")
    grid = tmp_path / "grid.png"
    code = main(
        [
            "predict",
            str(video),
            str(broken),
            "--checkpoint",
            str(trained_run / "best.safetensors"),
            "--json",
            "--grid",
            str(grid),
        ]
    )
    good, bad = json.loads(capsys.readouterr().out)
    assert code == 1 and good["path"] == str(video) and good["error"] is None
    assert len(good["predictions"]) == 3 and abs(sum(p["score"] for p in good["predictions"]) - 1) < 1e-4
    assert bad["path"] == str(broken) and bad["predictions"] == [] and "cannot open" in bad["error"]
    from PIL import Image

    image = np.asarray(Image.open(grid).convert("RGB"), dtype=float)
    assert image.shape[0] > 200 and image.shape[1] > 400 and image.std() > 10
    assert image[:, : image.shape[1] // 2].std() > image[:, image.shape[1] // 2 :].std()  # thumbnail beside a grey cell


def test_exported_program_matches_the_model(trained_run, tmp_path, capsys):
    import torch

    out = tmp_path / "model.pt2"
    assert (
        main(["export", "--checkpoint", str(trained_run / "best.safetensors"), "--out", str(out), "--batch-size", "2"])
        == 0
    )
    sidecar = json.loads((tmp_path / "model.pt2.json").read_text())
    assert sidecar["input_shape"] == [2, 3, 8, 24, 24] and sidecar["classes"] == ["move_left", "move_right", "move_up"]
    program = torch.export.load(str(out)).module()
    predictor = Predictor.from_checkpoint(trained_run / "best.safetensors", device="cpu")
    clip = torch.randn(2, 3, 8, 24, 24)
    with torch.no_grad():
        expected = predictor.restored.model(clip).logits.softmax(dim=1)
        assert torch.allclose(program(clip), expected, atol=1e-5)
    assert main(["export", "--checkpoint", str(trained_run / "missing.safetensors"), "--out", str(out)]) == 1
