"""Small engine parts on their own: scheduler, device choice, epoch meter, resume compatibility, device crops."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from actionmoe.config import TrainConfig
from actionmoe.data.transforms import Preprocessing
from actionmoe.engine.distributed import DistContext
from actionmoe.engine.metrics import Meter
from actionmoe.engine.optim import build_optimizer, build_scheduler, cosine_with_warmup
from actionmoe.engine.trainer import Trainer
from actionmoe.errors import UsageError
from actionmoe.evaluation.metrics import topk_correct
from actionmoe.models.moe import HeadOutput
from actionmoe.runtime.device import inference_precision, pick_device


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    factor = cosine_with_warmup(total_steps=10, warmup_steps=2, min_ratio=0.1)
    values = [factor(step) for step in range(12)]
    assert values[0] == pytest.approx(1 / 3) and values[1] == pytest.approx(2 / 3)
    assert values[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[2:], values[3:]))
    assert values[10] == pytest.approx(0.1) and values[11] == pytest.approx(0.1)


def test_scheduler_kinds_follow_the_config():
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(model, TrainConfig(optimizer="sgd"))
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"]
    plateau = build_scheduler(optimizer, TrainConfig(scheduler="plateau"), 5)
    assert isinstance(plateau, torch.optim.lr_scheduler.ReduceLROnPlateau) and plateau.mode == "max"
    cosine = build_scheduler(optimizer, TrainConfig(scheduler="cosine", epochs=2, warmup_epochs=1), 5)
    assert isinstance(cosine, torch.optim.lr_scheduler.LambdaLR)


def test_pick_device_on_a_machine_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu") and pick_device("cpu") == torch.device("cpu")
    for preference, message in [
        ("cuda", "CUDA is not available"),
        ("cuda:1", "CUDA is not available"),
        ("bogus", "unknown device 'bogus'"),
        ("cuda:x", "unknown device"),
    ]:
        with pytest.raises(UsageError, match=message):
            pick_device(preference)


def test_pick_device_with_cuda_checks_the_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("auto", local_rank=1) == torch.device("cuda:1")
    assert pick_device("cuda", local_rank=1) == torch.device("cuda:1")
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(UsageError, match="cuda:2 does not exist; this machine has 2"):
        pick_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert inference_precision("auto", torch.device("cuda:0")) == "fp16"
    assert inference_precision("bf16", torch.device("cuda:0")) == "fp16"  # a bf16 checkpoint on a T4
    assert inference_precision("auto", torch.device("cpu")) == "fp32"


def test_meter_sums_and_averages():
    meter = Meter()
    meter.add(loss=2.0, clips=2)
    meter.add(loss=1.0, clips=1)
    meter.add_vector(torch.tensor([1.0, 0.0]))
    meter.add_vector(torch.tensor([0.0, 1.0]))
    assert meter.reduced(DistContext()) == {"clips": 3.0, "loss": 3.0}
    assert meter.vector_mean() == [0.5, 0.5]
    assert Meter().vector_mean() == []


def test_topk_correct_counts_hits():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    assert topk_correct(scores, torch.tensor([1, 2, 0]), (1, 2)) == [1, 2]


class RecordingModel(nn.Module):
    """Remembers every training input; a single weight so the optimiser has something to step."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.inputs: list[torch.Tensor] = []

    def forward(self, clip: torch.Tensor) -> HeadOutput:
        self.inputs.append(clip.detach().clone())
        logits = clip.mean(dim=(1, 2, 3, 4))[:, None] * self.weight * torch.ones(1, 2)  # [B, 2]
        return HeadOutput(logits, logits.new_zeros(()), None)


class FixedLoader:
    """Two uint8 batches of uncropped clips [B, T, H, W, C], as the loader yields for device-side augmentation."""

    failures: dict = {}

    def __init__(self) -> None:
        frames = np.random.default_rng(0).integers(0, 256, size=(2, 2, 4, 12, 16, 3), dtype=np.uint8)
        self.batches = [{"clip": torch.from_numpy(b), "label": torch.tensor([0, 1])} for b in frames]
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def device_crops(seed: int, tmp_path: Path) -> list[torch.Tensor]:
    model = RecordingModel()
    train = TrainConfig(seed=seed, epochs=1, scheduler="cosine", grad_clip=0, channels_last=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = build_scheduler(optimizer, train, 2)
    preprocessing = Preprocessing(clip_len=2, resize=(12, 16), crop_size=8, flip=True, augment_on_device=True)
    trainer = Trainer(
        model,
        optimizer=optimizer,
        scheduler=scheduler,
        loaders={"train": FixedLoader()},
        device=torch.device("cpu"),
        train=train,
        preprocessing=preprocessing,
        context=DistContext(),
        run_dir=tmp_path,
        run_meta={},
    )
    trainer.train_epoch(0)
    return model.inputs


def test_device_side_crops_follow_the_training_seed(tmp_path):
    first, again, other = device_crops(1, tmp_path), device_crops(1, tmp_path), device_crops(2, tmp_path)
    assert all(a.shape == (2, 3, 4, 8, 8) for a in first)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
