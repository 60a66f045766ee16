"""Exports that cannot run planted code, and exports whose sidecar is checked like a checkpoint.

Reliability round 3: a ``.pt2`` is a zip that ``torch.export.load`` would unpickle members of; the
ONNX sidecar was trusted field by field.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from actionmoe.cli import main
from actionmoe.errors import CheckpointError
from actionmoe.predict.export import file_sha256, load_program, pickled_members, sidecar_path
from tests.helpers import one_line, run

VIDEO = Path(__file__).parents[1] / "fixtures" / "videos" / "test.avi"


@pytest.fixture(scope="module")
def exports(trained_run, onnx_model, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("exports")
    checkpoint = trained_run / "best.safetensors"
    out = folder / "model.pt2"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--format", "torch"]) == 0
    return {"torch": folder / "model.pt2", "onnx": onnx_model}


class Planted:
    """Unpickling this creates the file named in it: the payload of a planted archive member."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_the_exported_program_holds_nothing_pickled(exports):
    with zipfile.ZipFile(exports["torch"]) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
        assert pickled_members(archive) == []
    assert all(data == b"" for name, data in members.items() if "sample_inputs" in name or name.endswith(".pt"))
    configs = [json.loads(data) for name, data in members.items() if name.endswith("_config.json")]
    assert configs and not any(entry["use_pickle"] for c in configs for entry in c["config"].values())


def test_load_program_runs_the_export_and_matches_the_model(exports, trained_run):
    from actionmoe.predict.predictor import Predictor

    module = load_program(exports["torch"])
    restored = Predictor.from_checkpoint(trained_run / "best.safetensors", device="cpu").restored
    clip = torch.randn(3, 3, 8, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the exported graph applies the temperature fitted after training
        expected = (restored.model(clip).logits / restored.temperature).softmax(dim=1)
        assert torch.allclose(module(clip), expected, atol=1e-5)


def plant(source: Path, target: Path, marker: Path, fix_sidecar: bool) -> Path:
    """Copy of ``source`` with a pickled payload added as ``data/sample_inputs/model.pt``."""
    shutil.copy(source, target)
    with zipfile.ZipFile(source) as archive:
        prefix = archive.namelist()[0].split("/")[0]
    payload = target.parent / "payload.pt"
    torch.save(Planted(marker), payload)
    with zipfile.ZipFile(target, "a") as archive:
        archive.write(payload, f"{prefix}/data/sample_inputs/model.pt")
    sidecar = json.loads(sidecar_path(source).read_text())
    if fix_sidecar:
        sidecar["model_sha256"] = file_sha256(target)
    sidecar_path(target).write_text(json.dumps(sidecar))
    return target


@pytest.mark.parametrize("fix_sidecar, message", [(False, "does not match its sidecar"), (True, "pickled")])
def test_a_planted_pickle_in_a_pt2_is_refused_before_anything_is_unpickled(exports, tmp_path, fix_sidecar, message):
    marker = tmp_path / "planted-code-ran"
    planted = plant(exports["torch"], tmp_path / "planted.pt2", marker, fix_sidecar)
    with pytest.raises(CheckpointError, match=message):
        load_program(planted)
    assert not marker.exists()


def test_load_program_without_a_sidecar_is_refused(exports, tmp_path):
    lonely = tmp_path / "lonely.pt2"
    shutil.copy(exports["torch"], lonely)
    with pytest.raises(CheckpointError, match="sidecar"):
        load_program(lonely)


def test_export_batch_size_beyond_the_dynamic_range_is_a_usage_error(capsys, trained_run, tmp_path):
    code, _, err = run(
        capsys, "export", "--checkpoint", trained_run / "best.safetensors", "--out", tmp_path / "m.pt2",
        "--batch-size", 5000,
    )  # fmt: skip
    assert code == 2 and one_line(err) and "--batch-size" in err and not (tmp_path / "m.pt2").exists()


EXPORT_LIMITED = """
import resource, sys
from pathlib import Path
from actionmoe.cli import main
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
sys.exit(main(["export", "--checkpoint", sys.argv[1], "--out", sys.argv[2]]))
"""


def test_export_on_a_full_disk_is_one_line_and_leaves_nothing(trained_run, tmp_path):
    """The real serialiser failing on a real write limit (RLIMIT_FSIZE in a child process)."""
    out = tmp_path / "out" / "model.pt2"
    out.parent.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", EXPORT_LIMITED, str(trained_run / "best.safetensors"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and one_line(result.stderr[result.stderr.find("actionmoe: error") :])
    assert "cannot write" in result.stderr and list(out.parent.iterdir()) == []


# --- the ONNX sidecar is checked like a checkpoint's metadata ------------------------------------------------


def edit_sidecar(exports, tmp_path, edit, model_bytes: bytes | None = None) -> Path:
    model = tmp_path / "edited.onnx"
    if model_bytes is None:
        shutil.copy(exports["onnx"], model)
    else:
        model.write_bytes(model_bytes)
    record = json.loads(sidecar_path(exports["onnx"]).read_text())
    record["model_sha256"] = file_sha256(model)
    record = edit(record)
    sidecar_path(model).write_text(json.dumps(record))
    return model


def nested(key: str, value):
    def edit(record):
        record["preprocessing"][key] = value
        return record

    return edit


def dropped(key: str):
    def edit(record):
        del record["preprocessing"][key]
        return record

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: {**r, "classes": r["classes"][:2]}, "classes but the model outputs"),
        (lambda r: [r], "not the sidecar of an actionmoe ONNX export"),
        (lambda r: {**r, "classes": ["a", "a", "b"]}, "invalid class list"),
        (dropped("clip_len"), "preprocessing"),
        (nested("clip_len", "eight"), "preprocessing"),
        (nested("clip_len", 16), "the model was exported for"),
        (nested("crop_size", -24), "preprocessing"),
        (nested("std", [0.0, 0.2, 0.2]), "preprocessing"),
        (nested("resize", [20000, 20000]), "preprocessing"),
    ],
)
def test_a_bad_onnx_sidecar_is_one_line(capsys, exports, tmp_path, edit, message):
    model = edit_sidecar(exports, tmp_path, edit)
    code, out, err = run(capsys, "predict", VIDEO, "--checkpoint", model, "--engine", "onnx")
    assert code == 1 and one_line(err) and message in err and out == "", err


