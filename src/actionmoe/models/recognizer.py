"""The full model: backbone -> motion -> pool -> head."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from actionmoe.config import ModelConfig
from actionmoe.models.backbone import STAGE_CHANNELS, R2Plus1DBackbone, load_backbone_weights
from actionmoe.models.moe import HeadOutput, LinearHead, MoEHead
from actionmoe.models.motion import MotionDynamics, motion_descriptor

DEFAULTS = ModelConfig()  # the shipped model: the defaults below are the config's


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
        *,
        feature_dropout: float = DEFAULTS.feature_dropout,
        use_motion_descriptor: bool = DEFAULTS.motion_descriptor,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.motion = nn.ModuleDict(motion)
        self.dropout = nn.Dropout(feature_dropout)
        self.use_motion_descriptor = use_motion_descriptor
        self.head = head

    def forward(self, clip: torch.Tensor) -> HeadOutput:
        features = self.features(clip)  # [B, 512, T', H', W']
        pooled = self.pool(features)  # [B, 512] (or [B, 1024] with the motion descriptor)
        return self.head(self.dropout(pooled))

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        """Backbone stages, the tapped ones followed by their motion module: [B, 512, T', H', W']."""
        return self.backbone(clip, after_stage=self.motion)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean(dim=(2, 3, 4))
        if self.use_motion_descriptor:
            pooled = torch.cat([pooled, motion_descriptor(features)], dim=1)
        return pooled


def build_model(
    config: ModelConfig,
    num_classes: int,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    checkpoint_stages: Sequence[str] = (),
) -> ActionRecognizer:
    """The recognizer described by ``config``, with backbone weights loaded.

    ``reduce`` sums the MoE balance statistics over ranks under distributed training;
    ``checkpoint_stages`` are recomputed in the backward pass instead of keeping their activations.
    """
    backbone = R2Plus1DBackbone(
        layer4_temporal_stride=config.layer4_temporal_stride, checkpoint_stages=tuple(checkpoint_stages)
    )
    load_backbone_weights(backbone, config.weights)
    motion = {
        stage: MotionDynamics(
            STAGE_CHANNELS[stage], reduction=config.motion_reduction, fusion=config.motion_fusion, name=stage
        )
        for stage in config.motion_taps
    }
    in_features = backbone.out_channels * (2 if config.motion_descriptor else 1)
    if config.head == "linear":
        head: nn.Module = LinearHead(in_features, num_classes)
    else:
        head = MoEHead(
            in_features,
            num_classes,
            num_experts=config.num_experts,
            top_k=config.top_k,
            gate_hidden=config.gate_hidden,
            expert_hidden=config.expert_hidden,
            expert_dropout=config.expert_dropout,
            noisy_gating=config.noisy_gating,
            gate_init_std=config.gate_init_std,
            noise_std_start=config.noise_std_start,
            noise_std_learned=config.noise_std_learned,
            shared_expert=config.shared_expert,
            balance=config.balance,
            balance_weight=config.balance_weight,
            z_loss_weight=config.z_loss_weight,
            reduce=reduce,
        )
    return ActionRecognizer(
        backbone,
        motion,
        head,
        feature_dropout=config.feature_dropout,
        use_motion_descriptor=config.motion_descriptor,
    )
