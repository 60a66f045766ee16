"""A run folder written by actionmoe 0.1.0 (before the architecture's second step) resumes, evaluates and predicts.

``tests/fixtures/runs/v0.1.0`` keeps what that version wrote for a one-epoch run of the tiny config on
the test dataset: ``config.json``, ``metrics.jsonl`` and, for each checkpoint, its safetensors header
(the JSON metadata verbatim, every tensor's name, shape and dtype). The tensors themselves (130 MB)
are not kept: the test rebuilds files with exactly that header, fresh weights of the recorded shapes,
zeroed optimizer moments and this machine's RNG state, so any change in how a checkpoint's names,
shapes, metadata or optimizer layout are read shows up here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from actionmoe.models.recognizer import build_model
from actionmoe.predict.predictor import Predictor
from actionmoe.runtime.checkpoint import rng_state
from actionmoe.runtime.compat import saved_config
from tests.helpers import FIXTURES, cli_args, epochs_logged, run

OLD_RUN = FIXTURES / "runs" / "v0.1.0"
DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "U8": torch.uint8}


def write_old_checkpoint(header_file: Path, out: Path) -> dict:
    """A checkpoint file with the recorded header: its metadata verbatim, tensors of the recorded names and shapes."""
    header = json.loads(header_file.read_text())
    meta = json.loads(header["metadata"]["actionmoe"])
    torch.manual_seed(0)
    model = build_model(saved_config(meta["config"]).model, len(meta["classes"])).state_dict()
    rng = rng_state()
    tensors = {}
    for name, (shape, dtype) in header["tensors"].items():
        kind, _, key = name.partition(".")
        if kind == "model":
            tensors[name] = model.pop(key)
        elif kind == "rng":
            tensors[name] = rng.pop(key)
        else:  # optimizer moments and step counts
            tensors[name] = torch.zeros(shape, dtype=DTYPES[dtype])
        assert list(tensors[name].shape) == shape, name
    assert model == {}, f"tensors this version builds that 0.1.0 did not save: {sorted(model)[:3]}"
    save_file(tensors, str(out), metadata=header["metadata"])
    return meta


@pytest.fixture
def old_run(tmp_path) -> Path:
    folder = tmp_path / "hmdb51-split1"
    folder.mkdir()
    for name in ("config.json", "metrics.jsonl"):
        shutil.copyfile(OLD_RUN / name, folder / name)
    for name in ("last", "best"):
        write_old_checkpoint(OLD_RUN / f"{name}.header.json", folder / f"{name}.safetensors")
    return folder


def test_an_old_checkpoint_evaluates_and_predicts(old_run, dataset_root, tmp_path, capsys):
    best = old_run / "best.safetensors"
    code, out, err = run(capsys, "evaluate", "--checkpoint", best, "--root", dataset_root, "--out", tmp_path / "eval")
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["videos"] == 9 and 0 <= metrics["video_level"]["top1"] <= 1
    predictor = Predictor.from_checkpoint(best, "cpu")
    recorded = json.loads(json.loads((OLD_RUN / "best.header.json").read_text())["metadata"]["actionmoe"])
    assert predictor.classes == tuple(recorded["classes"])
    video = next(dataset_root.rglob("*.avi"))
    result = predictor.predict(video, top_k=2)
    assert result.error is None and [p.label in predictor.classes for p in result.predictions] == [True, True]


def test_an_old_run_resumes_where_it_stopped(old_run, dataset_root, capsys):
    code, out, err = run(capsys, *cli_args(dataset_root, old_run, "train.epochs=2"))
    assert code == 0, err
    assert [row["epoch"] for row in epochs_logged(old_run)] == [0, 1]  # epoch 0 from 0.1.0, epoch 1 now
    assert "trained to epoch 2" in out
