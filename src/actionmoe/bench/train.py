"""``actionmoe bench train``: end-to-end training throughput from a clip cache, against the model alone.

End to end: memory-mapped uint8 cache -> DataLoader workers (sampling, pinned memory) -> the
Trainer's own step (device-side crop/flip/normalise, forward, backward, optimizer step). Model
only: the same Trainer step on one batch already resident on the device, so nothing waits for
data. Both run in the same process on the same model, in alternating blocks, and the best block of
each is kept; the ratio says how much of the model's speed survives the data pipeline. The
benchmark writes its own synthetic videos and cache, so it runs anywhere. With ``--recipe`` a
second row measures the small-dataset recipe (RandAugment in the workers, resized crops, MixUp /
CutMix and the weight average on the device) the same way: its ratio says whether the workers keep
up, its model-only rate against the first row's what the device-side parts cost a step.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from actionmoe.acquire.synthetic import MOTIONS, render_video
from actionmoe.bench.common import machine, table
from actionmoe.config import ModelConfig, TrainConfig
from actionmoe.data.cache import CacheSpec, ClipCache, create_cache, fill_cache
from actionmoe.data.dataset import VideoClipDataset, build_loader
from actionmoe.data.decode import get_reader, write_video
from actionmoe.data.splits import VideoRecord
from actionmoe.data.transforms import Preprocessing
from actionmoe.engine.metrics import Meter
from actionmoe.engine.run import build_trainer
from actionmoe.engine.trainer import Trainer
from actionmoe.models.recognizer import build_model
from actionmoe.runtime.device import timed


@dataclass(frozen=True)
class TrainBenchSetting:
    device: str
    clip_len: int
    crop: int
    resize: tuple[int, int]
    batch: int
    workers: int
    videos: int
    classes: int = 51
    precision: str = "auto"
    compile: bool = False
    steps: int = 8  # timed steps per block

    def label(self) -> str:
        extras = " + compile" if self.compile else ""
        return (
            f"{self.device} {self.clip_len}x{self.crop}x{self.crop} batch {self.batch}, {self.workers} workers, "
            f"precision {self.precision}{extras}"
        )


@dataclass(frozen=True)
class Augmentation:
    """The training augmentations a row is measured with (``data.augment`` ... ``train.ema_decay``)."""

    name: str
    augment: str = "none"
    magnitude: int = 9
    crop_scale: tuple[float, ...] = ()
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    ema_decay: float = 0.0


PLAIN = Augmentation("crop + flip")
SMALL_DATA_RECIPE = Augmentation(
    "RandAugment 9, resized crops 0.3-1, MixUp 0.8 / CutMix 1.0, EMA 0.999",
    augment="randaugment",
    crop_scale=(0.3, 1.0),
    mixup_alpha=0.8,
    cutmix_alpha=1.0,
    ema_decay=0.999,
)


def default_setting(device: str, videos: int | None, compile_model: bool) -> TrainBenchSetting:
    if device == "cpu":  # the 2-core development machine: small clips, so a block takes seconds
        return TrainBenchSetting(
            "cpu",
            8,
            64,
            (72, 96),
            batch=4,
            workers=min(2, os.cpu_count() or 1),
            videos=videos or 48,
            steps=6,
            compile=compile_model,
        )
    workers = min(8, max(1, (os.cpu_count() or 2) - 1))
    return TrainBenchSetting(
        device, 16, 112, (128, 171), batch=32, workers=workers, videos=videos or 256, steps=20, compile=compile_model
    )


def synthetic_cache(folder: Path, setting: TrainBenchSetting) -> tuple[ClipCache, list[VideoRecord]]:
    """``setting.videos`` synthetic motion videos written as AVIs and decoded once into a cache."""
    names = list(MOTIONS)
    height, width = setting.resize
    records = []
    for index in range(setting.videos):
        frames = render_video(
            names[index % len(names)], np.random.default_rng(index), 2 * setting.clip_len, height, width
        )
        path = folder / "videos" / f"clip_{index:04d}.avi"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, frames, fps=25)
        label = index % setting.classes
        records.append(VideoRecord(path, label, f"class_{label:02d}"))
    spec = CacheSpec(2 * setting.clip_len, height, width, get_reader("auto").name)
    cache = create_cache(folder / "cache", folder / "videos", spec, [r.path for r in records])
    fill_cache(cache, [r.path for r in records], workers=max(1, setting.workers))
    return cache, records


def build_bench_trainer(
    setting: TrainBenchSetting,
    model_config: ModelConfig,
    cache: ClipCache,
    records: list[VideoRecord],
    run_dir: Path,
    augmentation: Augmentation = PLAIN,
) -> tuple[Trainer, object]:
    device = torch.device(setting.device)
    preprocessing = Preprocessing(
        clip_len=setting.clip_len,
        resize=setting.resize,
        presample_frames=2 * setting.clip_len,
        crop_size=setting.crop,
        augment_on_device=True,
        crop_scale=augmentation.crop_scale,
        augment=augmentation.augment,
        augment_magnitude=augmentation.magnitude,
    )
    dataset = VideoClipDataset(records, preprocessing, True, "auto", cache, seed=0)
    loader = build_loader(
        dataset, setting.batch, shuffle=True, num_workers=setting.workers, pin_memory=device.type == "cuda"
    )
    train = TrainConfig(
        epochs=1000,
        batch_size=setting.batch,
        precision=setting.precision,
        compile=setting.compile,
        scheduler="cosine",
        channels_last=True,
        mixup_alpha=augmentation.mixup_alpha,
        cutmix_alpha=augmentation.cutmix_alpha,
        ema_decay=augmentation.ema_decay,
    )
    model_config = replace(model_config, weights="none")  # random weights train exactly as fast
    model = build_model(model_config, setting.classes)
    trainer, _ = build_trainer(model, train, {"train": loader}, preprocessing, run_dir, device=device)
    return trainer, loader


def _batches(loader):
    """Loader batches without end (epochs one after another)."""
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        yield from loader


def _end_to_end_block(trainer: Trainer, batches, steps: int) -> tuple[float, float, int]:
    """(seconds, seconds spent waiting for the loader, clips) of ``steps`` steps fed by the loader."""
    waited = 0.0
    clips = 0

    def block() -> None:
        nonlocal waited, clips
        for step in range(steps):
            before = time.perf_counter()
            batch = next(batches)
            waited += time.perf_counter() - before
            trainer.train_step(batch, step, 10**9, Meter())
            clips += len(batch["label"])

    return timed(block, trainer.device), waited, clips


def _model_only_block(trainer: Trainer, resident: dict, steps: int) -> tuple[float, int]:
    def block() -> None:
        for step in range(steps):
            trainer.train_step(resident, step, 10**9, Meter())

    return timed(block, trainer.device), steps * len(resident["label"])


def measure_training(trainer: Trainer, loader, setting: TrainBenchSetting, repeats: int) -> dict:
    """Alternate end-to-end and model-only blocks ``repeats`` times; the best of each."""
    trainer.model.train()
    batches = _batches(loader)
    first = next(batches)
    resident = {"clip": first["clip"].to(trainer.device), "label": first["label"].to(trainer.device)}
    for step in range(2):  # warm-up: workers started, kernels chosen, the model compiled
        trainer.train_step(resident, step, 10**9, Meter())
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    best_e2e, best_model = (float("inf"), 0.0, 1), (float("inf"), 1)
    for _ in range(repeats):
        e2e = _end_to_end_block(trainer, batches, setting.steps)
        best_e2e = min(best_e2e, e2e, key=lambda block: block[0] / block[2])
        model_only = _model_only_block(trainer, resident, setting.steps)
        best_model = min(best_model, model_only, key=lambda block: block[0] / block[1])
    e2e_rate, model_rate = best_e2e[2] / best_e2e[0], best_model[1] / best_model[0]
    peak = torch.cuda.max_memory_allocated(trainer.device) if trainer.device.type == "cuda" else None
    return {
        "setting": setting.label(),
        "augmentation": "",
        "end_to_end_clips_per_s": e2e_rate,
        "model_only_clips_per_s": model_rate,
        "ratio": e2e_rate / model_rate,
        "data_wait_share": best_e2e[1] / best_e2e[0],
        "peak_memory_mb_per_clip": None if peak is None else peak / 2**20 / setting.batch,
        "precision": trainer.precision,
        "skipped_videos": len(loader.failures),
    }


def run_train_benchmark(
    model_config: ModelConfig,
    device: str | None = None,
    videos: int | None = None,
    repeats: int = 3,
    compile_model: bool = False,
    setting: TrainBenchSetting | None = None,
    augmentations: tuple[Augmentation, ...] = (PLAIN,),
) -> dict:
    """Measure ``model_config`` (the hmdb51 recipe, from the command line) end to end and alone, per augmentation."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    setting = setting or default_setting(device, videos, compile_model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="actionmoe-bench-train-") as scratch:
        cache, records = synthetic_cache(Path(scratch), setting)
        for augmentation in augmentations:
            torch.manual_seed(0)
            run_dir = Path(scratch) / f"run{len(rows)}"
            trainer, loader = build_bench_trainer(setting, model_config, cache, records, run_dir, augmentation)
            rows.append({**measure_training(trainer, loader, setting, repeats), "augmentation": augmentation.name})
            del trainer, loader  # the workers of one row stop before the next row starts
    return {
        "machine": machine(),
        "setting": asdict(setting),
        "model": asdict(model_config),
        "augmentations": [asdict(augmentation) for augmentation in augmentations],
        "repeats": repeats,
        "rows": rows,
    }


def format_train_benchmark(result: dict) -> str:
    m = result["machine"]
    header = (
        f"bench train on {m['gpu'] or m['cpu']} ({m['cores']} cores), torch {m['torch']}, {m['date']}; "
        f"best of {result['repeats']} alternating blocks"
    )
    rows = [
        {
            **row,
            "ratio": f"{100 * row['ratio']:.1f}%",
            "data_wait_share": f"{100 * row['data_wait_share']:.1f}%",
            "peak_memory_mb_per_clip": row["peak_memory_mb_per_clip"] or "not measured (CPU)",
        }
        for row in result["rows"]
    ]
    columns = [
        "setting",
        "augmentation",
        "end_to_end_clips_per_s",
        "model_only_clips_per_s",
        "ratio",
        "data_wait_share",
        "peak_memory_mb_per_clip",
    ]
    return "\n".join([header, table(rows, columns)])
