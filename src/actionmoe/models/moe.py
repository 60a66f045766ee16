"""Mixture-of-experts classification head: MLP gate, noisy top-k routing, residual MLP experts.

Routing follows Shazeer et al. (2017): clean logits H0 = g(x) Wg, noise std softplus(g(x) Wn) + 0.01,
noisy logits H = H0 + eps * std (training only), keep the top k of H, softmax over the kept values.
In Shazeer's reference Wg and Wn start at zero, so routing starts uniform and the std at 0.70; the
shipped defaults (``ModelConfig``, measured in docs/ablation.md) start Wg small and random
(``gate_init_std``) and the std lower (``noise_std_start``), with Wn still at zero. The original
notebook's router has no Wn: a fixed std (``noise_std_learned = False``, std = ``noise_std_start``).
With k = 1 the
kept gate is the softmax probability of the chosen expert (Switch Transformer), so the task loss
still trains the router.

Balancing (computed in float32 over the whole batch, and over all ranks when ``reduce`` is set):

- ``shazeer``: CV^2(importance) + CV^2(load), importance_i = sum_x G(x)_i and
  load_i = sum_x Phi((H0_i - threshold_i) / std_i) with threshold_i the (k+1)-th largest noisy logit
  when expert i is in the top k, else the k-th. Without noise (evaluation), load counts assignments.
- ``switch``: E * sum_i f_i P_i, f_i the fraction of assignments to expert i, P_i its mean probability.
- router z-loss: mean(logsumexp(H0)^2).

A shared expert (``shared_expert``, as in DeepSeekMoE) is added at full weight for every input,
beside the routed mixture: it learns from every video while the routed experts specialise.

All experts run densely on stacked weights and are mixed by the sparse gates: at one token per
clip that is faster than dispatching, and it compiles without graph breaks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from actionmoe.config import NOISE_STD_FLOOR, ModelConfig

CV_EPS = 1e-10
DEFAULTS = ModelConfig()  # the shipped head: every default below is the config's


class RoutingStats(NamedTuple):
    gates: torch.Tensor  # [B, E] sparse, k non-zero per row
    router_probs: torch.Tensor  # [B, E] softmax of the routing logits
    fraction_routed: torch.Tensor  # [E] share of assignments per expert
    importance: torch.Tensor  # [E] sum of gate values
    load: torch.Tensor  # [E] smooth load estimate (noisy training) or assignment counts
    balance_loss: torch.Tensor  # scalar, before its weight
    z_loss: torch.Tensor  # scalar, before its weight
    logits: torch.Tensor  # [B, E] the routing logits (noisy in training, clean in evaluation)
    flip_rate: torch.Tensor  # scalar: share of inputs whose noisy top-k set differs from the clean one
    noise_std: torch.Tensor  # scalar: mean noise std (0 without noise)


class HeadOutput(NamedTuple):
    logits: torch.Tensor  # [B, num_classes]
    aux_loss: torch.Tensor  # scalar, weighted; the engine adds it to the task loss
    routing: RoutingStats | None


def cv_squared(values: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation with population variance: var / (mean^2 + 1e-10)."""
    return values.var(unbiased=False) / (values.mean() ** 2 + CV_EPS)


