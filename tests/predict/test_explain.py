"""``actionmoe explain``: Grad-CAM against a hand-computed case, per-expert maps, the files, the refusals."""

from __future__ import annotations

import numpy as np
import torch

from actionmoe.predict.explain import grad_cam, place_on_clip
from tests.helpers import FIXTURES, run

VIDEO = FIXTURES / "videos" / "test.avi"


def test_grad_cam_matches_a_hand_computed_case():
    # two channels over (T', H', W') = (1, 1, 2); score = w . mean(A): dscore/dA_c = w_c / 2 everywhere
    features = torch.tensor([[[[[1.0, 3.0]]], [[[2.0, 0.0]]]]], requires_grad=True)  # [1, 2, 1, 1, 2]
    weights = torch.tensor([1.0, -2.0])
    score = (features.mean(dim=(2, 3, 4))[0] * weights).sum()
    cam = grad_cam(features, score, (1, 1, 2), stride=(1, 1, 1))
    # channel weights 0.5 and -1: location 0: 0.5 * 1 - 1 * 2 = -1.5 -> 0; location 1: 0.5 * 3 - 0 = 1.5 -> 1
    np.testing.assert_allclose(cam, [[[0.0, 1.0]]], atol=1e-6)


def test_a_map_is_upsampled_to_the_clip_and_a_flat_one_stays_zero():
    features = torch.ones(1, 3, 2, 2, 2, requires_grad=True)
    cam = grad_cam(features, -features.mean(), (4, 8, 8), stride=(2, 4, 4))  # negative evidence: rectified to 0
    assert cam.shape == (4, 8, 8) and (cam == 0).all()


def test_each_cell_lands_on_the_pixel_its_receptive_field_is_centred_on():
    # cells 0 and 1 of a stride-16 map look at pixels 0 and 16: in between linear, beyond the last cell its value
    cam = torch.tensor([0.0, 1.0]).view(1, 1, 1, 1, 2)
    placed = place_on_clip(cam, (1, 1, 32), (1, 16, 16))[0, 0]
    np.testing.assert_allclose(placed.numpy(), [x / 16 for x in range(16)] + [1.0] * 16, atol=1e-6)
    # a 3x3 map over 8 frames of 48x48 at strides (4, 16, 16): the middle cell on frame 4, pixel (16, 16)
    cam = torch.zeros(1, 1, 2, 3, 3)
    cam[0, 0, 1, 1, 1] = 1.0
    placed = place_on_clip(cam, (8, 48, 48), (4, 16, 16))
    assert placed.shape == (8, 48, 48) and placed[4, 16, 16] == 1.0 and placed.argmax() == 4 * 48 * 48 + 16 * 48 + 16


def test_per_expert_maps_exist_for_every_expert_and_differ_when_their_weights_differ(predictor):
    from actionmoe.predict.explain import explain

    result = explain(predictor, VIDEO, per_expert=True)
    head = predictor.restored.model.head
    experts = head.experts.w_out.shape[0] - head.shared
    assert list(result.maps) == [
        "model",
        *["shared expert"] * head.shared,
        *[f"expert {e + 1}" for e in range(experts)],
    ]
    assert all(m.shape == result.frames.shape[:3] and m.min() >= 0 and m.max() <= 1 for m in result.maps.values())
    routed = [result.maps[f"expert {e + 1}"] for e in range(experts)]
    assert any(not np.allclose(routed[0], other, atol=1e-4) for other in routed[1:])
    assert result.class_name == predictor.predict(VIDEO).predictions[0].label
    assert len(result.gates) == experts


def test_the_command_writes_a_strip_and_an_animation(capsys, trained_run, tmp_path):
    from PIL import Image

    out = tmp_path / "explain"
    code, stdout, err = run(
        capsys, "explain", str(VIDEO), "--checkpoint", str(trained_run / "best.safetensors"), "--per-expert",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["test.gradcam.gif", "test.gradcam.png"]
    with Image.open(out / "test.gradcam.gif") as gif:
        assert gif.n_frames > 1
    assert "expert 1" in stdout


def test_an_unknown_class_or_an_out_that_is_a_file_is_one_line_and_writes_nothing(capsys, trained_run, tmp_path):
    out = tmp_path / "explain"
    checkpoint = str(trained_run / "best.safetensors")
    code, _, err = run(capsys, "explain", str(VIDEO), "--checkpoint", checkpoint, "--class", "jump", "--out", str(out))
    assert code == 2 and "--class 'jump' is not a class of this checkpoint" in err and not out.exists()
    assert len(err.strip().splitlines()) == 1
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    code, _, err = run(capsys, "explain", str(VIDEO), "--checkpoint", checkpoint, "--out", str(taken))
    assert code == 2 and "is not a folder" in err and taken.read_text() == "mine\n"


def test_an_onnx_model_or_a_video_without_frames_is_refused_without_output(capsys, trained_run, tmp_path):
    """(A video shorter than a clip is explained as predict sees it: its frames repeated to the clip length.)"""
    out = tmp_path / "explain"
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not needed: refused by its name")
    code, _, err = run(capsys, "explain", str(VIDEO), "--checkpoint", str(onnx), "--out", str(out))
    assert code == 2 and "needs the PyTorch checkpoint" in err and not out.exists()
    short = tmp_path / "empty.mp4"
    short.write_bytes(b"")
    code, _, err = run(capsys, "explain", str(short), "--checkpoint", str(trained_run / "best.safetensors"),
                       "--out", str(out))  # fmt: skip
    assert code == 1 and len(err.strip().splitlines()) == 1 and not out.exists()
