import pytest
import torch
from safetensors.torch import save_file

from actionmoe.config import ModelConfig, load_config
from actionmoe.engine.optim import parameter_groups
from actionmoe.errors import ConfigError, ModelInputError, WeightsError
from actionmoe.models.backbone import R2Plus1DBackbone, load_backbone_weights
from actionmoe.models.motion import MotionDynamics
from actionmoe.models.recognizer import build_model

SMALL = ModelConfig(gate_hidden=16, expert_hidden=32, num_experts=4, top_k=2)


def tiny_clip(batch=2, frames=16, size=32) -> torch.Tensor:
    return torch.randn(batch, 3, frames, size, size)


@pytest.fixture(scope="module")
def torchvision_net():
    from torchvision.models.video import r2plus1d_18

    torch.manual_seed(1)
    net = r2plus1d_18(weights=None, num_classes=400).eval()
    with torch.no_grad():  # make BN statistics non-trivial so a wrong mapping cannot pass
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_give_torchvision_features(torchvision_net, tmp_path, suffix):
    path = tmp_path / f"weights{suffix}"
    state = torchvision_net.state_dict()
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = build_model(ModelConfig(weights=str(path), motion_taps=("layer2", "layer3", "layer4")), 51).eval()
    clip = tiny_clip()
    with torch.no_grad():
        net = torchvision_net
        x = net.stem(clip)
        expected = net.layer4(net.layer3(net.layer2(net.layer1(x))))  # [B, 512, T/8, H/16, W/16]
        assert torch.allclose(model.backbone(clip), expected, atol=1e-5)
        assert torch.allclose(model.features(clip), expected, atol=1e-5)  # motion modules start as identity
        logits = net.fc(model.backbone(clip).mean(dim=(2, 3, 4)))
        assert torch.allclose(logits, net(clip), atol=1e-5)


def test_output_shapes_small_and_full_size():
    model = build_model(SMALL, 7).eval()
    with torch.no_grad():
        out = model(tiny_clip())
        assert out.logits.shape == (2, 7) and out.aux_loss.shape == () and out.routing.gates.shape == (2, 4)
        assert model.features(tiny_clip()).shape == (2, 512, 2, 2, 2)
        full = torch.randn(1, 3, 16, 112, 112)
        assert model.features(full).shape == (1, 512, 2, 7, 7)
        assert model(full).logits.shape == (1, 7)


def test_layer4_without_temporal_stride_keeps_t4():
    model = build_model(ModelConfig(layer4_temporal_stride=False, head="linear"), 5).eval()
    with torch.no_grad():
        assert model.features(tiny_clip(1)).shape == (1, 512, 4, 2, 2)
    assert model.backbone.stride() == (4, 16, 16)
    assert R2Plus1DBackbone().stride() == (8, 16, 16)


def test_a_cell_of_the_last_stage_is_centred_on_stride_times_its_index():
    # a clip wide enough for interior cells: the input columns that reach cell (0, 0, j) are symmetric about 16 * j
    backbone = R2Plus1DBackbone().eval()
    clip = torch.randn(1, 3, 8, 8, 256, requires_grad=True)
    features = backbone(clip)  # [1, 512, 1, 1, 16]
    j = 8
    features[0, :, 0, 0, j].sum().backward()
    reached = clip.grad.abs().sum(dim=(0, 1, 2, 3)).nonzero().flatten()  # input columns with any gradient
    assert (reached.min() + reached.max()).item() == 2 * 16 * j


def test_every_parameter_gets_a_gradient_over_a_few_batches():
    torch.manual_seed(0)
    config = ModelConfig(
        motion_taps=("layer2", "layer3", "layer4"),
        motion_descriptor=True,
        gate_hidden=16,
        expert_hidden=32,
        num_experts=4,
        top_k=2,
    )
    model = build_model(config, 5).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    touched = {name: False for name, _ in model.named_parameters()}
    for _ in range(4):
        optimizer.zero_grad()
        out = model(tiny_clip(4))
        loss = torch.nn.functional.cross_entropy(out.logits, torch.randint(0, 5, (4,))) + out.aux_loss
        loss.backward()
        for name, param in model.named_parameters():
            touched[name] |= bool(param.grad is not None and param.grad.abs().sum() > 0)
        optimizer.step()
    assert [name for name, hit in touched.items() if not hit] == []