class NoisyTopKRouter(nn.Module):
    """[B, D] -> gate logits; a two-layer MLP.

    Shazeer's reference: both output layers start at zero, so routing starts uniform and the noise
    std at softplus(0) + 0.01 = 0.70. ``gate_init_std`` > 0 starts W_gate random instead (normal
    with that std), and ``noise_std_start`` moves the std's starting point (a constant offset
    inside the softplus; W_noise still starts at zero and is learned). With ``noise_learned`` off
    there is no W_noise: the std is ``noise_std_start`` throughout (the original notebook's router).
    """

    def __init__(
        self,
        in_features: int,
        num_experts: int,
        *,
        hidden: int = DEFAULTS.gate_hidden,
        noisy: bool = DEFAULTS.noisy_gating,
        gate_init_std: float = DEFAULTS.gate_init_std,
        noise_std_start: float = DEFAULTS.noise_std_start,
        noise_learned: bool = DEFAULTS.noise_std_learned,
    ) -> None:
        super().__init__()
        self.noisy = noisy
        self.fixed_std = None if noise_learned else noise_std_start
        self.hidden = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU())
        self.w_gate = nn.Linear(hidden, num_experts, bias=False)
        if gate_init_std > 0:
            nn.init.normal_(self.w_gate.weight, std=gate_init_std)
        else:
            nn.init.zeros_(self.w_gate.weight)
        learned = noisy and noise_learned
        self.w_noise = nn.Linear(hidden, num_experts, bias=False) if learned else None  # unused weights break DDP
        if self.w_noise is not None:
            nn.init.zeros_(self.w_noise.weight)
            self.noise_offset = math.log(math.expm1(noise_std_start - NOISE_STD_FLOOR))  # softplus(offset)+floor=start

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns clean logits [B, E], routing logits [B, E] (noisy in training), noise std or None."""
        h = self.hidden(x)
        clean = self.w_gate(h)
        if not self.noisy or not self.training:
            return clean, clean, None
        if self.fixed_std is not None:
            noise_std = torch.full_like(clean, self.fixed_std)  # [B, E]
        else:
            noise_std = F.softplus(self.w_noise(h) + self.noise_offset) + NOISE_STD_FLOOR
        return clean, clean + torch.randn_like(clean) * noise_std, noise_std


def top_k_gates(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse gates [B, E] and the sorted top-(k+1) logits [B, min(k+1, E)]."""
    top_values, top_indices = logits.topk(min(top_k + 1, logits.shape[1]), dim=1)
    kept = top_indices[:, :top_k]
    if top_k == 1:  # Switch-style: keep the probability so the router gets a gradient
        values = logits.softmax(dim=1).gather(1, kept)
    else:
        values = top_values[:, :top_k].softmax(dim=1)
    return torch.zeros_like(logits).scatter(1, kept, values), top_values


def smooth_load(
    clean: torch.Tensor, noisy: torch.Tensor, noise_std: torch.Tensor, top_values: torch.Tensor, top_k: int
) -> torch.Tensor:
    """Shazeer's differentiable load estimate sum_x P(x, i); [E]. Needs E > k."""
    threshold_if_in = top_values[:, top_k : top_k + 1]  # (k+1)-th largest noisy logit, [B, 1]
    threshold_if_out = top_values[:, top_k - 1 : top_k]  # k-th largest
    is_in = noisy > threshold_if_in
    prob_if_in = normal_cdf((clean - threshold_if_in) / noise_std)
    prob_if_out = normal_cdf((clean - threshold_if_out) / noise_std)
    return torch.where(is_in, prob_if_in, prob_if_out).sum(dim=0)


def normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def routing_statistics(
    clean: torch.Tensor,
    noisy: torch.Tensor,
    noise_std: torch.Tensor | None,
    top_k: int,
    balance: str,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> RoutingStats:
    """Gates, balance statistics and losses from the router's logits (all float32)."""
    gates, top_values = top_k_gates(noisy, top_k)
    probs = noisy.softmax(dim=1)
    num_experts = gates.shape[1]
    assigned = (gates > 0).float()
    if noise_std is not None and num_experts > top_k:
        load = smooth_load(clean, noisy, noise_std, top_values, top_k)
    else:
        load = assigned.sum(dim=0)
    sums = torch.stack([gates.sum(0), load, assigned.sum(0), probs.sum(0)])  # [4, E]
    if reduce is not None:
        sums = reduce(sums)
    importance, load, counts, prob_sums = sums.unbind(0)
    fraction = counts / counts.sum().clamp_min(1.0)
    samples = (counts.sum() / top_k).clamp_min(1.0)
    if balance == "shazeer":
        balance_loss = cv_squared(importance) + cv_squared(load)
    elif balance == "switch":
        balance_loss = num_experts * (fraction * prob_sums / samples).sum()
    else:
        balance_loss = torch.zeros((), device=gates.device)
    z_loss = torch.logsumexp(clean, dim=1).pow(2).mean()
    flips, mean_std = torch.zeros((), device=gates.device), torch.zeros((), device=gates.device)
    if noise_std is not None:
        clean_set = torch.zeros_like(clean, dtype=torch.bool).scatter(1, clean.topk(top_k, dim=1).indices, True)
        flips = (clean_set != (gates > 0)).any(dim=1).float().mean().detach()
        mean_std = noise_std.mean().detach()
    return RoutingStats(gates, probs, fraction, importance, load, balance_loss, z_loss, noisy, flips, mean_std)


class ResidualExperts(nn.Module):
    """E residual MLP experts on stacked weights, computed densely: [B, D] -> [B, E, C].

    Expert e: y = x + W2 dropout(GELU(W1 LN_e(x))); out = Wout y.
    """

    def __init__(self, num_experts: int, in_features: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        e, d, h, c = num_experts, in_features, hidden, num_classes
        self.norm_weight = nn.Parameter(torch.ones(e, d))
        self.norm_bias = nn.Parameter(torch.zeros(e, d))
        self.w1 = nn.Parameter(torch.empty(e, d, h).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d)))
        self.b1 = nn.Parameter(torch.zeros(e, h))
        self.w2 = nn.Parameter(torch.empty(e, h, d).normal_(0, 0.02 / math.sqrt(h)))
        self.b2 = nn.Parameter(torch.zeros(e, d))
        self.w_out = nn.Parameter(torch.empty(e, d, c).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d)))
        self.b_out = nn.Parameter(torch.zeros(e, c))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.layer_norm(x, x.shape[-1:])[:, None, :] * self.norm_weight + self.norm_bias  # [B, E, D]
        hidden = self.dropout(F.gelu(torch.einsum("bed,edh->beh", normed, self.w1) + self.b1))  # [B, E, H]
        residual = x[:, None, :] + torch.einsum("beh,ehd->bed", hidden, self.w2) + self.b2  # [B, E, D]
        return torch.einsum("bed,edc->bec", residual, self.w_out) + self.b_out  # [B, E, C]


