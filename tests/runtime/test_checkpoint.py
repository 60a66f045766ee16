from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from actionmoe import files
from actionmoe.errors import CheckpointError, OutputError
from actionmoe.runtime.checkpoint import Checkpoint, load_checkpoint, rng_state, save_checkpoint
from tests.helpers import one_line, run


def sample_checkpoint() -> Checkpoint:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    meta = {"epoch": 3, "classes": ["a", "b"], "config": {"x": [1, 2]}, "best_metric": float("-inf")}
    return Checkpoint(model.state_dict(), meta, optimizer.state_dict(), rng_state())


def test_round_trip_restores_everything(tmp_path):
    original = sample_checkpoint()
    save_checkpoint(tmp_path / "c.safetensors", original)
    loaded = load_checkpoint(tmp_path / "c.safetensors", training_state=True)
    assert all(torch.equal(loaded.model[k], v) for k, v in original.model.items())
    assert loaded.meta["classes"] == ["a", "b"] and loaded.meta["epoch"] == 3
    assert loaded.meta["best_metric"] == float("-inf")
    optimizer = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    optimizer.load_state_dict(loaded.optimizer)
    assert torch.equal(optimizer.state_dict()["state"][0]["exp_avg"], original.optimizer["state"][0]["exp_avg"])
    assert torch.equal(loaded.rng["torch"], original.rng["torch"])
    inference_only = load_checkpoint(tmp_path / "c.safetensors")
    assert inference_only.optimizer is None and inference_only.rng == {}


def test_the_file_holds_no_pickle(tmp_path):
    save_checkpoint(tmp_path / "c.safetensors", sample_checkpoint())
    data = (tmp_path / "c.safetensors").read_bytes()
    assert b"\x80\x02" not in data[:64] and data[8:9] == b"{"  # safetensors: length + JSON header


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, sample_checkpoint())
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", crash)
    changed = sample_checkpoint()
    changed.meta["epoch"] = 4
    with pytest.raises(OutputError, match="disk full"):
        save_checkpoint(path, changed)
    assert path.read_bytes() == before and load_checkpoint(path).meta["epoch"] == 3
    assert os.listdir(tmp_path) == ["last.safetensors"]


WRITE_LIMITED = """
import resource, signal, sys
from pathlib import Path
import torch
from actionmoe.runtime.checkpoint import Checkpoint, save_checkpoint
from actionmoe.errors import OutputError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit a write fails with EFBIG, as a full disk fails
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    save_checkpoint(Path(sys.argv[1]), Checkpoint({"w": torch.zeros(1 << 20)}, {"epoch": 0}))
except OutputError as exc:
    print("OutputError:", exc)
"""


def test_a_real_write_error_inside_safetensors_is_an_output_error(tmp_path):
    """The real writer failing on a real I/O error (a file size limit in a child process)."""
    result = subprocess.run(
        [sys.executable, "-c", WRITE_LIMITED, str(tmp_path / "last.safetensors")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("OutputError: cannot write") and "nothing was changed" in result.stdout
    assert os.listdir(tmp_path) == []  # no temporary file left behind


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":1}'])
def test_corrupt_or_foreign_files_are_clear_errors(tmp_path, content):
    path = tmp_path / "c.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="damaged or not a safetensors file|not an actionmoe checkpoint"):
        load_checkpoint(path)


def test_plain_safetensors_without_metadata(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match="no actionmoe metadata"):
        load_checkpoint(tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_a_checkpoint_saved_before_the_routing_keys_existed_restores_as_the_model_it_trained(tmp_path):
    """Its config lacks gate_init_std, noise_std_start and shared_expert: read as Shazeer's head
    (4 experts, no shared one), whatever today's defaults are, so its weights still fit."""
    from actionmoe.config import load_config
    from actionmoe.engine.run import run_metadata
    from actionmoe.models.recognizer import build_model
    from actionmoe.runtime.restore import restore_model

    shazeer = ["model.gate_init_std=0", "model.shared_expert=false", "model.noise_std_start=0.7031471805599453"]
    config = load_config("demo", shazeer)
    model = build_model(config.model, 2)
    meta = run_metadata(config, ("a", "b"))
    for key in ("gate_init_std", "noise_std_start", "shared_expert"):
        del meta["config"]["model"][key]
    save_checkpoint(tmp_path / "old.safetensors", Checkpoint(model.state_dict(), meta))
    restored = restore_model(tmp_path / "old.safetensors")
    assert restored.model.head.experts.w1.shape[0] == 4 and restored.model.head.shared == 0
    assert restored.config.model.noise_std_start == config.model.noise_std_start


def edited_checkpoint(trained_run: Path, tmp_path: Path, edit) -> Path:
    checkpoint = load_checkpoint(trained_run / "best.safetensors")
    edit(checkpoint)
    path = tmp_path / "edited.safetensors"
    save_checkpoint(path, checkpoint)
    return path


def set_nan(checkpoint: Checkpoint) -> None:
    name = next(k for k, v in checkpoint.model.items() if v.is_floating_point())
    checkpoint.model[name] = torch.full_like(checkpoint.model[name], float("nan"))


@pytest.mark.parametrize(
    "edit, message",
    [
        (set_nan, "non-finite weights"),
        (lambda c: c.meta.update(classes=["a", "a", "b"]), "invalid class list"),
        (lambda c: c.meta.update(classes=["a", "", "b"]), "invalid class list"),
        (lambda c: c.meta.update(classes="abc"), "invalid class list"),
        (lambda c: c.meta.update(classes=["a", "b", "c", "d"]), "the class list and the weights disagree"),
    ],
)
def test_a_bad_checkpoint_is_refused_by_predict_in_one_line(capsys, trained_run, dataset_root, tmp_path, edit, message):
    checkpoint = edited_checkpoint(trained_run, tmp_path, edit)
    video = next((dataset_root / "videos" / "move_up").iterdir())
    code, out, err = run(capsys, "predict", video, "--checkpoint", checkpoint, "--json")
    assert code == 1 and one_line(err) and message in err and out == ""


def test_an_unreadable_checkpoint_is_called_unreadable(capsys, trained_run, monkeypatch):
    from actionmoe.runtime import checkpoint

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint, "safe_open", denied)
    code, _, err = run(capsys, "evaluate", "--checkpoint", trained_run / "best.safetensors")
    assert code == 1 and one_line(err) and "cannot read" in err and "permissions" in err and "corrupt" not in err


def test_a_damaged_checkpoint_gives_advice_the_command_can_follow(capsys, tmp_path):
    damaged = tmp_path / "best.safetensors"
    damaged.write_bytes(b"\x00" * 100)
    code, _, err = run(capsys, "evaluate", "--checkpoint", damaged)
    assert code == 1 and one_line(err) and "damaged" in err and "--force" not in err
