"""The full model: backbone -> motion -> pool -> head."""

from __future__ import annotations

import torch
from torch import nn

from actionmoe.config import ModelConfig
from actionmoe.models.backbone import STAGE_CHANNELS, STAGES, R2Plus1DBackbone, check_clip, load_backbone_weights
from actionmoe.models.moe import HeadOutput, LinearHead, MoEHead
from actionmoe.models.motion import MotionDynamics, motion_descriptor


class ActionRecognizer(nn.Module):
    """[B, 3, T, H, W] clips -> HeadOutput (logits [B, num_classes], aux loss, routing stats).

    Args:
        backbone: the R(2+1)D-18 feature extractor.
        motion: motion modules keyed by the stage they follow (``layer2`` ... ``layer4``).
        head: MoEHead or LinearHead taking [B, in_features].
        feature_dropout: dropout on the pooled features.
        use_motion_descriptor: append pooled |feature differences| to the pooled features.
    """

    def __init__(
        self,
        backbone: R2Plus1DBackbone,
        motion: dict[str, nn.Module],
        head: nn.Module,
        feature_dropout: float = 0.0,
        use_motion_descriptor: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.motion = nn.ModuleDict({stage: motion.get(stage, nn.Identity()) for stage in STAGES})
        self.dropout = nn.Dropout(feature_dropout)
        self.use_motion_descriptor = use_motion_descriptor
        self.head = head

    def forward(self, clip: torch.Tensor) -> HeadOutput:
        features = self.features(clip)  # [B, 512, T', H', W']
        pooled = self.pool(features)  # [B, 512] (or [B, 1024] with the motion descriptor)
        return self.head(self.dropout(pooled))

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        """Backbone stages, each followed by its motion module (identity where none is tapped)."""
        check_clip(clip)
        x = self.backbone.stem(clip)
        for name, stage in self.backbone.stages():
            x = self.motion[name](stage(x))
        return x

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean(dim=(2, 3, 4))
        if self.use_motion_descriptor:
            pooled = torch.cat([pooled, motion_descriptor(features)], dim=1)
        return pooled


def build_model(config: ModelConfig, num_classes: int) -> ActionRecognizer:
    """The recognizer described by ``config``, with backbone weights loaded."""
    unknown = sorted(set(config.motion_taps) - {"layer2", "layer3", "layer4"})
    if unknown:
        raise ValueError(f"unknown motion tap {unknown[0]!r}; choose from layer2, layer3, layer4")
    backbone = R2Plus1DBackbone(config.layer4_temporal_stride)
    load_backbone_weights(backbone, config.weights)
    motion = {
        stage: MotionDynamics(STAGE_CHANNELS[stage], config.motion_reduction, config.motion_fusion, stage)
        for stage in config.motion_taps
    }
    in_features = backbone.out_channels * (2 if config.motion_descriptor else 1)
    if config.head == "linear":
        head: nn.Module = LinearHead(in_features, num_classes)
    elif config.head == "moe":
        head = MoEHead(
            in_features, num_classes, config.num_experts, config.top_k, config.gate_hidden, config.expert_hidden,
            config.expert_dropout, config.noisy_gating, config.balance, config.balance_weight, config.z_loss_weight,
        )
    else:
        raise ValueError(f"model.head must be moe or linear, got {config.head!r}")
    return ActionRecognizer(backbone, motion, head, config.feature_dropout, config.motion_descriptor)


def parameter_groups(model: ActionRecognizer, lr: float, backbone_lr_scale: float, weight_decay: float) -> list[dict]:
    """Optimizer groups: backbone at ``lr * backbone_lr_scale``; no weight decay on norms and biases."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        in_backbone = name.startswith("backbone.")
        decays = param.ndim >= 2 and "norm" not in name
        groups.setdefault((in_backbone, decays), []).append(param)
    return [
        {"params": params, "lr": lr * (backbone_lr_scale if in_backbone else 1.0),
         "weight_decay": weight_decay if decays else 0.0, "name": f"{'backbone' if in_backbone else 'new'}"
                                                                  f"{'' if decays else '_no_decay'}"}
        for (in_backbone, decays), params in sorted(groups.items())
    ]
