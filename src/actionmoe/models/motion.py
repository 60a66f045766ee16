"""Motion Dynamics Module: learns from differences of adjacent feature maps; same shape in and out.

For a feature map X [B, C, T, H, W]:

    R = BN(conv1x1x1(X))                          channels C -> C / reduction
    D(t) = dwconv3x3(R(t + 1)) - R(t)             t < T - 1; D(T - 1) = 0 (TEA-style)
    M = BN(conv1x1x1(ReLU(BN(conv3x3(D)))))       back to C channels
    gate:     Y = X + X * (sigmoid(M) - 0.5)
    residual: Y = X + M

The last BN's scale starts at zero, so M = 0 and Y = X at step 0: pretrained behaviour is intact
until training moves it.
"""

from __future__ import annotations

import torch
from torch import nn

from actionmoe.config import ModelConfig
from actionmoe.errors import ModelInputError

DEFAULTS = ModelConfig()  # the shipped motion module: the defaults below are the config's


class MotionDynamics(nn.Module):
    """Args:
    channels: C of the tapped feature map.
    reduction: channel reduction of the difference branch.
    fusion: ``gate`` or ``residual``.
    name: where it is tapped (used in error messages).
    """

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = DEFAULTS.motion_reduction,
        fusion: str = DEFAULTS.motion_fusion,
        name: str = "motion",
    ) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.fusion, self.name = fusion, name
        self.reduce = nn.Sequential(nn.Conv3d(channels, hidden, 1, bias=False), nn.BatchNorm3d(hidden))
        self.shift_conv = nn.Conv3d(hidden, hidden, (1, 3, 3), padding=(0, 1, 1), groups=hidden, bias=False)
        self.transform = nn.Sequential(
            nn.Conv3d(hidden, hidden, (1, 3, 3), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(hidden),
            nn.ReLU(inplace=True),
        )
        self.expand = nn.Sequential(nn.Conv3d(hidden, channels, 1, bias=False), nn.BatchNorm3d(channels))
        nn.init.zeros_(self.expand[1].weight)  # M = 0 at initialisation: identity

    def differences(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, C/r, T, H, W] adjacent differences, the last step zero."""
        if x.shape[2] < 2:
            raise ModelInputError(
                f"the motion module at {self.name} needs at least 2 time steps, got T={x.shape[2]}; use longer "
                "clips, tap layer2/layer3, or set model.layer4_temporal_stride=false"
            )
        reduced = self.reduce(x)
        following = self.shift_conv(reduced[:, :, 1:])
        diff = following - reduced[:, :, :-1]  # [B, C/r, T-1, H, W]
        return torch.cat([diff, torch.zeros_like(diff[:, :, :1])], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        motion = self.expand(self.transform(self.differences(x)))  # [B, C, T, H, W]
        if self.fusion == "gate":
            return x + x * (torch.sigmoid(motion) - 0.5)
        return x + motion


def motion_descriptor(features: torch.Tensor) -> torch.Tensor:
    """Parameter-free pooled motion energy: mean |X(t+1) - X(t)| over time and space; [B, C]."""
    if features.shape[2] < 2:
        return torch.zeros(features.shape[:2], dtype=features.dtype, device=features.device)
    return (features[:, :, 1:] - features[:, :, :-1]).abs().mean(dim=(2, 3, 4))
