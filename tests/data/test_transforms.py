import numpy as np
import pytest
import torch

from actionmoe.config import KINETICS_MEAN, KINETICS_STD
from actionmoe.data.transforms import Preprocessing, device_augment, normalize_clip, three_crop_boxes


def views(count=1, t=4, h=128, w=171) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(count, t, h, w, 3), dtype=np.uint8)


def test_normalize_matches_a_hand_computation_and_layout():
    clip = torch.from_numpy(views()[0])
    out = normalize_clip(clip)
    assert out.shape == (3, 4, 128, 171) and out.dtype == torch.float32
    c, t, y, x = 2, 3, 50, 60
    expected = (clip[t, y, x, c].item() / 255.0 - KINETICS_MEAN[c]) / KINETICS_STD[c]
    assert out[c, t, y, x].item() == pytest.approx(expected, abs=1e-6)


def test_normalize_on_a_uint8_batch_equals_per_clip():
    batch = torch.from_numpy(views(3)[:, :, :112, :112])
    assert torch.allclose(normalize_clip(batch), torch.stack([normalize_clip(c) for c in batch]))


def test_train_crop_and_flip_are_seeded():
    pre = Preprocessing(crop_size=112, flip=True)
    a = pre.worker(views(), True, np.random.default_rng(1))
    b = pre.worker(views(), True, np.random.default_rng(1))
    assert a.shape == (3, 4, 112, 112) and torch.equal(a, b)
    no_flip = Preprocessing(crop_size=112, flip=False)
    flips = {
        bool(
            torch.equal(
                pre.worker(views(), True, np.random.default_rng(s)),
                no_flip.worker(views(), True, np.random.default_rng(s)),
            )
        )
        for s in range(20)
    }
    assert flips == {True, False}


def test_eval_center_and_three_crops():
    data = views(2)
    center = Preprocessing(crop_size=112).worker(data, False, np.random.default_rng(0))
    assert center.shape == (2, 3, 4, 112, 112)
    expected = normalize_clip(torch.from_numpy(np.ascontiguousarray(data[1, :, 8:120, 29:141])))
    assert torch.equal(center[1], expected)
    three = Preprocessing(crop_size=112, test_crops=3).worker(data, False, np.random.default_rng(0))
    assert three.shape == (6, 3, 4, 112, 112)
    assert three_crop_boxes(128, 171, 112) == [(8, 0), (8, 29), (8, 59)]


def test_uint8_output_for_device_normalisation():
    pre = Preprocessing(normalize_on_device=True)
    out = pre.worker(views(), False, np.random.default_rng(0))
    assert out.dtype == torch.uint8 and out.shape == (1, 4, 112, 112, 3)
    on_device = pre.on_device(out[None], torch.device("cpu"), False)
    assert torch.equal(on_device[0], Preprocessing().worker(views(), False, np.random.default_rng(0)))


def test_crop_larger_than_frame():
    with pytest.raises(ValueError, match="does not fit"):
        Preprocessing(crop_size=200).worker(views(), False, np.random.default_rng(0))


def test_device_augment_crops_and_flips_each_clip():
    batch = torch.from_numpy(views(4)).clone()
    generator = torch.Generator().manual_seed(0)
    out = device_augment(batch, 112, flip=True, generator=generator)
    assert out.shape == (4, 4, 112, 112, 3) and out.dtype == torch.uint8
    for clip, crop in zip(batch, out):  # each crop is a (possibly mirrored) window of its own clip
        windows = clip.unfold(1, 112, 1).unfold(2, 112, 1)  # [T, H', W', C, 112, 112]
        target = crop.permute(0, 3, 1, 2)
        found = any(
            torch.equal(windows[:, y, x], target) or torch.equal(windows[:, y, x], target.flip(-1))
            for y in range(windows.shape[1])
            for x in range(windows.shape[2])
        )
        assert found
    pre = Preprocessing(augment_on_device=True)
    uncropped = pre.worker(views(), True, np.random.default_rng(0))
    assert uncropped.shape == (4, 128, 171, 3) and uncropped.dtype == torch.uint8
    batch = pre.on_device(uncropped[None], torch.device("cpu"), True, torch.Generator().manual_seed(0))
    assert batch.shape == (1, 3, 4, 112, 112) and batch.dtype == torch.float32
