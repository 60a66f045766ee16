import math

import numpy as np
import pytest
import torch

from actionmoe.config import SHAZEER_NOISE_STD, ModelConfig
from actionmoe.models.moe import MoEHead, ResidualExperts, cv_squared, routing_statistics, top_k_gates
from actionmoe.models.recognizer import build_model

torch.manual_seed(0)


# Shazeer's formulation, which most tests below check against its formulas; the shipped defaults differ
SHAZEER = dict(gate_init_std=0.0, noise_std_start=SHAZEER_NOISE_STD, shared_expert=False, balance_weight=0.01)


def head(**kwargs) -> MoEHead:
    options = dict(in_features=16, num_classes=5, num_experts=4, top_k=2, gate_hidden=8, expert_hidden=12, **SHAZEER)
    return MoEHead(**{**options, **kwargs})


def test_exactly_k_gates_summing_to_one():
    model = head(top_k=2).train()
    out = model(torch.randn(32, 16))
    gates = out.routing.gates
    assert out.logits.shape == (32, 5)
    assert ((gates > 0).sum(dim=1) == 2).all()
    assert torch.allclose(gates.sum(dim=1), torch.ones(32))


def test_k1_uses_the_switch_probability_so_the_router_learns():
    model = head(top_k=1, noisy_gating=False).eval()
    with torch.no_grad():
        model.router.w_gate.weight.normal_()
    features = torch.randn(8, 16)
    out = model(features)
    assert ((out.routing.gates > 0).sum(dim=1) == 1).all()
    assert torch.allclose(out.routing.gates.max(dim=1).values, out.routing.router_probs.max(dim=1).values)
    out.logits.sum().backward()
    assert model.router.w_gate.weight.grad.abs().sum() > 0


def test_zero_initialised_routing_starts_uniform():
    out = head().eval()(torch.randn(6, 16))
    assert torch.allclose(out.routing.router_probs, torch.full((6, 4), 0.25))
    assert torch.allclose(out.routing.gates[out.routing.gates > 0], torch.full((12,), 0.5))


def test_router_initialisation_options():
    assert head().router.w_gate.weight.abs().sum() == 0  # Shazeer's reference: zero
    random_gate = head(gate_hidden=256, gate_init_std=0.1).router.w_gate.weight  # [4, 256]
    assert random_gate.std().item() == pytest.approx(0.1, rel=0.15)
    out = head(gate_init_std=0.5).eval()(torch.randn(6, 16))
    assert not torch.allclose(out.routing.router_probs, torch.full((6, 4), 0.25))  # input-dependent from the start


@pytest.mark.parametrize("start", [math.log(2.0) + 0.01, 0.2, 0.05])
def test_the_noise_std_starts_where_asked_and_stays_learnable(start):
    router = head(noise_std_start=start).train().router
    _, _, noise_std = router(torch.randn(5, 16))
    assert torch.allclose(noise_std, torch.full((5, 4), start), atol=1e-6)
    noise_std.sum().backward()
    assert router.w_noise.weight.grad.abs().sum() > 0


def test_noise_only_in_training_and_evaluation_is_deterministic():
    model = head()
    with torch.no_grad():
        model.router.w_gate.weight.normal_()
        model.router.w_noise.weight.normal_()
    features = torch.randn(64, 16)
    model.eval()
    first, second = model(features), model(features)
    assert torch.equal(first.logits, second.logits) and torch.equal(first.routing.gates, second.routing.gates)
    model.train()
    model.experts.dropout.p = 0.0
    assert not torch.equal(model(features).routing.gates, model(features).routing.gates)


def naive_experts(experts: ResidualExperts, x: torch.Tensor) -> torch.Tensor:
    """One expert at a time, with nn.functional building blocks."""
    outputs = []
    for e in range(experts.w1.shape[0]):
        normed = torch.nn.functional.layer_norm(x, x.shape[-1:], experts.norm_weight[e], experts.norm_bias[e])
        hidden = torch.nn.functional.gelu(normed @ experts.w1[e] + experts.b1[e])
        residual = x + hidden @ experts.w2[e] + experts.b2[e]
        outputs.append(residual @ experts.w_out[e] + experts.b_out[e])
    return torch.stack(outputs, dim=1)


