"""A run as a shareable model folder: its card holds the run's numbers, it predicts as the run, tampering is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from actionmoe.predict.predictor import Predictor
from actionmoe.runtime.checkpoint import load_checkpoint
from tests.helpers import one_line, run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "videos"


@pytest.fixture(scope="module")
def model_folder(trained_run, tmp_path_factory) -> Path:
    from actionmoe.cli import main

    out = tmp_path_factory.mktemp("pushed") / "model"
    assert main(["push", str(trained_run), "--repo", "someone/tiny-motions", "--dry-run", str(out)]) == 0
    return out


def test_the_folder_holds_the_weights_a_config_and_a_card_with_the_run_s_numbers(model_folder, trained_run):
    assert sorted(p.name for p in model_folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert (model_folder / "model.safetensors").read_bytes() == (trained_run / "best.safetensors").read_bytes()
    config = json.loads((model_folder / "config.json").read_text())
    best = load_checkpoint(trained_run / "best.safetensors")
    assert config["format"] == "actionmoe-model" and config["sha256"] == best.sha256
    assert config["classes"] == best.meta["classes"] and config["preprocessing"] == best.meta["preprocessing"]
    card = (model_folder / "README.md").read_text()
    metrics = json.loads((trained_run / "evaluation" / "metrics.json").read_text())
    video = metrics["video_level"]
    assert card.startswith("---\nlibrary_name: actionmoe\npipeline_tag: video-classification\n")
    assert f"| {video['top1']:.4f} | {video['top5']:.4f} | {video['mean_class_accuracy']:.4f} |" in card
    for name, row in video["per_class"].items():
        assert f"| {name} | {row['recall']:.3f} | {row['support']} |" in card
    assert 'snapshot_download("someone/tiny-motions")' in card and "## Limitations" in card
    assert f"{metrics['videos']} videos" in card
    assert "- machine: cpu (" in card  # the run recorded what it trained on


def test_a_model_folder_predicts_as_the_checkpoint_it_came_from(model_folder, predictor):
    from_folder = Predictor.from_checkpoint(model_folder, device="cpu")
    for video in sorted(FIXTURES.iterdir()):
        expected, actual = predictor.predict(video), from_folder.predict(video)
        assert [p.label for p in actual.predictions] == [p.label for p in expected.predictions]
        assert [p.score for p in actual.predictions] == pytest.approx([p.score for p in expected.predictions])


def test_evaluate_on_a_model_folder_writes_inside_it(model_folder, trained_run, dataset_root, tmp_path, capsys):
    folder = tmp_path / "copy"
    shutil.copytree(model_folder, folder)
    code, _, err = run(capsys, "evaluate", "--checkpoint", str(folder), "--root", str(dataset_root))
    assert code == 0, err
    metrics = json.loads((folder / "evaluation" / "metrics.json").read_text())
    expected = json.loads((trained_run / "evaluation" / "metrics.json").read_text())
    assert metrics["video_level"]["top1"] == pytest.approx(expected["video_level"]["top1"])


def tampered(model_folder: Path, tmp_path: Path, how: str) -> Path:
    folder = tmp_path / how
    shutil.copytree(model_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    if how == "classes":
        config["classes"] = list(reversed(config["classes"]))
        (folder / "config.json").write_text(json.dumps(config))
    elif how == "weights":
        data = bytearray((folder / "model.safetensors").read_bytes())
        data[-1] ^= 1  # one bit of one weight
        (folder / "model.safetensors").write_bytes(bytes(data))
    elif how == "pickle":
        (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 not loaded")
    elif how == "not_ours":
        (folder / "config.json").write_text(json.dumps({"architectures": ["VideoMAE"]}))
    return folder


@pytest.mark.parametrize(
    "how, words",
    [
        ("classes", "disagree about the classes"),
        ("weights", "is not the file"),
        ("pickle", "pytorch_model.bin, a pickle-based or code file"),
        ("not_ours", "not an actionmoe model config"),
    ],
)
def test_a_tampered_folder_is_refused_in_one_line(model_folder, tmp_path, capsys, how, words):
    folder = tampered(model_folder, tmp_path, how)
    code, _, err = run(capsys, "predict", str(FIXTURES / "test.mp4"), "--checkpoint", str(folder))
    assert code == 1 and one_line(err) and words in err, err


def test_bad_push_arguments_are_one_line_before_any_work(trained_run, model_folder, tmp_path, capsys, monkeypatch):
    code, _, err = run(capsys, "push", str(trained_run), "--repo", "not a repo", "--dry-run", str(tmp_path / "x"))
    assert code == 2 and one_line(err) and "OWNER/NAME" in err and not (tmp_path / "x").exists()
    code, _, err = run(capsys, "push", str(trained_run), "--repo", "a/b", "--dry-run", str(model_folder))
    assert code == 2 and one_line(err) and "not empty" in err
    code, _, err = run(capsys, "push", str(tmp_path / "nothing"), "--repo", "a/b", "--dry-run", str(tmp_path / "y"))
    assert code == 1 and one_line(err) and "no run folder or checkpoint" in err
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no cached login
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf-home" / "stored_tokens"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    code, _, err = run(capsys, "push", str(trained_run), "--repo", "a/b")
    assert code == 2 and one_line(err) and "needs a Hub token" in err


@pytest.fixture
def model_hub():
    from tests.helpers import ModelHub, model_hub_handler, serving

    state = ModelHub()
    with serving(model_hub_handler(state)) as state.url:
        yield state


def hub_cli(hub, tmp_path: Path, *args: str, token: bool = True, cwd: Path | None = None):
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",  # the loopback Hub takes files inline, as the real one does for small ones
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = "hf_loopback_token"
    command = [sys.executable, "-m", "actionmoe", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.slow
def test_push_then_predict_from_the_hub_gives_the_local_predictions(
    trained_run, dataset_root, model_hub, tmp_path, predictor
):
    pushed = hub_cli(model_hub, tmp_path, "push", str(trained_run), "--repo", "someone/tiny-motions", "--private")
    assert pushed.returncode == 0, pushed.stderr
    assert model_hub.commits == [("someone/tiny-motions", ["README.md", "config.json", "model.safetensors"])]
    assert model_hub.created[0]["visibility"] == "private" and model_hub.revisions == ["main"]
    again = hub_cli(model_hub, tmp_path, "push", str(trained_run), "--repo", "someone/tiny-motions", "--revision", "v2")
    assert again.returncode == 0 and model_hub.revisions == ["main", "v2"], again.stderr  # an existing repo: kept
    card = model_hub.repos["someone/tiny-motions"]["README.md"].decode()
    metrics = json.loads((trained_run / "evaluation" / "metrics.json").read_text())
    assert f"| {metrics['video_level']['top1']:.4f} |" in card
    video = FIXTURES / "arm_wrestling.mp4"
    answered = hub_cli(
        model_hub, tmp_path, "predict", str(video), "--checkpoint", "hf://someone/tiny-motions", "--json"
    )
    assert answered.returncode == 0, answered.stderr
    remote = json.loads(answered.stdout)
    remote = remote[0] if isinstance(remote, list) else remote
    local = predictor.predict(video)
    assert [p["label"] for p in remote["predictions"]] == [p.label for p in local.predictions]
    assert [p["score"] for p in remote["predictions"]] == pytest.approx([p.score for p in local.predictions])
    reference = "hf://someone/tiny-motions"
    evaluated = hub_cli(
        model_hub, tmp_path, "evaluate", "--checkpoint", reference, "--root", str(dataset_root), cwd=tmp_path
    )
    assert evaluated.returncode == 0, evaluated.stderr
    written = json.loads((tmp_path / "runs/hub/someone--tiny-motions/evaluation/metrics.json").read_text())
    assert written["video_level"]["top1"] == pytest.approx(metrics["video_level"]["top1"])


@pytest.mark.slow
def test_hub_failures_are_one_line(trained_run, model_hub, tmp_path, model_folder):
    missing = hub_cli(model_hub, tmp_path, "predict", str(FIXTURES / "test.mp4"), "--checkpoint", "hf://someone/none")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "actionmoe: error: cannot fetch hf://someone/none" in missing.stderr
    model_hub.repos["evil/model"] = {**{p.name: p.read_bytes() for p in model_folder.iterdir()}, "model.bin": b"x"}
    model_hub.shas["evil/model"] = "1" * 40
    evil = hub_cli(model_hub, tmp_path, "predict", str(FIXTURES / "test.mp4"), "--checkpoint", "hf://evil/model")
    assert evil.returncode == 1 and "model.bin, a pickle-based or code file" in evil.stderr
    assert not any(path.endswith("model.safetensors") for _, path in model_hub.requests if "evil" in path)
    model_hub.repos["someone/notes"], model_hub.shas["someone/notes"] = {"README.md": b"# notes\n"}, "2" * 40
    foreign = hub_cli(model_hub, tmp_path, "predict", str(FIXTURES / "test.mp4"), "--checkpoint", "hf://someone/notes")
    assert foreign.returncode == 1 and "is not an actionmoe model folder" in foreign.stderr, foreign.stderr
    refused = hub_cli(model_hub, tmp_path, "push", str(trained_run), "--repo", "someone/x", token=False)
    assert refused.returncode == 2 and "needs a Hub token" in refused.stderr and not model_hub.commits


@pytest.mark.slow
def test_an_onnx_export_of_the_same_checkpoint_travels_with_the_model(trained_run, tmp_path, capsys, predictor):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(trained_run / "best.safetensors", run_dir)
    code, _, err = run(
        capsys, "export", "--checkpoint", str(run_dir / "best.safetensors"), "--out", str(run_dir / "x.onnx")
    )
    assert code == 0, err
    out = tmp_path / "model"
    code, _, err = run(capsys, "push", str(run_dir), "--repo", "a/b", "--dry-run", str(out))
    assert code == 0, err
    assert {"model.onnx", "model.onnx.json"} <= {p.name for p in out.iterdir()}
    video = FIXTURES / "test.mp4"
    onnx = Predictor.from_checkpoint(out / "model.onnx", device="cpu").predict(video)
    assert onnx.predictions[0].label == predictor.predict(video).predictions[0].label