@pytest.mark.parametrize("content", [b"", b"garbage" * 100])
def test_a_damaged_onnx_model_is_one_line(capsys, exports, tmp_path, content):
    model = edit_sidecar(exports, tmp_path, lambda r: r, model_bytes=content)
    code, _, err = run(capsys, "predict", VIDEO, "--checkpoint", model, "--engine", "onnx")
    assert code == 1 and one_line(err) and "damaged ONNX model" in err and "export again" in err, err


def test_the_onnx_engine_still_matches_after_the_checks(exports, trained_run):
    from actionmoe.predict.predictor import Predictor

    onnx = Predictor.from_checkpoint(exports["onnx"], device="cpu", engine="onnx").predict(VIDEO, top_k=3)
    torch_ = Predictor.from_checkpoint(trained_run / "best.safetensors", device="cpu").predict(VIDEO, top_k=3)
    assert [p.label for p in onnx.predictions] == [p.label for p in torch_.predictions]
    assert np.allclose([p.score for p in onnx.predictions], [p.score for p in torch_.predictions], atol=1e-4)


def test_pickle_is_what_the_planted_member_would_have_run():
    """The test's payload really is live: unpickling it outside the loader creates the marker."""
    assert Planted.__reduce__(Planted(Path("x")))[0] is Path.touch
    assert pickle.dumps(Planted(Path("x")))[:1] == b"\x80"