def test_dense_experts_equal_a_naive_loop():
    model = head(expert_dropout=0.0).eval()
    with torch.no_grad():
        for param in model.experts.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    x = torch.randn(10, 16)
    assert torch.allclose(model.experts(x), naive_experts(model.experts, x), atol=1e-5)
    gates = model(x).routing.gates
    mixed = torch.stack([sum(gates[b, e] * naive_experts(model.experts, x)[b, e] for e in range(4)) for b in range(10)])
    assert torch.allclose(model(x).logits, mixed, atol=1e-5)


def test_a_shared_expert_is_always_added_at_full_weight_next_to_the_routed_mixture():
    model = head(shared_expert=True, expert_dropout=0.0).eval()
    with torch.no_grad():
        model.router.w_gate.weight.normal_()
    x = torch.randn(10, 16)
    experts = naive_experts(model.experts, x)  # [10, 5, 5]: the shared expert first, then the 4 routed
    assert experts.shape[1] == 5
    out = model(x)
    assert out.routing.gates.shape == (10, 4) and ((out.routing.gates > 0).sum(dim=1) == 2).all()
    routed = torch.einsum("be,bec->bc", out.routing.gates, experts[:, 1:])
    assert torch.allclose(out.logits, experts[:, 0] + routed, atol=1e-5)


def test_the_shared_expert_learns_from_every_video_and_each_routed_expert_only_from_its_own():
    model = head(shared_expert=True, top_k=1, noisy_gating=False, expert_dropout=0.0).train()
    with torch.no_grad():
        model.router.w_gate.weight.zero_()
        model.router.w_gate.weight[0].fill_(1.0)  # with a positive GELU output every row prefers expert 0
        model.router.hidden[0].bias.fill_(5.0)
    model(torch.randn(6, 16)).logits.sum().backward()
    used = model.experts.w_out.grad.abs().sum(dim=(1, 2))  # [5]
    assert used[0] > 0 and used[1] > 0  # the shared expert, and routed expert 0
    assert torch.all(used[2:] == 0)


# A fixed example: 4 samples, 3 experts, k = 2.
CLEAN = [[0.5, -0.2, 0.1], [0.0, 0.3, -0.4], [1.0, 0.9, -1.0], [-0.3, 0.2, 0.25]]
EPS = [[0.3, -1.0, 0.5], [-0.2, 0.4, 1.5], [0.1, -0.1, 0.2], [0.6, 0.0, -0.7]]
NOISE_STD = [[0.2, 0.5, 0.3], [0.4, 0.1, 0.6], [0.25, 0.35, 0.45], [0.3, 0.3, 0.3]]


def hand_reference(k: int = 2) -> dict:
    """The formulas of Shazeer et al. and Switch, evaluated in float64 with plain Python."""
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))
    experts = 3
    noisy = [[c + e * s for c, e, s in zip(cr, er, sr)] for cr, er, sr in zip(CLEAN, EPS, NOISE_STD)]
    importance, load, counts, prob_sum = [0.0] * experts, [0.0] * experts, [0.0] * experts, [0.0] * experts
    for row, clean_row, std_row in zip(noisy, CLEAN, NOISE_STD):
        order = sorted(range(experts), key=lambda i: -row[i])
        kept = order[:k]
        denominator = sum(math.exp(row[i]) for i in kept)
        all_denominator = sum(math.exp(v) for v in row)
        kth, k1th = row[order[k - 1]], row[order[k]]
        for i in range(experts):
            if i in kept:
                importance[i] += math.exp(row[i]) / denominator
                counts[i] += 1
            threshold = k1th if i in kept else kth
            load[i] += phi((clean_row[i] - threshold) / std_row[i])
            prob_sum[i] += math.exp(row[i]) / all_denominator

    def cv2(values):
        mean = sum(values) / len(values)
        return (sum((v - mean) ** 2 for v in values) / len(values)) / (mean**2 + 1e-10)

    fraction = [c / sum(counts) for c in counts]
    switch = experts * sum(f * p / len(CLEAN) for f, p in zip(fraction, prob_sum))
    z = sum(math.log(sum(math.exp(v) for v in row)) ** 2 for row in CLEAN) / len(CLEAN)
    return {"shazeer": cv2(importance) + cv2(load), "switch": switch, "z": z, "importance": importance, "load": load}


