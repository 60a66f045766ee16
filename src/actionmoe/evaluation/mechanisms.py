"""What the model's parts do at test time: does routing change predictions, does the model know direction.

- ``routing_effect``: top-1 with the router's gates, with uniform gates over the routed experts, and
  with the gates of other videos (permuted across videos). If the three agree, routing changes
  nothing, whatever the entropy and mutual information of the gates say.
- ``direction_tests``: on datasets whose classes come in time-reversed twins (the synthetic motions:
  left/right, up/down, zoom in/out, rotations and orbits), twin accuracy (of the videos predicted
  inside the right pair, the share on the right side: 0.5 for a model blind to frame order) and the
  reversal test (each test clip played backwards: the share whose prediction moves to the twin).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from actionmoe.acquire.synthetic import TIME_REVERSED_TWINS


@contextmanager
def capture_head(model: nn.Module):
    """Record the MoE head's input features [B, D] and gates [B, E] of every forward pass inside the block.

    Yields a list of (features, gates) pairs, or None when the model has no MoE head.
    """
    head = getattr(model, "head", None)
    if not hasattr(head, "mix"):
        yield None
        return
    captured: list[tuple[torch.Tensor, torch.Tensor]] = []

    def keep(module, inputs, output) -> None:
        captured.append((inputs[0].detach().float().cpu(), output.routing.gates.detach().float().cpu()))

    handle = head.register_forward_hook(keep)
    try:
        yield captured
    finally:
        handle.remove()


@torch.no_grad()
def routing_effect(
    head: nn.Module, features: np.ndarray, view_gates: np.ndarray, labels: np.ndarray, seed: int = 0
) -> dict:
    """Top-1 of the head with its own, uniform and permuted gates; and how many predictions each change moves.

    Args:
        head: the MoE head (``mix`` and ``experts``), in eval mode.
        features: [N, V, D] the head's input for every view of every video.
        view_gates: [N, V, E] the router's gates for those views.
        labels: [N] class indices.
    """
    videos, views, _ = features.shape
    device = next(head.parameters()).device
    flat = torch.from_numpy(features).to(device).flatten(0, 1)  # [N * V, D]
    expert_logits = head.experts(flat).float()  # [N * V, S + E, C]

    def predictions(gates: np.ndarray) -> np.ndarray:
        gates_t = torch.from_numpy(gates).to(device).reshape(videos * views, -1)
        probs = head.mix(expert_logits, gates_t).softmax(dim=-1).view(videos, views, -1).mean(dim=1)
        return probs.argmax(dim=-1).cpu().numpy()  # [N]

    experts = view_gates.shape[-1]
    real = predictions(view_gates)
    uniform = predictions(np.full_like(view_gates, 1.0 / experts))
    permuted = predictions(view_gates[np.random.default_rng(seed).permutation(videos)])
    return {
        "top1_real_gates": float((real == labels).mean()),
        "top1_uniform_gates": float((uniform == labels).mean()),
        "top1_permuted_gates": float((permuted == labels).mean()),
        "changed_by_uniform_gates": float((uniform != real).mean()),
        "changed_by_permuted_gates": float((permuted != real).mean()),
    }


def twin_indices(classes: tuple[str, ...] | list[str]) -> dict[int, int]:
    """Class index -> its time-reversed twin's index, for the classes whose twin is also a class."""
    position = {name: index for index, name in enumerate(classes)}
    return {
        position[name]: position[TIME_REVERSED_TWINS[name]]
        for name in classes
        if name in TIME_REVERSED_TWINS and TIME_REVERSED_TWINS[name] in position
    }


def direction_tests(
    classes: tuple[str, ...] | list[str],
    labels: np.ndarray,
    predicted: np.ndarray,
    reversed_predicted: np.ndarray | None,
) -> dict:
    """Twin accuracy and the time-reversal test; ``applies: false`` with the reason on a dataset without twins.

    Args:
        labels, predicted: [N] true and predicted classes.
        reversed_predicted: [N] the predictions for the same clips played backwards (None: not run).
    """
    twins = twin_indices(classes)
    if not twins:
        return {"applies": False, "reason": "no class of this dataset has a time-reversed twin among its classes"}
    twin_of = np.array([twins.get(c, -1) for c in range(len(classes))])
    has_twin = twin_of[labels] >= 0
    in_pair = has_twin & ((predicted == labels) | (predicted == twin_of[labels]))
    result = {
        "applies": True,
        "videos_with_twin": int(has_twin.sum()),
        "predicted_inside_pair": int(in_pair.sum()),
        "twin_accuracy": float((predicted[in_pair] == labels[in_pair]).mean()) if in_pair.any() else None,
    }
    if reversed_predicted is not None and has_twin.any():
        result["reversal_moves_to_twin"] = float((reversed_predicted[has_twin] == twin_of[labels[has_twin]]).mean())
        result["reversal_unchanged"] = float((reversed_predicted[has_twin] == predicted[has_twin]).mean())
    return result