def test_motion_module_starts_as_identity_and_changes_after_training():
    module = MotionDynamics(16, reduction=4, fusion="gate").train()
    x = torch.randn(2, 16, 4, 5, 5)
    assert torch.equal(module(x), x)
    residual = MotionDynamics(16, reduction=4, fusion="residual")
    assert torch.equal(residual(x), x)
    with torch.no_grad():
        module.expand[1].weight.fill_(1.0)
    assert not torch.allclose(module(x), x)


def test_parameter_groups_lower_backbone_lr():
    model = build_model(SMALL, 5)
    groups = parameter_groups(model, lr=1e-3, backbone_lr_scale=0.1, weight_decay=0.05)
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone"]["lr"] == pytest.approx(1e-4) and by_name["new"]["lr"] == 1e-3
    assert by_name["backbone_no_decay"]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_the_group_order_of_earlier_runs_is_kept_so_their_optimizer_state_loads():
    model = build_model(SMALL, 5)
    names = [g["name"] for g in parameter_groups(model, 1e-3, 0.1, 0.05)]
    assert names == ["new_no_decay", "new", "backbone_no_decay", "backbone"]  # the order before router groups


def test_a_router_learning_rate_scale_gives_the_router_its_own_groups():
    model = build_model(SMALL, 5)
    router = {id(p) for p in model.head.router.parameters()}
    assert "router" not in {g["name"] for g in parameter_groups(model, 1e-3, 0.1, 0.05)}  # scale 1: as before
    groups = {g["name"]: g for g in parameter_groups(model, 1e-3, 0.1, 0.05, router_lr_scale=10.0)}
    assert groups["router"]["lr"] == pytest.approx(1e-2) and groups["router_no_decay"]["weight_decay"] == 0.0
    assert {id(p) for g in ("router", "router_no_decay") for p in groups[g]["params"]} == router
    assert groups["new"]["lr"] == 1e-3 and not router & {id(p) for p in groups["new"]["params"]}
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


@pytest.mark.parametrize(
    "clip, message",
    [
        (torch.randn(2, 16, 32, 32), r"\[B, 3, T, H, W\]"),
        (torch.randn(1, 1, 16, 32, 32), r"\[B, 3, T, H, W\]"),
        (torch.randn(1, 3, 8, 32, 32), "needs at least 2 time steps"),
    ],
)
def test_bad_input_shapes(clip, message):
    model = build_model(SMALL, 5).eval()
    with pytest.raises(ModelInputError, match=message):
        model(clip)


def test_bad_weights_files(tmp_path):
    backbone = R2Plus1DBackbone()
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, other)
    with pytest.raises(WeightsError, match="not an R\\(2\\+1\\)D-18 state dict.*expected keys like"):
        load_backbone_weights(backbone, str(other))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x04garbage")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        load_backbone_weights(backbone, str(corrupt))
    wrong_shape = dict(backbone.state_dict())
    wrong_shape["stem.0.weight"] = torch.zeros(1, 1, 1, 1, 1)
    torch.save(wrong_shape, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match="stem.0.weight has shape"):
        load_backbone_weights(backbone, str(tmp_path / "shape.pth"))
    with pytest.raises(WeightsError, match="does not exist"):
        load_backbone_weights(backbone, str(tmp_path / "missing.pth"))


def test_kinetics_offline_says_where_to_put_the_file(monkeypatch, tmp_path):
    import urllib.error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "urlopen", refuse)
    with pytest.raises(WeightsError, match="r2plus1d_18-91a641e6.pth"):
        load_backbone_weights(R2Plus1DBackbone(), "kinetics400")


def test_bad_model_config_never_reaches_the_model():
    with pytest.raises(ConfigError, match="top_k"):
        ModelConfig(top_k=5, num_experts=4)
    with pytest.raises(ConfigError, match="motion_taps"):
        load_config(None, ['model.motion_taps=["layer9"]'])
