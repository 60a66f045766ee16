import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from actionmoe.errors import UsageError
from actionmoe.evaluation.metrics import (
    aggregate_views,
    classification_metrics,
    confusion,
    mean_class_accuracy,
    parse_views,
    topk_accuracy,
)

RNG = np.random.default_rng(0)
SCORES = RNG.random((40, 7))
LABELS = np.concatenate([np.arange(7), RNG.integers(0, 7, 33)])
CLASSES = [f"c{i}" for i in range(7)]


def test_metrics_equal_scikit_learn():
    metrics = classification_metrics(SCORES, LABELS, CLASSES)
    predictions = SCORES.argmax(axis=1)
    assert metrics["top1"] == pytest.approx(accuracy_score(LABELS, predictions))
    assert metrics["top5"] == pytest.approx(top_k_accuracy_score(LABELS, SCORES, k=5, labels=range(7)))
    assert metrics["mean_class_accuracy"] == pytest.approx(balanced_accuracy_score(LABELS, predictions))
    assert np.array_equal(metrics["confusion"], confusion_matrix(LABELS, predictions, labels=range(7)))
    precision, recall, f1, support = precision_recall_fscore_support(
        LABELS, predictions, labels=range(7), zero_division=0
    )
    assert [metrics["per_class"][c]["f1"] for c in CLASSES] == pytest.approx(f1.tolist())
    assert [metrics["per_class"][c]["support"] for c in CLASSES] == support.tolist()


def test_hand_computed_example():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
    labels = np.array([1, 1, 2, 2])
    assert topk_accuracy(scores, labels, 1) == 0.5  # rows 0 and 2
    assert topk_accuracy(scores, labels, 2) == 0.75  # row 1 has label 1 second; row 3 has label 2 last
    matrix = confusion(labels, scores.argmax(axis=1), 3)
    assert matrix.tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 1]]
    assert mean_class_accuracy(matrix) == pytest.approx(0.5)  # class 0 has no video and is left out


def test_video_level_aggregation_over_views():
    view_probs = np.array(
        [
            [[0.6, 0.4], [0.1, 0.9], [0.2, 0.8]],  # views disagree; the mean picks class 1
            [[0.9, 0.1], [0.8, 0.2], [0.4, 0.6]],
        ]
    )
    video = aggregate_views(view_probs)
    assert np.allclose(video, [[0.3, 0.7], [0.7, 0.3]])
    assert topk_accuracy(video, np.array([1, 0]), 1) == 1.0
    clip_scores, clip_labels = view_probs.reshape(-1, 2), np.repeat([1, 0], 3)
    assert topk_accuracy(clip_scores, clip_labels, 1) == pytest.approx(4 / 6)


@pytest.mark.parametrize("text, expected", [("1x1", (1, 1)), ("10x3", (10, 3)), ("2X1", (2, 1))])
def test_views_parse(text, expected):
    assert parse_views(text) == expected


@pytest.mark.parametrize("text", ["0x3", "ax1", "3", "1x2", "x", "-1x1"])
def test_bad_views_strings(text):
    with pytest.raises(UsageError, match="CLIPSxCROPS"):
        parse_views(text)


