"""GPU code paths run on the CPU: precision policy, autocast, GradScaler, channels_last_3d, compile, checkpointing."""

import logging

import pytest
import torch
import torch.nn.functional as F

from actionmoe.cli import main
from actionmoe.config import ModelConfig
from actionmoe.engine.run import train_model
from actionmoe.errors import UsageError
from actionmoe.models.recognizer import build_model
from actionmoe.runtime.checkpoint import load_checkpoint, save_checkpoint
from actionmoe.runtime.device import autocast, choose_precision
from tests.helpers import cli_args, epochs_logged, tiny_config

SMALL = ModelConfig(gate_hidden=16, expert_hidden=32, layer4_temporal_stride=False, motion_taps=("layer3", "layer4"))


@pytest.mark.parametrize(
    "device, capability, precision",
    [
        ("cpu", None, "fp32"),
        ("cuda", (6, 0), "fp16"),
        ("cuda", (7, 0), "fp16"),
        ("cuda", (7, 5), "fp16"),
        ("cuda", (8, 0), "bf16"),
        ("cuda", (8, 9), "bf16"),
        ("cuda", (9, 0), "bf16"),
    ],
)
def test_auto_precision_table(device, capability, precision):
    policy = choose_precision("auto", device, capability)
    assert policy.precision == precision and policy.uses_scaler == (precision == "fp16") and policy.reason


def test_explicit_choices_and_impossible_ones():
    assert choose_precision("fp32", "cuda", (9, 0)).precision == "fp32"
    assert choose_precision("fp16", "cuda", (9, 0)).precision == "fp16"
    cpu_fp16 = choose_precision("fp16", "cpu")
    assert cpu_fp16.precision == "fp16" and cpu_fp16.warn and "slower than fp32" in cpu_fp16.reason
    with pytest.raises(UsageError, match="compute capability 7.5.*use train.precision=fp16 or auto"):
        choose_precision("bf16", "cuda", (7, 5))


def clips(batch=2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, 8, 32, 32, generator=generator), torch.tensor([0, 3][:batch])


def output_dtypes(model, clip, precision) -> dict[str, torch.dtype]:
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            tensor = output[0] if isinstance(output, tuple) else output
            if isinstance(tensor, torch.Tensor):
                seen[name] = tensor.dtype

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules() if name]
    with autocast(torch.device("cpu"), precision):
        out = model(clip)
    for handle in handles:
        handle.remove()
    return seen | {"logits": out.logits.dtype}


def test_a_bf16_training_step_on_cpu_is_close_to_fp32_and_the_router_stays_float32():
    torch.manual_seed(0)
    model = build_model(SMALL, 5).train()
    clip, labels = clips()
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(1)  # the same gate noise and dropout
        with autocast(torch.device("cpu"), precision):
            out = model(clip)
            losses[precision] = F.cross_entropy(out.logits.float(), labels) + out.aux_loss
        losses[precision].backward()
    # bf16 keeps 8 bits of mantissa; through the random backbone's train-mode BatchNorm at batch 2 the
    # logits move by up to ~0.25, and the shared expert adds a second expert output to them (measured
    # over 4 model seeds: loss differences 0.02-0.06 on a loss of ~1.7, 0.00-0.04 without it).
    assert torch.isfinite(losses["bf16"]) and abs(losses["bf16"].item() - losses["fp32"].item()) < 0.1
    dtypes = output_dtypes(model, clip, "bf16")
    assert dtypes["backbone.stem.0"] == torch.bfloat16  # the convolutions run in bf16
    assert dtypes["head.router.w_gate"] == torch.float32 and dtypes["head.router.hidden"] == torch.float32


def test_the_fp16_policy_puts_no_bf16_anywhere_in_the_step():
    policy = choose_precision("auto", "cuda", (7, 5))  # a T4
    model = build_model(SMALL, 5).train()
    dtypes = output_dtypes(model, clips()[0], policy.precision)
    assert torch.bfloat16 not in dtypes.values() and dtypes["backbone.stem.0"] == torch.float16
    assert dtypes["head.router.w_gate"] == torch.float32


# fp16 autocast on a CPU is emulated, about 5x slower than fp32 here: the smallest clips the model takes
SMALL_CLIPS = ["data.crop_size=16", "data.resize=[16,20]"]


