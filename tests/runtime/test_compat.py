"""Reading runs and checkpoints written by earlier versions (runtime.compat)."""

from __future__ import annotations

from pathlib import Path

import pytest

from actionmoe.config import SHAZEER_NOISE_STD, config_to_dict, load_config
from actionmoe.engine.run import run_metadata
from actionmoe.errors import CheckpointError
from actionmoe.runtime.compat import check_compatible, saved_config


def test_resume_compatibility_names_what_differs():
    config = load_config("demo")
    meta = run_metadata(config, ("a", "b"))
    check_compatible(meta, config, ("a", "b"), Path("last.safetensors"))
    with pytest.raises(CheckpointError, match="trained on 2 classes .* has 3"):
        check_compatible(meta, config, ("a", "b", "c"), Path("last.safetensors"))
    with pytest.raises(CheckpointError, match=r"another model config \(model.num_experts: 4 in the run, 8 here\)"):
        check_compatible(meta, load_config("demo", ["model.num_experts=8"]), ("a", "b"), Path("last.safetensors"))
    with pytest.raises(CheckpointError, match="other preprocessing"):
        check_compatible(meta, load_config("demo", ["data.clip_len=4"]), ("a", "b"), Path("last.safetensors"))
    check_compatible(meta, load_config("demo", ["train.epochs=40"]), ("a", "b"), Path("last.safetensors"))


def test_a_run_from_before_the_routing_keys_existed_resumes_only_as_the_shazeer_model_it_trained():
    shazeer = ["model.gate_init_std=0", "model.shared_expert=false", "model.balance_weight=0.01"]
    shazeer.append(f"model.noise_std_start={SHAZEER_NOISE_STD}")
    meta = run_metadata(load_config("demo", shazeer), ("a", "b"))
    for key in ("gate_init_std", "noise_std_start", "shared_expert"):
        del meta["config"]["model"][key]  # written by a version without these keys
    check_compatible(meta, load_config("demo", shazeer), ("a", "b"), Path("last.safetensors"))
    with pytest.raises(CheckpointError, match="model.gate_init_std: 0.0 in the run, 0.02 here"):
        check_compatible(meta, load_config("demo", shazeer[1:]), ("a", "b"), Path("last.safetensors"))


@pytest.mark.parametrize(
    "override, key",
    [("train.router_lr_scale=10", "train.router_lr_scale"), ("train.optimizer=sgd", "train.optimizer")],
)
def test_resuming_with_another_optimizer_layout_is_refused_by_name(override, key):
    """Seen in an ablation run: a traceback from torch's optimizer.load_state_dict instead of one line."""
    meta = run_metadata(load_config("demo"), ("a", "b"))
    with pytest.raises(CheckpointError, match=f"other optimizer settings \\({key}: "):
        check_compatible(meta, load_config("demo", [override]), ("a", "b"), Path("last.safetensors"))
    check_compatible(meta, load_config("demo", ["train.router_lr_scale=1.0"]), ("a", "b"), Path("last.safetensors"))


def test_settings_a_model_does_not_use_do_not_block_its_resume():
    """A linear head has no router and a model without motion taps no motion module: their keys are moot."""
    linear = run_metadata(load_config("demo", ["model.head=linear", "model.balance_weight=0.01"]), ("a", "b"))
    check_compatible(linear, load_config("demo", ["model.head=linear"]), ("a", "b"), Path("last.safetensors"))
    moe = run_metadata(load_config("demo", ["model.balance_weight=0.01"]), ("a", "b"))
    with pytest.raises(CheckpointError, match="model.balance_weight: 0.01 in the run, 0.1 here"):
        check_compatible(moe, load_config("demo"), ("a", "b"), Path("last.safetensors"))
    with pytest.raises(CheckpointError, match=r"config \(model.head: linear in the run, moe here\);"):
        check_compatible(linear, load_config("demo", ["model.balance_weight=0.01"]), ("a", "b"), Path("x"))
    still = run_metadata(load_config("demo", ["model.motion_taps=[]", "model.motion_fusion=residual"]), ("a", "b"))
    check_compatible(still, load_config("demo", ["model.motion_taps=[]"]), ("a", "b"), Path("last.safetensors"))


def test_a_saved_config_from_before_a_routing_key_existed_reads_as_the_model_it_trained():
    """Runs written before these keys had Shazeer's zero gate, its noise start and no shared expert,
    whatever today's defaults are."""
    saved = config_to_dict(load_config("motion12"))
    for key in ("gate_init_std", "noise_std_start", "shared_expert", "noise_std_learned"):
        del saved["model"][key]
    model = saved_config(saved).model
    assert (model.gate_init_std, model.noise_std_start, model.shared_expert) == (0.0, SHAZEER_NOISE_STD, False)
    assert model.noise_std_learned  # every run before the key had a learned std
    assert load_config("motion12", ["model.shared_expert=true"]).model.shared_expert