def test_routing_health_on_hand_built_gates():
    from actionmoe.evaluation.metrics import normalized_mutual_information, routing_health

    labels = np.repeat(np.arange(4), 25)  # 4 classes x 25 videos
    uniform = np.full((100, 4), 0.25)
    health = routing_health(uniform, labels)
    assert health["normalized_entropy_of_mean_gate"] == pytest.approx(1.0)
    assert health["experts_under_5_percent"] == 0 and health["class_expert_mi"] == pytest.approx(0.0)

    one_to_one = np.eye(4)[labels]  # class c always to expert c
    health = routing_health(one_to_one, labels)
    assert health["class_expert_mi"] == pytest.approx(1.0) and health["normalized_entropy_of_mean_gate"] == 1.0
    assert health["class_expert_mi_random"] < 0.1  # shuffled assignments carry (almost) no class information

    collapsed = np.zeros((100, 4))
    collapsed[:, :2] = 0.5  # two experts take every video with equal weight (the demo's router)
    health = routing_health(collapsed, labels)
    assert health["experts_under_5_percent"] == 2
    assert health["normalized_entropy_of_mean_gate"] == pytest.approx(0.5)  # log 2 / log 4
    # half the classes to one expert, half to another: I = log 2, H(class) = log 4, H(expert) = log 2
    halves = np.eye(4)[labels // 2]
    assert normalized_mutual_information(labels, halves.argmax(axis=1)) == pytest.approx(1.0)
    mixed = np.array([0, 0, 1, 1, 0, 1, 0, 1])  # classes 0..3 twice: experts {0,0}, {1,1}, {0,1}, {0,1}
    hand = (0.25 * np.log(0.25 / (0.25 * 0.5)) * 2) / np.log(2)  # 2 cells of 1/4 with p(c)=1/4, p(e)=1/2
    assert normalized_mutual_information(np.repeat(np.arange(4), 2), mixed) == pytest.approx(hand)


def test_mutual_information_with_a_single_leading_expert_is_zero():
    """Rounding left H(expert) at ~1e-16 instead of 0 and the ratio came out as 2 (seen on motion12)."""
    from actionmoe.evaluation.metrics import normalized_mutual_information

    families = np.repeat(["travel", "orbit", "rotation", "oscillation", "zoom"], [36, 18, 18, 18, 18])
    assert normalized_mutual_information(families, np.full(108, 2)) == 0.0
    rng = np.random.default_rng(0)
    for _ in range(50):
        labels, assigned = rng.integers(0, 5, 97), rng.integers(0, 3, 97)
        assert 0.0 <= normalized_mutual_information(labels, assigned) <= 1.0


def test_router_input_share_on_hand_built_logits():
    """How much of the router's preference between experts depends on the video (1) or not at all (0)."""
    from actionmoe.evaluation.metrics import router_logit_spread

    fixed = np.tile([1.0, 0.5, -0.5, -1.0], (50, 1))  # every video gets the same preferences (a collapse)
    spread = router_logit_spread(fixed)
    assert spread["router_input_share"] == pytest.approx(0.0)
    assert spread["router_logit_scale"] == pytest.approx(np.sqrt((1 + 0.25 + 0.25 + 1) / 4))

    rng = np.random.default_rng(0)
    permuted = np.stack([rng.permutation([3.0, 1.0, -1.0, -3.0]) for _ in range(4000)])  # no fixed preference
    assert router_logit_spread(permuted)["router_input_share"] == pytest.approx(1.0, abs=0.01)

    # a shift shared by all experts changes nothing (softmax ignores it); half shared, half per video:
    halves = np.array([[1.0, -1.0], [-1.0, 1.0]] * 10) + np.array([1.0, -1.0]) + 7.0  # per expert: mean +-1, std 1
    spread = router_logit_spread(halves)
    assert spread["router_input_share"] == pytest.approx(0.5)
    assert spread["router_logit_scale"] == pytest.approx(np.sqrt(2.0))


def test_the_report_explains_routing_in_words():
    from actionmoe.evaluation.reports import router_logit_line, routing_sentence

    collapsed = {
        "normalized_entropy_of_mean_gate": 0.5,
        "experts_under_5_percent": 2,
        "class_expert_mi": 0.0,
        "class_expert_mi_random": 0.0,
        "fraction_routed": [1.0, 1.0, 0.0, 0.0],
    }
    sentence = routing_sentence(collapsed)
    assert "favours some experts" in sentence and "2 of 4 experts see under 5% of the videos" in sentence
    assert "says little about the class" in sentence and router_logit_line(collapsed) == []
    healthy = collapsed | {
        "normalized_entropy_of_mean_gate": 0.97,
        "experts_under_5_percent": 0,
        "class_expert_mi": 0.6,
    }
    sentence = routing_sentence(healthy | {"class_expert_mi_random": 0.05})
    assert "shares the videos evenly" in sentence and "every expert takes part" in sentence
    assert "experts specialise by class" in sentence
    line = router_logit_line(collapsed | {"router_input_share": 0.04, "router_logit_scale": 0.123})
    assert "4% of the variation" in line[-1] and "0.12" in line[-1]


def test_near_ties_in_the_gates_are_not_specialisation():
    """The demo's router: two experts at 0.501/0.499 for every video; which one is 0.001 ahead follows the class.

    Counting the argmax as a choice gave a class-expert MI of 1.0 and a report saying the experts
    specialise, next to a heat map whose rows are all the same.
    """
    from actionmoe.evaluation.metrics import routing_health
    from actionmoe.evaluation.reports import routing_verdict

    labels = np.repeat(np.arange(4), 25)
    gates = np.zeros((100, 4))
    gates[:, 0] = np.where(labels < 2, 0.501, 0.499)
    gates[:, 3] = 1 - gates[:, 0]
    health = routing_health(gates, labels)
    assert health["class_expert_mi"] < 0.01
    experts = {**health, "fraction_routed": [1.0, 0.0, 0.0, 1.0]}
    verdict = routing_verdict(experts)
    assert verdict.startswith("Routing collapsed: 2 of 4 experts take every video") and "specialise" not in verdict

    decisive = np.eye(4)[labels // 2 * 3]  # classes 0, 1 wholly to expert 0; classes 2, 3 wholly to expert 3
    assert routing_health(decisive, labels)["class_expert_mi"] == pytest.approx(1.0)


def test_the_routing_verdict_names_what_the_router_does():
    from actionmoe.evaluation.reports import routing_verdict

    even = {
        "normalized_entropy_of_mean_gate": 0.98,
        "experts_under_5_percent": 0,
        "class_expert_mi": 0.02,
        "class_expert_mi_random": 0.01,
        "fraction_routed": [0.5, 0.5, 0.5, 0.5],
    }
    assert routing_verdict(even).startswith("Every expert is used, but the choice of expert does not depend on")
    assert routing_verdict(even | {"class_expert_mi": 0.4}).startswith("The experts specialise by class")
    one_idle = even | {"experts_under_5_percent": 1, "fraction_routed": [0.7, 0.7, 0.6, 0.0]}
    assert routing_verdict(one_idle).startswith("Routing partly collapsed: 1 of 4 experts sees under 5%")


def test_calibration_matches_a_hand_computed_case():
    from actionmoe.evaluation.metrics import calibration

    scores = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 1])
    result = calibration(scores, labels)
    # confidences 0.9 (right), 0.6 (wrong), 0.7 (right), 0.8 (right), each alone in its bin
    assert result["ece"] == pytest.approx((0.1 + 0.6 + 0.3 + 0.2) / 4, abs=1e-6)
    assert result["brier"] == pytest.approx((0.02 + 0.72 + 0.18 + 0.08) / 4)
    used = [b for b in result["bins"] if b["videos"]]
    pairs = [v for b in used for v in (b["confidence"], b["accuracy"])]
    assert pairs == pytest.approx([0.6, 0, 0.7, 1, 0.8, 1, 0.9, 1])


def test_confidence_that_equals_accuracy_has_no_calibration_error():
    from actionmoe.evaluation.metrics import calibration

    scores = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)  # 80% right at confidence 0.8
    assert calibration(scores, labels)["ece"] == pytest.approx(0.0, abs=1e-6)