@pytest.mark.parametrize("balance", ["shazeer", "switch"])
def test_balance_losses_equal_a_float64_hand_computation(balance):
    clean = torch.tensor(CLEAN, dtype=torch.float64)
    std = torch.tensor(NOISE_STD, dtype=torch.float64)
    noisy = clean + torch.tensor(EPS, dtype=torch.float64) * std
    stats = routing_statistics(clean, noisy, std, top_k=2, balance=balance)
    expected = hand_reference()
    assert stats.balance_loss.item() == pytest.approx(expected[balance], rel=1e-10, abs=1e-12)
    assert stats.z_loss.item() == pytest.approx(expected["z"], rel=1e-12)
    if balance == "shazeer":
        assert np.allclose(stats.importance.numpy(), expected["importance"], rtol=1e-12)
        assert np.allclose(stats.load.numpy(), expected["load"], rtol=1e-12)


def routed(assignment: list[int], experts: int = 4) -> torch.Tensor:
    """Logits that send sample b to expert assignment[b] (k = 1, no noise)."""
    logits = torch.full((len(assignment), experts), -4.0)
    logits[torch.arange(len(assignment)), torch.tensor(assignment)] = 4.0
    return logits


@pytest.mark.parametrize("balance", ["shazeer", "switch"])
def test_balance_loss_is_minimal_for_even_routing_and_grows_with_imbalance(balance):
    losses = []
    for assignment in ([0, 1, 2, 3] * 2, [0, 0, 1, 2, 3, 0, 1, 2], [0, 0, 0, 0, 1, 1, 2, 3], [0] * 8):
        logits = routed(assignment)
        losses.append(routing_statistics(logits, logits, None, top_k=1, balance=balance).balance_loss.item())
    assert losses == sorted(losses) and losses[0] < losses[-1]
    if balance == "shazeer":
        assert losses[0] == pytest.approx(0.0, abs=1e-6)
    else:
        assert losses[0] == pytest.approx(1.0, rel=1e-2)  # E * sum(1/E * 1/E) with near-one-hot probabilities


def test_cv_squared_uses_population_variance():
    assert cv_squared(torch.tensor([1.0, 3.0])).item() == pytest.approx(1.0 / 4.0)


def test_reduce_hook_sees_the_batch_sums():
    seen = []
    model = head(reduce=lambda sums: seen.append(sums.shape) or sums * 2)
    model(torch.randn(4, 16))
    assert seen == [torch.Size([4, 4])]


def test_top_k_gates_masks_the_rest():
    gates, _ = top_k_gates(torch.tensor([[3.0, 1.0, 2.0, 0.0]]), 2)
    assert (gates[0, [1, 3]] == 0).all() and gates[0, 0] > gates[0, 2] > 0


def test_view_predictions_carry_the_clean_router_logits_centred_and_averaged_over_views():
    from actionmoe.models.moe import HeadOutput
    from actionmoe.runtime.views import predict_views

    class HeadOnClips(torch.nn.Module):  # [N, 16] "clips" straight into the head
        def __init__(self) -> None:
            super().__init__()
            self.head = head(gate_init_std=0.5).eval()

        def forward(self, clip: torch.Tensor) -> HeadOutput:
            return self.head(clip)

    model = HeadOnClips()
    clips = torch.randn(3, 2, 16)  # [B, V, D]
    out = predict_views(model, clips, "fp32")
    clean = model.head.router(clips.flatten(0, 1))[0].view(3, 2, 4)  # evaluation: routing logits = clean
    expected = (clean - clean.mean(dim=2, keepdim=True)).mean(dim=1)
    assert torch.allclose(out.router_logits, expected, atol=1e-6) and out.router_logits.shape == (3, 4)