class MoEHead(nn.Module):
    """[B, D] features -> HeadOutput with logits, weighted auxiliary loss and routing statistics."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        num_experts: int = DEFAULTS.num_experts,
        top_k: int = DEFAULTS.top_k,
        gate_hidden: int = DEFAULTS.gate_hidden,
        expert_hidden: int = DEFAULTS.expert_hidden,
        expert_dropout: float = DEFAULTS.expert_dropout,
        noisy_gating: bool = DEFAULTS.noisy_gating,
        gate_init_std: float = DEFAULTS.gate_init_std,
        noise_std_start: float = DEFAULTS.noise_std_start,
        noise_std_learned: bool = DEFAULTS.noise_std_learned,
        shared_expert: bool = DEFAULTS.shared_expert,
        balance: str = DEFAULTS.balance,
        balance_weight: float = DEFAULTS.balance_weight,
        z_loss_weight: float = DEFAULTS.z_loss_weight,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """Defaults are the config's (``ModelConfig``): ``MoEHead(512, 51)`` is the shipped head.

        ``reduce`` sums the balance statistics over ranks (distributed training); None in one process.
        Values are not checked here: the config validates them (1 <= top_k <= num_experts, balance name).
        """
        super().__init__()
        self.top_k = top_k
        self.balance = balance
        self.balance_weight = balance_weight
        self.z_loss_weight = z_loss_weight
        self.router = NoisyTopKRouter(
            in_features,
            num_experts,
            hidden=gate_hidden,
            noisy=noisy_gating,
            gate_init_std=gate_init_std,
            noise_std_start=noise_std_start,
            noise_learned=noise_std_learned,
        )
        self.shared = int(shared_expert)  # number of always-on experts, stacked before the routed ones
        self.experts = ResidualExperts(
            self.shared + num_experts, in_features, expert_hidden, num_classes, expert_dropout
        )
        self.reduce = reduce

    def forward(self, features: torch.Tensor) -> HeadOutput:
        with torch.autocast(device_type=features.device.type, enabled=False):
            clean, noisy, noise_std = self.router(features.float())
            reduce = self.reduce if self.training else None  # evaluation shards differ in length per rank
            routing = routing_statistics(clean, noisy, noise_std, self.top_k, self.balance, reduce)
        logits = self.mix(self.experts(features), routing.gates)
        aux_loss = self.balance_weight * routing.balance_loss + self.z_loss_weight * routing.z_loss
        return HeadOutput(logits, aux_loss, routing)

    def mix(self, expert_logits: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """Every expert's logits [B, S + E, C] (shared first) weighted by gates [B, E] -> logits [B, C].

        The shared expert counts at full weight. Evaluation calls it with other gates than the router's
        to measure what routing changes (``evaluation.mechanisms.routing_effect``).
        """
        routed = expert_logits[:, self.shared :]  # [B, E, C]
        logits = torch.einsum("be,bec->bc", gates.to(expert_logits.dtype), routed)
        return logits + expert_logits[:, 0] if self.shared else logits


class LinearHead(nn.Module):
    """The plain baseline head (for ablations): [B, D] -> HeadOutput without routing."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> HeadOutput:
        return HeadOutput(self.fc(features), features.new_zeros(()), None)
