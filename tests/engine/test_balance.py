"""Class balance for unbalanced datasets: inverse-frequency loss weights, or a seeded weighted sampler."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from actionmoe.data.builders import build_splits
from actionmoe.data.dataset import EpochSampler
from actionmoe.data.splits import inverse_frequency
from tests.helpers import cli_args, run, tiny_config


def test_inverse_frequency_weights():
    assert inverse_frequency([100, 10]) == pytest.approx([110 / (2 * 100), 110 / (2 * 10)])
    assert inverse_frequency([5, 5, 5]) == [1.0, 1.0, 1.0]
    assert inverse_frequency([4, 0, 12]) == pytest.approx([2.0, 0.0, 16 / 24])


def test_a_weighted_sampler_evens_out_a_ten_to_one_imbalance():
    """500 videos of one class and 50 of another: each epoch draws the two classes about equally."""
    labels = [0] * 500 + [1] * 50
    weights = [1 / 500 if label == 0 else 1 / 50 for label in labels]
    for epoch in range(3):
        sampler = EpochSampler(len(labels), True, seed=7, weights=weights)
        sampler.set_epoch(epoch)
        seen = Counter(labels[index] for _, index in sampler)
        assert sum(seen.values()) == 550
        assert abs(seen[0] - seen[1]) <= 0.15 * 550, seen  # even within 15% (binomial std: 2% of 550)
    again = EpochSampler(len(labels), True, seed=7, weights=weights)
    again.set_epoch(2)
    assert list(again) == list(sampler)  # the same draw for a resumed epoch
    shards = [EpochSampler(len(labels), True, seed=7, rank=r, world_size=2, weights=weights) for r in (0, 1)]
    for shard in shards:
        shard.set_epoch(2)
    assert sorted(i for s in shards for _, i in s) == sorted(i for _, i in sampler)  # ranks split one draw


@pytest.mark.parametrize("balance", ["weights", "sampler"])
def test_a_balanced_run_trains_and_its_report_shows_the_training_counts(balance, dataset_root, tmp_path, capsys):
    argv = cli_args(dataset_root, tmp_path / "run", "train.epochs=1", f"train.class_balance={balance}")
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    training = build_splits(tiny_config(dataset_root).data).train
    counts = Counter(record.class_name for record in training)
    assert {name: v["train_videos"] for name, v in metrics["video_level"]["per_class"].items()} == counts
    assert "training videos |" in (tmp_path / "run" / "evaluation" / "report.md").read_text()
