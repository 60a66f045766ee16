"""torchvision's R(2+1)D-18 as a feature extractor returning the unpooled map, with weight loading."""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from actionmoe.config import ModelConfig
from actionmoe.errors import ModelInputError, WeightsError

DEFAULTS = ModelConfig()  # the shipped backbone settings

log = logging.getLogger(__name__)

STAGES = ("layer1", "layer2", "layer3", "layer4")
STAGE_CHANNELS = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
KINETICS_FILE = "r2plus1d_18-91a641e6.pth"


class R2Plus1DBackbone(nn.Module):
    """R(2+1)D-18 without pooling and classifier: [B, 3, T, H, W] -> [B, 512, T/8, H/16, W/16].

    Parameter names equal torchvision's (``stem.*``, ``layer1.*`` ...), so its state dicts load.

    Args:
        layer4_temporal_stride: False removes layer4's temporal stride (T/4 instead of T/8 out).
        checkpoint_stages: stages whose activations are recomputed in the backward pass instead of
            kept (activation checkpointing: less memory, about one more forward of those stages).
            Their BatchNorm running statistics are updated twice per step, as in every
            recompute-based checkpointing; gradients are unchanged.
    """

    out_channels = 512

    def __init__(
        self, *, layer4_temporal_stride: bool = DEFAULTS.layer4_temporal_stride, checkpoint_stages: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        self.checkpoint_stages = checkpoint_stages
        from torchvision.models.video import r2plus1d_18

        net = r2plus1d_18(weights=None)
        self.stem, self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.stem,
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        if not layer4_temporal_stride:
            _remove_temporal_stride(self.layer4)

    def stride(self) -> tuple[int, int, int]:
        """How far apart (frames, pixels, pixels) neighbouring cells of the output map look: (t, h, w).

        Every strided convolution here has an odd kernel and "same" padding, so cell j of the output
        is centred on input position ``stride * j``, not on the middle of a stride-sized block.
        """
        total = (1, 1, 1)
        for name, conv in self.named_modules():
            if isinstance(conv, nn.Conv3d) and "downsample" not in name:  # the shortcut runs beside, not after
                total = tuple(a * s for a, s in zip(total, conv.stride, strict=True))
        return total

    def stages(self) -> Iterator[tuple[str, nn.Module]]:
        for name in STAGES:
            yield name, getattr(self, name)

    def forward(self, clip: torch.Tensor, after_stage: Mapping[str, nn.Module] | None = None) -> torch.Tensor:
        """[B, 3, T, H, W] -> [B, 512, T', H', W']; ``after_stage[name]`` runs on the output of stage ``name``."""
        check_clip(clip)
        x = self.stem(clip)  # [B, 64, T, H/2, W/2]
        for name, stage in self.stages():
            if name in self.checkpoint_stages and self.training and torch.is_grad_enabled():
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
            if after_stage is not None and name in after_stage:
                x = after_stage[name](x)
        return x


def check_clip(clip: torch.Tensor) -> None:
    if clip.ndim != 5 or clip.shape[1] != 3:
        raise ModelInputError(f"expected a clip batch shaped [B, 3, T, H, W], got {tuple(clip.shape)}")


def _remove_temporal_stride(layer: nn.Sequential) -> None:
    block = layer[0]
    temporal_conv = block.conv1[0][3]  # Conv2Plus1D = spatial conv, BN, ReLU, temporal conv
    temporal_conv.stride = (1, 1, 1)
    block.downsample[0].stride = (1, 2, 2)


def load_backbone_weights(backbone: R2Plus1DBackbone, source: str) -> None:
    """Load ``none``, ``kinetics400`` (torchvision download) or a local .pth / .safetensors file."""
    if source in ("", "none"):
        return
    state = _kinetics_state_dict() if source == "kinetics400" else read_state_dict(Path(source))
    state = {_strip_prefix(k): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    _check_compatible(backbone, state, source)
    backbone.load_state_dict(state)


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "backbone."):
        key = key.removeprefix(prefix)
    return key


def _kinetics_state_dict() -> dict[str, torch.Tensor]:
    from torchvision.models.video import R2Plus1D_18_Weights

    try:
        return R2Plus1D_18_Weights.KINETICS400_V1.get_state_dict(progress=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        hub = Path(torch.hub.get_dir()) / "checkpoints" / KINETICS_FILE
        raise WeightsError(
            f"could not download the Kinetics-400 weights ({exc}); without internet, copy {KINETICS_FILE} "
            f"to {hub}, or pass model.weights=/path/to/{KINETICS_FILE}"
        ) from exc


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a .pth/.pt file, never executing pickled code."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's message advises unsafe loading: never repeated here
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:  # a damaged file, not a refused object
            reason = re.search(r"WeightsUnpickler error: ([^\n]+)", str(exc))
            raise WeightsError(
                f"cannot read weights file {path}: damaged ({reason[1] if reason else 'unreadable pickle'})"
            ) from None
        raise WeightsError(
            f"{path} holds pickled objects besides tensors ({found[1]}), which could run code; refused: "
            "save a plain state dict of tensors or a .safetensors file"
        ) from None
    except Exception as exc:  # corrupt files raise many kinds of errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot read weights file {path}: {reason}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return state


def _check_compatible(backbone: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"{source} is not an R(2+1)D-18 state dict: {len(missing)} keys missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}); expected keys like {sorted(expected)[:2]}"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise WeightsError(
                f"{source}: {key} has shape {tuple(tensor.shape)}, R(2+1)D-18 expects {tuple(expected[key].shape)}"
            )
