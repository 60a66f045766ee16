"""The routing effect on hand-built heads; twin accuracy and the reversal test on hand-made predictions."""

import numpy as np
import pytest
import torch

from actionmoe.evaluation.mechanisms import direction_tests, routing_effect, twin_indices
from actionmoe.evaluation.metrics import routing_health
from actionmoe.models.moe import MoEHead


def head_and_inputs(identical_experts: bool, shared: bool = True, videos: int = 60, views: int = 2):
    torch.manual_seed(0)
    head = MoEHead(8, 5, num_experts=4, top_k=2, gate_hidden=4, expert_hidden=16, shared_expert=shared).eval()
    if identical_experts:
        with torch.no_grad():
            for parameter in head.experts.parameters():
                parameter[head.shared :] = parameter[head.shared]  # every routed expert a copy of the first
    features = torch.randn(videos, views, 8)
    rng = np.random.default_rng(1)
    gates = np.zeros((videos, views, 4), dtype=np.float32)  # two experts per view, weights summing to 1
    for video in range(videos):
        for view in range(views):
            chosen = rng.choice(4, 2, replace=False)
            share = rng.uniform(0.2, 0.8)
            gates[video, view, chosen] = (share, 1 - share)
    labels = rng.integers(0, 5, videos)
    return head, features.numpy(), gates, labels


@pytest.mark.parametrize("with_shared_expert", [True, False])
def test_routing_changes_nothing_when_the_routed_experts_are_identical(with_shared_expert):
    head, features, gates, labels = head_and_inputs(identical_experts=True, shared=with_shared_expert)
    effect = routing_effect(head, features, gates, labels)
    assert effect["changed_by_uniform_gates"] == 0 and effect["changed_by_permuted_gates"] == 0
    assert effect["top1_real_gates"] == effect["top1_uniform_gates"] == effect["top1_permuted_gates"]


def test_routing_changes_predictions_when_the_experts_differ():
    head, features, gates, labels = head_and_inputs(identical_experts=False, shared=False)
    effect = routing_effect(head, features, gates, labels)
    assert effect["changed_by_permuted_gates"] > 0.1 and effect["changed_by_uniform_gates"] > 0.1


def test_the_real_gates_reproduce_the_head_s_own_predictions():
    head, features, _, labels = head_and_inputs(identical_experts=False)
    with torch.no_grad():
        out = head(torch.from_numpy(features).flatten(0, 1))
    gates = out.routing.gates.view(60, 2, 4).numpy()
    own = out.logits.softmax(-1).view(60, 2, -1).mean(1).argmax(-1).numpy()
    effect = routing_effect(head, features, gates, labels)
    assert effect["top1_real_gates"] == pytest.approx(float((own == labels).mean()))


CLASSES = ("move_left", "move_right", "swing_vertical", "zoom_in", "zoom_out")


def test_twin_accuracy_and_the_reversal_test_on_hand_made_predictions():
    assert twin_indices(CLASSES) == {0: 1, 1: 0, 3: 4, 4: 3}
    labels = np.array([0, 0, 1, 1, 2, 3, 4, 4])
    predicted = np.array([0, 1, 1, 1, 2, 2, 4, 3])  # 6 inside their pair (one of 3 misses its pair), 4 right
    backwards = np.array([1, 1, 0, 1, 2, 4, 3, 4])
    result = direction_tests(CLASSES, labels, predicted, backwards)
    assert result["applies"] and result["videos_with_twin"] == 7 and result["predicted_inside_pair"] == 6
    assert result["twin_accuracy"] == pytest.approx(4 / 6)
    assert result["reversal_moves_to_twin"] == pytest.approx(5 / 7)  # videos 0, 1, 2, 5, 6
    assert result["reversal_unchanged"] == pytest.approx(2 / 7)  # videos 1 and 3 keep their prediction


def test_the_direction_tests_say_when_they_do_not_apply():
    result = direction_tests(("brush_hair", "cartwheel"), np.array([0, 1]), np.array([0, 0]), None)
    assert result == {"applies": False, "reason": "no class of this dataset has a time-reversed twin among its classes"}


def test_the_class_expert_mi_permutation_p():
    labels = np.repeat(np.arange(4), 20)
    specialised = np.eye(4)[labels]  # each class its own expert
    assert routing_health(specialised, labels)["class_expert_mi_p"] == pytest.approx(1 / 201)
    random = np.random.default_rng(0).dirichlet(np.ones(4), len(labels))
    assert routing_health(random, labels)["class_expert_mi_p"] > 0.05
