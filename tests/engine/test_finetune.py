"""A trained run seeds a run on other classes: weights loaded, backbone frozen, head new; it trains and resumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from actionmoe.config import load_config
from actionmoe.engine.finetune import freeze, initialise_from
from actionmoe.errors import WeightsError
from actionmoe.models.recognizer import build_model
from actionmoe.runtime.checkpoint import load_checkpoint
from tests.helpers import TINY, epochs_logged, one_line, run


@pytest.fixture(scope="module")
def two_new_classes(dataset_root, tmp_path_factory) -> Path:
    """A class-folder dataset of 2 classes the source run never saw (its videos, renamed)."""
    root = tmp_path_factory.mktemp("new_classes")
    for new, old in (("slide", "move_left"), ("lift", "move_up")):
        shutil.copytree(dataset_root / "videos" / old, root / new)
    return root


def finetune_args(root: Path, source: Path, out: Path, *extra: str) -> list:
    args = ["train", "--config", "demo", "--root", root, "--out", out]
    for item in [*TINY, "data.dataset=folder", f"model.init_from={source}", "train.freeze=backbone", *extra]:
        args += ["--set", item]
    return args


def test_the_backbone_and_motion_modules_load_and_the_head_starts_fresh(trained_run):
    source = load_checkpoint(trained_run / "best.safetensors").model
    config = load_config("demo", TINY)
    torch.manual_seed(1)
    model = build_model(config.model, 2)
    message = initialise_from(model, trained_run / "best.safetensors", ("slide", "lift"))
    state = model.state_dict()
    assert all(torch.equal(state[k], source[k]) for k in source if k.startswith(("backbone.", "motion.")))
    head = [k for k in state if k.startswith("head.")]
    assert head and all(state[k].shape != source[k].shape or not torch.equal(state[k], source[k]) for k in head)
    assert "head starts fresh for 2 classes" in message
    assert freeze(model, "backbone") == ("backbone",)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.motion.parameters())


def test_a_frozen_finetune_trains_without_touching_the_backbone_and_resumes(
    trained_run, two_new_classes, tmp_path, capsys
):
    source = load_checkpoint(trained_run / "best.safetensors").model
    out = tmp_path / "run"
    code, _, err = run(capsys, *finetune_args(two_new_classes, trained_run / "best.safetensors", out, "train.epochs=1"))
    assert code == 0, err
    trained = load_checkpoint(out / "last.safetensors").model
    backbone = [k for k in source if k.startswith("backbone.")]
    assert all(torch.equal(trained[k], source[k]) for k in backbone)  # no gradient, no BatchNorm update
    assert trained["head.experts.w_out"].shape[-1] == 2
    assert not all(torch.equal(trained[k], source[k]) for k in source if k.startswith("motion."))  # motion trains
    code, _, err = run(capsys, *finetune_args(two_new_classes, trained_run / "best.safetensors", out, "train.epochs=2"))
    assert code == 0, err
    assert [row["epoch"] for row in epochs_logged(out)] == [0, 1]


def test_bad_starting_points_are_one_line(trained_run, two_new_classes, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    for source, exit_code in ((tmp_path / "missing.safetensors", 1), (text, 1)):
        code, _, err = run(capsys, *finetune_args(two_new_classes, source, tmp_path / "run", "train.epochs=1"))
        assert code == exit_code and one_line(err) and str(source.name) in err, err
    other = ["model.motion_taps=[]"]  # the source has a motion module after layer4: it does not fit
    code, _, err = run(
        capsys, *finetune_args(two_new_classes, trained_run / "best.safetensors", tmp_path / "r2", *other)
    )
    assert code == 1 and one_line(err) and "does not fit this model" in err
    code, _, err = run(
        capsys, *finetune_args(two_new_classes, trained_run / "best.safetensors", tmp_path / "r3", "train.freeze=all")
    )
    assert code == 2 and one_line(err) and "train.freeze" in err
    for bad, key in (
        (["train.freeze=backbone+motion", "model.motion_taps=[]"], "train.freeze"),
        (["train.mixup_alpha=-0.2"], "train.mixup_alpha"),
        (["train.cutmix_alpha=-1"], "train.cutmix_alpha"),
    ):
        out = tmp_path / f"bad_{key}"
        code, _, err = run(capsys, *finetune_args(two_new_classes, trained_run / "best.safetensors", out, *bad))
        assert code == 2 and one_line(err) and key in err, err
        assert not out.exists()  # nothing written
    with pytest.raises(WeightsError):
        initialise_from(build_model(load_config("demo", TINY).model, 2), tmp_path / "nothing.pt", ("a", "b"))


def test_a_shared_model_folder_seeds_a_run_as_its_checkpoint_does(trained_run, two_new_classes, tmp_path, capsys):
    """model.init_from takes the folder `push --dry-run` writes (and hf://, which downloads that folder)."""
    folder = tmp_path / "pushed"
    code, _, err = run(capsys, "push", str(trained_run), "--repo", "a/b", "--dry-run", str(folder))
    assert code == 0, err
    out = tmp_path / "from_folder"
    code, _, err = run(capsys, *finetune_args(two_new_classes, folder, out, "train.epochs=1"))
    assert code == 0, err
    source = load_checkpoint(trained_run / "best.safetensors").model
    trained = load_checkpoint(out / "last.safetensors").model
    backbone = [k for k in source if k.startswith("backbone.")]
    assert all(torch.equal(trained[k], source[k]) for k in backbone)  # loaded from the folder, then frozen
