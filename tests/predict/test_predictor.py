"""Predictor and ``actionmoe predict``: from a checkpoint alone, same numbers as evaluation."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from actionmoe.cli import main
from actionmoe.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint
from actionmoe.predict.predictor import Predictor


def test_predictions_match_the_evaluation_protocol(trained_run):
    checkpoint = trained_run / "best.safetensors"
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    evaluation = evaluate_checkpoint(checkpoint, EvaluationOptions(views=(1, 1), num_workers=0))
    from actionmoe.data.builders import build_splits

    test_videos = build_splits(predictor.restored.config.data).test
    for index in (0, len(test_videos) - 1):
        expected = evaluation.predictions.view_probs[index].mean(axis=0)
        assert np.allclose(predictor.probabilities(test_videos[index].path), expected, atol=1e-5)
    result = predictor.predict(test_videos[0].path, top_k=2)
    ranked = result.predictions
    assert len(ranked) == 2 and ranked[0].score >= ranked[1].score and ranked[0].label in predictor.classes
    assert result.source == str(test_videos[0].path) and result.error is None


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
    assert sidecar["input_shape"] == ["batch", 3, 8, 24, 24] and sidecar["classes"] == [
        "move_left",
        "move_right",
        "move_up",
    ]
    program = torch.export.load(str(out)).module()
    predictor = Predictor.from_checkpoint(trained_run / "best.safetensors", device="cpu")
    for batch in (2, 3):  # the batch axis is dynamic
        clip = torch.randn(batch, 3, 8, 24, 24)
        with torch.no_grad():
            expected = (predictor.restored.model(clip).logits / predictor.restored.temperature).softmax(dim=1)
            assert torch.allclose(program(clip), expected, atol=1e-5)  # the fitted temperature, inside the graph
    assert main(["export", "--checkpoint", str(trained_run / "missing.safetensors"), "--out", str(out)]) == 1


def test_one_api_for_paths_lists_and_frames(trained_run, dataset_root):
    from actionmoe import Predictor as TopLevelPredictor
    from actionmoe.data.decode import get_reader, read_clip

    predictor = TopLevelPredictor.from_checkpoint(trained_run / "best.safetensors", device="cpu", precision="fp32")
    video = next((dataset_root / "videos" / "move_up").iterdir())
    single = predictor.predict(video, top_k=3)
    (listed,) = predictor.predict([video], top_k=3)
    frames = read_clip(get_reader(predictor.decoder), video, lambda n: np.arange(n), None).frames  # [T, H, W, 3]
    from_frames = predictor.predict(frames, top_k=3)
    from_tensor = predictor.predict(torch.from_numpy(frames), top_k=3)
    for other in (listed, from_frames, from_tensor):
        assert [p.label for p in other.predictions] == [p.label for p in single.predictions]
        assert np.allclose([p.score for p in other.predictions], [p.score for p in single.predictions], atol=1e-5)
    assert from_frames.source == "<frames>" and set(single.to_json()) == {
        "path",
        "answer",
        "predictions",
        "seconds",
        "error",
    }


@pytest.fixture
def mixed_folder(tmp_path, shared_data, dataset_root) -> Path:
    """Real videos, synthetic ones, a corrupt AVI, a text file named .mp4, and files that are not videos."""
    folder = tmp_path / "footage"
    (folder / "nested").mkdir(parents=True)
    for path in sorted((shared_data / "videos").iterdir())[:3]:
        shutil.copy(path, folder / path.name)
    for path in sorted((dataset_root / "videos" / "move_left").iterdir())[:3]:
        shutil.copy(path, folder / "nested" / path.name)
    (folder / "broken.avi").write_bytes(b"garbage" * 100)
    (folder / "nested" / "notes.mp4").write_text("not a video\n" * 50)
    (folder / "readme.txt").write_text("ignored: not a video extension")
    (folder / "thumb.jpg").write_bytes(b"\xff\xd8\xff")
    return folder


def test_predict_many_in_worker_processes_equals_predict(trained_run, mixed_folder):
    from actionmoe.predict.inputs import expand_inputs

    predictor = Predictor.from_checkpoint(trained_run / "best.safetensors", device="cpu")
    videos = expand_inputs([str(mixed_folder)])
    assert len(videos) == 8 and not any(v.suffix in (".txt", ".jpg") for v in videos)
    results = predictor.predict_many(videos, top_k=2, workers=2, batch_size=3, progress=False)
    assert [r.source for r in results] == [str(v) for v in videos]
    errors = {Path(r.source).name: r.error for r in results if r.error}
    assert set(errors) == {"broken.avi", "notes.mp4"} and "not a video" in errors["notes.mp4"]
    for result in results:
        if result.error is None:
            expected = predictor.predict(result.source, top_k=2).predictions
            assert [p.label for p in result.predictions] == [p.label for p in expected]
            assert np.allclose([p.score for p in result.predictions], [p.score for p in expected], atol=1e-5)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_batch_prediction_to_csv_resumes_without_redoing_finished_files(trained_run, mixed_folder, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    argv = [
        "predict",
        str(mixed_folder),
        "--checkpoint",
        str(trained_run / "best.safetensors"),
        "--out",
        str(out),
        "--top-k",
        "2",
        "--workers",
        "2",
        "--batch-size",
        "2",
    ]
    assert main(argv) == 1  # two files are unreadable: reported in their rows and the summary
    rows = read_csv(out)
    assert len(rows) == 8 and {Path(r["path"]).name for r in rows if r["error"]} == {"broken.avi", "notes.mp4"}
    assert "8 videos predicted now, 0 already there, 2 unreadable" in capsys.readouterr().err
    predictor = Predictor.from_checkpoint(trained_run / "best.safetensors", device="cpu")
    for row in rows:
        if not row["error"]:
            expected = predictor.predict(row["path"], top_k=2).predictions
            assert [row["label_1"], row["label_2"]] == [p.label for p in expected]
            assert float(row["score_1"]) == pytest.approx(expected[0].score, abs=1e-5)

    lines = out.read_text().splitlines(keepends=True)  # as a run killed while writing its fourth row leaves it
    out.write_text("".join(lines[:4]) + lines[4][:10])
    assert main(argv) == (1 if any(row["error"] for row in rows[3:]) else 0)  # this run's unreadable files
    assert "5 videos predicted now, 3 already there" in capsys.readouterr().err
    again = read_csv(out)
    assert sorted(r["path"] for r in again) == sorted(r["path"] for r in rows) and again[:3] == rows[:3]


def test_batch_output_of_another_checkpoint_or_without_videos_is_refused(trained_run, mixed_folder, tmp_path, capsys):
    out = tmp_path / "predictions.jsonl"
    out.write_text(
        json.dumps({"path": "x.avi", "predictions": [], "seconds": 0, "error": None, "checkpoint_sha256": "another"})
        + "\n"
    )
    before = out.read_text()
    code = main(
        ["predict", str(mixed_folder), "--checkpoint", str(trained_run / "best.safetensors"), "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "another checkpoint" in err and out.read_text() == before
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("x")
    code = main(["predict", str(empty), "--checkpoint", str(trained_run / "best.safetensors"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "no video files" in err


def test_onnx_export_matches_pytorch_in_onnxruntime(trained_run, onnx_model, dataset_root, capsys):
    import onnxruntime

    out = onnx_model
    checkpoint = trained_run / "best.safetensors"
    sidecar = json.loads(Path(f"{onnx_model}.json").read_text())
    assert sidecar["format"] == "onnx" and sidecar["opset"] == 20 and sidecar["input_shape"][0] == "batch"
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    restored = Predictor.from_checkpoint(checkpoint, device="cpu").restored
    for batch in (1, 3):  # a trained router: ties between identical experts would break differently
        clip = torch.randn(batch, 3, 8, 24, 24, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = (restored.model(clip).logits / restored.temperature).softmax(dim=1).numpy()
        actual = session.run(None, {"clips": clip.numpy()})[0]
        assert actual.shape == (batch, 3) and np.abs(actual - expected).max() < 1e-4

    torch_predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    onnx_predictor = Predictor.from_checkpoint(out, device="cpu", engine="onnx")
    videos = sorted((dataset_root / "videos" / "move_left").iterdir())[:3]
    for mine, theirs in zip(onnx_predictor.predict(videos, top_k=3), torch_predictor.predict(videos, top_k=3)):
        assert [p.label for p in mine.predictions] == [p.label for p in theirs.predictions]
        assert np.allclose([p.score for p in mine.predictions], [p.score for p in theirs.predictions], atol=1e-4)
    capsys.readouterr()
    assert main(["predict", str(videos[0]), "--checkpoint", str(out), "--engine", "onnx", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["predictions"][0]["label"] in torch_predictor.classes


def shared_video() -> Path:
    return Path(__file__).parents[1] / "fixtures" / "videos" / "test.avi"


def test_onnx_without_its_sidecar_or_with_another_ones_is_one_line(onnx_model, tmp_path, capsys):
    video = tmp_path / "a.onnx"
    shutil.copy(onnx_model, video)  # without its sidecar
    shutil.copy(f"{onnx_model}.json", tmp_path / "c.onnx.json")
    (tmp_path / "c.onnx").write_bytes(onnx_model.read_bytes() + b"\0")  # another file, the original's sidecar
    capsys.readouterr()
    for model, message in ((video, "a.onnx.json is missing"), (tmp_path / "c.onnx", "describes another model")):
        code = main(["predict", str(shared_video()), "--checkpoint", str(model), "--engine", "onnx"])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and message in err, err


@pytest.mark.slow
def test_batch_prediction_killed_midway_resumes_without_redoing(trained_run, dataset_root, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    sources = sorted((dataset_root / "videos").glob("*/*.avi"))
    for index in range(240):  # enough work that the kill lands midway
        shutil.copy(sources[index % len(sources)], folder / f"clip_{index:03d}.avi")
    out = tmp_path / "predictions.jsonl"
    command = [
        sys.executable,
        "-m",
        "actionmoe",
        "-q",
        "predict",
        str(folder),
        "--checkpoint",
        str(trained_run / "best.safetensors"),
        "--out",
        str(out),
        "--batch-size",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 10:
            break
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = [json.loads(line)["path"] for line in out.read_text().splitlines() if line.endswith("}")]
    assert 10 <= len(done) < 240, "the run was not killed midway"
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{240 - len(done)} videos predicted now, {len(done)} already there" in result.stderr
    paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir()) and len(set(paths)) == 240
