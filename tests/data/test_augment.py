"""Training augmentation: one draw per clip, seeded, batched on the device, MixUp/CutMix as torchvision's."""

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from actionmoe.data.augment import (
    augment_clip,
    device_resized_crops,
    mix_batch,
    resized_crop,
    resized_crop_boxes,
)
from actionmoe.data.transforms import Preprocessing, device_augment


def textured_frame(height=72, width=96, seed=0) -> np.ndarray:
    """A frame with structure at every scale, so any geometric or colour operation changes it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], -1)
    return np.clip(base + rng.integers(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)  # [H, W, 3]


def still_clip(frames=6, **kwargs) -> np.ndarray:
    return np.repeat(textured_frame(**kwargs)[None], frames, axis=0)  # [T, H, W, 3], every frame identical


@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment"])
def test_a_clip_policy_draws_once_for_all_frames(policy):
    clip = still_clip()
    changed = 0
    for seed in range(12):
        out = augment_clip(clip, policy, 15, seed)
        assert out.shape == clip.shape and out.dtype == np.uint8
        assert all(np.array_equal(out[0], frame) for frame in out[1:])  # identical frames stay identical
        changed += not np.array_equal(out, clip)
    assert changed >= 6  # the policy does something to most clips (identity is one of its operations)


def test_a_clip_policy_is_seeded_and_leaves_the_global_generator_alone():
    clip = still_clip()
    torch.manual_seed(1)
    first = augment_clip(clip, "randaugment", 9, seed=7)
    state = torch.get_rng_state()
    torch.manual_seed(2)  # another global state: the same seed still gives the same clip
    second = augment_clip(clip, "randaugment", 9, seed=7)
    assert np.array_equal(first, second)
    torch.manual_seed(1)
    augment_clip(clip, "randaugment", 9, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn from the global generator
    assert not all(np.array_equal(first, augment_clip(clip, "randaugment", 9, seed=s)) for s in range(8, 14))


def test_resized_crop_boxes_stay_inside_the_frame_within_the_scale_and_ratio():
    boxes = resized_crop_boxes(torch.rand(2000, 4, generator=torch.Generator().manual_seed(0)), 72, 96, (0.3, 0.8))
    top, left, height, width = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= 72 + 1e-9).all() and (left + width <= 96 + 1e-9).all()
    area = height * width / (72 * 96)
    assert area.max() <= 0.8 + 1e-9 and area.min() >= 0.2  # shrunk to fit at worst by the aspect limit
    assert area.min() < 0.35 and area.max() > 0.75  # the whole scale range is used
    inside = (height < 72) & (width < 96)  # boxes that were not shrunk to fit keep their drawn aspect ratio
    ratio = (width / height)[inside]
    assert inside.float().mean() > 0.8 and ratio.min() >= 3 / 4 - 1e-9 and ratio.max() <= 4 / 3 + 1e-9


def test_the_device_crop_of_a_box_matches_the_worker_crop():
    clip = still_clip(frames=2)
    box = torch.tensor([10.0, 20.0, 48.0, 60.0])  # top, left, height, width
    worker = resized_crop(clip, box, 32).astype(np.float32)  # [T, 32, 32, 3]
    device = device_resized_crops(torch.from_numpy(clip)[None], box[None], 32)[0].numpy()
    assert device.shape == worker.shape
    assert np.abs(device - worker).mean() < 4.0  # two resamplers of one box: the same picture


def test_device_resized_crops_keep_a_clip_s_frames_alike_and_differ_between_clips():
    batch = torch.from_numpy(np.stack([still_clip(frames=3, seed=s) for s in range(4)]))  # [4, 3, 72, 96, 3]
    out = device_augment(batch, 32, True, torch.Generator().manual_seed(3), crop_scale=(0.2, 1.0))
    assert out.shape == (4, 3, 32, 32, 3) and out.dtype == torch.float32
    assert all(torch.equal(clip[0], clip[1]) and torch.equal(clip[0], clip[2]) for clip in out)
    again = device_augment(batch, 32, True, torch.Generator().manual_seed(3), crop_scale=(0.2, 1.0))
    assert torch.equal(out, again)
    same_frames = torch.from_numpy(np.repeat(still_clip(frames=3)[None], 4, axis=0))
    crops = device_augment(same_frames, 32, True, torch.Generator().manual_seed(3), crop_scale=(0.2, 1.0))
    assert not torch.equal(crops[0], crops[1])  # each clip its own box


def test_the_worker_path_with_every_augmentation_keeps_frames_alike_and_is_seeded():
    pre = Preprocessing(
        clip_len=4, resize=(72, 96), crop_size=32, crop_scale=(0.3, 1.0), augment="randaugment", augment_magnitude=12
    )
    views = still_clip(frames=4)[None]  # [1, 4, 72, 96, 3]
    first = pre.worker(views, True, np.random.default_rng([0, 1, 5]))
    assert first.shape == (3, 4, 32, 32)
    assert all(torch.equal(first[:, 0], first[:, t]) for t in range(1, 4))
    assert torch.equal(first, pre.worker(views, True, np.random.default_rng([0, 1, 5])))
    assert not torch.equal(first, pre.worker(views, True, np.random.default_rng([0, 1, 6])))


def test_without_new_options_the_worker_draws_what_it_always_drew():
    views = np.random.default_rng(0).integers(0, 256, (1, 4, 72, 96, 3), dtype=np.uint8)
    out = Preprocessing(clip_len=4, resize=(72, 96), crop_size=32).worker(views, True, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    top, left = int(rng.integers(0, 72 - 32 + 1)), int(rng.integers(0, 96 - 32 + 1))
    clip = views[0, :, top : top + 32, left : left + 32]
    clip = clip[:, :, ::-1] if rng.random() < 0.5 else clip
    expected = Preprocessing(clip_len=4, resize=(72, 96), crop_size=32).worker(clip[None], False, rng)[0]
    assert torch.equal(out, expected)


class FixedDraws:
    """A generator stand-in that makes mix_batch use a given choice, lambda and box centre."""

    def __init__(self, choice: float, lam: float, centre=(0, 0)):
        self.choice, self.lam, self.centre = choice, lam, list(centre)

    def random(self):
        return self.choice

    def beta(self, a, b):
        return self.lam

    def integers(self, high):
        return self.centre.pop(0)


def test_mixup_matches_torchvision_mixup():
    clips = torch.randn(4, 3, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3])
    torch.manual_seed(5)
    frames = clips.flatten(1, 2)  # torchvision mixes [B, C, H, W]; frames folded into channels
    reference, soft = v2.MixUp(alpha=0.4, num_classes=5)(frames, labels)
    lam = soft[0, 0].item()
    mixed, mix = mix_batch(clips, labels, 0.4, 0.0, FixedDraws(0.0, lam))
    assert torch.allclose(mixed.flatten(1, 2), reference, atol=1e-6)
    assert torch.allclose(mix.soft_targets(5), soft, atol=1e-6)


def test_cutmix_pastes_one_box_into_every_frame_and_weights_labels_by_its_area():
    clips = torch.arange(4.0).view(4, 1, 1, 1, 1).expand(4, 3, 2, 10, 10).clone()  # clip i is all i
    labels = torch.tensor([0, 1, 2, 3])
    mixed, mix = mix_batch(clips, labels, 0.0, 1.0, FixedDraws(0.0, 0.75, centre=(5, 5)))
    pasted = mixed[1] == 0  # clip 1 got clip 0's pixels (rolled by one) inside the box
    assert pasted.any() and torch.equal(pasted[:, 0], pasted[:, 1])  # the same box in every frame
    assert mix.lam == pytest.approx(1 - pasted[0, 0].float().mean().item())
    assert torch.equal(mix.second, torch.tensor([3, 0, 1, 2]))
    targets = mix.soft_targets(4)
    assert torch.allclose(targets.sum(1), torch.ones(4)) and targets[1, 1] == pytest.approx(mix.lam)


def test_soft_targets_with_label_smoothing_combine_as_torchvision_references_do():
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    _, mix = mix_batch(torch.zeros(4, 3, 1, 4, 4), torch.tensor([0, 1, 2, 3]), 1.0, 0.0, FixedDraws(0.0, 0.7))
    loss = torch.nn.functional.cross_entropy(logits, mix.soft_targets(5), label_smoothing=0.1)
    by_hand = 0.7 * torch.nn.functional.cross_entropy(logits, mix.first, label_smoothing=0.1)
    by_hand += 0.3 * torch.nn.functional.cross_entropy(logits, mix.second, label_smoothing=0.1)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_the_worker_resized_crop_is_torchvision_s():
    clip = still_clip(frames=2)
    out = resized_crop(clip, torch.tensor([4.0, 6.0, 40.0, 50.0]), 24)
    frames = torch.from_numpy(clip).permute(0, 3, 1, 2)
    expected = TF.resized_crop(frames, 4, 6, 40, 50, [24, 24], antialias=True).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(out, expected)