@pytest.mark.slow
def test_fp16_with_loss_scaling_trains_on_cpu_and_resume_restores_the_scale(dataset_root, tmp_path, caplog):
    # through the engine: the calibration and test evaluation that `actionmoe train` adds check nothing here
    run_dir, fp16 = tmp_path / "run", ["train.precision=fp16", "data.val_fraction=0.5", *SMALL_CLIPS]
    with caplog.at_level(logging.WARNING, logger="actionmoe"):
        train_model(tiny_config(dataset_root, "train.epochs=1", *fp16), run_dir)
    assert any("precision fp16: fp16 on the CPU as asked" in message for message in caplog.messages)
    last = load_checkpoint(run_dir / "last.safetensors", training_state=True)
    assert 0 < last.meta["grad_scaler"]["scale"] <= 65536.0  # torch starts at 2**16 and halves on each overflow
    huge = 2.0**40  # overflows the fp16 gradients: the steps are skipped and the scale halves
    last.meta["grad_scaler"]["scale"] = huge
    save_checkpoint(run_dir / "last.safetensors", last)
    assert train_model(tiny_config(dataset_root, "train.epochs=2", *fp16), run_dir).trained
    resumed = load_checkpoint(run_dir / "last.safetensors").meta["grad_scaler"]["scale"]
    assert 65536.0 < resumed < huge  # restored from the checkpoint, then lowered by the skipped steps
    rows = epochs_logged(run_dir)
    assert [row["epoch"] for row in rows] == [0, 1] and rows[1]["skipped_steps"] >= 1  # counted, not a NaN stop


def test_a_compile_failure_falls_back_to_eager_with_one_warning(dataset_root, tmp_path, monkeypatch, caplog):
    compile_for_real = torch.compile

    def failing_backend(graph, example_inputs):
        raise RuntimeError("no C compiler here")

    monkeypatch.setattr(torch, "compile", lambda model: compile_for_real(model, backend=failing_backend))
    with caplog.at_level(logging.WARNING, logger="actionmoe"):
        assert main(cli_args(dataset_root, tmp_path / "run", "train.epochs=1", "train.compile=true")) == 0
    warnings = [m for m in caplog.messages if "torch.compile failed" in m]
    assert len(warnings) == 1 and "training without compilation" in warnings[0]


def test_channels_last_3d_gives_the_same_outputs_on_cpu():
    torch.manual_seed(0)
    model = build_model(SMALL, 5).eval()
    clip = clips()[0]
    with torch.no_grad():
        expected = model(clip).logits
        model = model.to(memory_format=torch.channels_last_3d)
        actual = model(clip.contiguous(memory_format=torch.channels_last_3d)).logits
    assert torch.allclose(expected, actual, atol=1e-4)


def test_activation_checkpointing_keeps_the_gradients():
    clip, labels = clips()
    gradients = []
    for stages in ((), ("layer2", "layer3", "layer4")):
        torch.manual_seed(0)
        model = build_model(SMALL, 5, checkpoint_stages=stages).train()
        torch.manual_seed(1)
        out = model(clip)
        (F.cross_entropy(out.logits, labels) + out.aux_loss).backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    plain, checkpointed = gradients
    assert plain.keys() == checkpointed.keys()
    assert all(torch.allclose(plain[name], checkpointed[name], atol=1e-5) for name in plain)


@pytest.mark.slow
def test_the_compiled_training_step_matches_eager_without_graph_breaks():
    """Without dropout and gate noise, whose random numbers the compiled graph draws from another generator."""
    torch.manual_seed(0)
    deterministic = ModelConfig(
        **{**SMALL.__dict__, "feature_dropout": 0.0, "expert_dropout": 0.0, "noisy_gating": False}
    )
    model = build_model(deterministic, 5).train()
    clip, labels = clips()

    def step(clip: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = model(clip)
        return F.cross_entropy(out.logits.float(), labels) + out.aux_loss

    explanation = torch._dynamo.explain(step)(clip, labels)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch.manual_seed(3)
    eager = step(clip, labels)
    eager.backward()
    eager_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    torch.manual_seed(3)
    compiled = torch.compile(step)(clip, labels)
    compiled.backward()
    assert torch.allclose(compiled, eager, atol=1e-4)
    names = sorted(eager_grads)
    compiled_vector = torch.cat([dict(model.named_parameters())[name].grad.flatten() for name in names])
    eager_vector = torch.cat([eager_grads[name].flatten() for name in names])
    # kernels sum in another order: compare the whole gradient, relative to its norm
    assert ((compiled_vector - eager_vector).norm() / eager_vector.norm()).item() < 5e-3