def test_a_head_built_with_no_options_is_the_head_the_default_config_builds():
    """One set of defaults: ``MoEHead(512, 51)`` in a notebook is the shipped head, setting for setting."""
    torch.manual_seed(0)
    shipped = build_model(ModelConfig(), 51).head
    bare = MoEHead(shipped.experts.w_out.shape[1], 51)
    settings = ("top_k", "balance", "balance_weight", "z_loss_weight")
    assert {name: getattr(bare, name) for name in settings} == {name: getattr(shipped, name) for name in settings}
    assert bare.shared == shipped.shared == 1  # the shared expert is on by default
    assert bare.router.noise_offset == pytest.approx(shipped.router.noise_offset)
    assert bare.experts.dropout.p == shipped.experts.dropout.p
    shapes = {name: tuple(p.shape) for name, p in bare.named_parameters()}
    assert shapes == {name: tuple(p.shape) for name, p in shipped.named_parameters()}
    assert bare.router.w_gate.weight.std() > 0  # the config's gate_init_std, not Shazeer's zero start


def test_the_notebook_s_fixed_noise_router_keeps_its_std_through_training():
    """model.noise_std_learned = false: no noise weights; the std is noise_std_start at every step."""
    torch.manual_seed(0)
    head = MoEHead(16, 3, num_experts=4, top_k=2, gate_hidden=8, expert_hidden=8, noise_std_learned=False,
                   noise_std_start=0.5)  # fmt: skip
    assert head.router.w_noise is None and not any("noise" in name for name, _ in head.named_parameters())
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    head.train()
    for _ in range(5):
        out = head(torch.randn(32, 16))
        assert out.routing.noise_std.item() == pytest.approx(0.5)
        loss = torch.nn.functional.cross_entropy(out.logits, torch.randint(0, 3, (32,))) + out.aux_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    learned = MoEHead(16, 3, num_experts=4, top_k=2, gate_hidden=8, expert_hidden=8, noise_std_start=0.5)
    assert learned.router.w_noise is not None  # the default router learns its std


def test_the_flip_rate_counts_inputs_whose_noisy_top_k_is_not_the_clean_one():
    clean = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    same = routing_statistics(clean, clean + 0.1, torch.full_like(clean, 0.1), 2, "shazeer")
    assert same.flip_rate.item() == 0.0 and same.noise_std.item() == pytest.approx(0.1)
    noisy = clean.clone()
    noisy[0] = torch.tensor([0.0, 2.0, 1.0, 3.0])  # top-2 {1, 3} instead of {0, 1}
    flipped = routing_statistics(clean, noisy, torch.ones_like(clean), 2, "shazeer")
    assert flipped.flip_rate.item() == 0.5
    quiet = routing_statistics(clean, clean, None, 2, "shazeer")  # evaluation: no noise
    assert quiet.flip_rate.item() == 0.0 and quiet.noise_std.item() == 0.0


def test_a_fixed_noise_std_must_be_positive():
    from actionmoe.config import load_config
    from actionmoe.errors import ConfigError

    assert load_config("demo", ["model.noise_std_learned=false", "model.noise_std_start=0.005"]).model
    with pytest.raises(ConfigError, match="model.noise_std_start"):
        load_config("demo", ["model.noise_std_learned=false", "model.noise_std_start=0"])
    with pytest.raises(ConfigError, match="model.noise_std_start"):
        load_config("demo", ["model.noise_std_start=0.005"])  # the learned std cannot go below its floor
