import numpy as np
import pytest
import torch

from actionmoe.config import KINETICS_MEAN, KINETICS_STD
from actionmoe.data.transforms import ClipTransform, device_augment, normalize_clip, three_crop_boxes


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
    transform = ClipTransform(crop_size=112, train=True, flip=True)
    a = transform(views(), np.random.default_rng(1))
    b = transform(views(), np.random.default_rng(1))
    assert a.shape == (3, 4, 112, 112) and torch.equal(a, b)
    flips = {bool(torch.equal(transform(views(), np.random.default_rng(s)),
                              ClipTransform(train=True, flip=False)(views(), np.random.default_rng(s))))
             for s in range(20)}
    assert flips == {True, False}


def test_eval_center_and_three_crops():
    data = views(2)
    center = ClipTransform(crop_size=112)(data, np.random.default_rng(0))
    assert center.shape == (2, 3, 4, 112, 112)
    expected = normalize_clip(torch.from_numpy(np.ascontiguousarray(data[1, :, 8:120, 29:141])))
    assert torch.equal(center[1], expected)
    assert ClipTransform(crop_size=112, num_crops=3)(data, np.random.default_rng(0)).shape == (6, 3, 4, 112, 112)
    assert three_crop_boxes(128, 171, 112) == [(8, 0), (8, 29), (8, 59)]


def test_uint8_output_for_device_normalisation():
    out = ClipTransform(normalize=False)(views(), np.random.default_rng(0))
    assert out.dtype == torch.uint8 and out.shape == (1, 4, 112, 112, 3)


def test_crop_larger_than_frame():
    with pytest.raises(ValueError, match="does not fit"):
        ClipTransform(crop_size=200)(views(), np.random.default_rng(0))


def test_device_augment_crops_and_flips_each_clip():
    batch = torch.from_numpy(views(4)).clone()
    generator = torch.Generator().manual_seed(0)
    out = device_augment(batch, 112, flip=True, generator=generator)
    assert out.shape == (4, 4, 112, 112, 3) and out.dtype == torch.uint8
    for clip, crop in zip(batch, out):  # each crop is a (possibly mirrored) window of its own clip
        windows = clip.unfold(1, 112, 1).unfold(2, 112, 1)  # [T, H', W', C, 112, 112]
        target = crop.permute(0, 3, 1, 2)
        found = any(torch.equal(windows[:, y, x], target) or torch.equal(windows[:, y, x], target.flip(-1))
                    for y in range(windows.shape[1]) for x in range(windows.shape[2]))
        assert found
    uncropped = ClipTransform(train=True, augment=False, normalize=False)(views(), np.random.default_rng(0))
    assert uncropped.shape == (4, 128, 171, 3)
