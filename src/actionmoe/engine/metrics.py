"""Running sums for losses, accuracies and expert usage during training, reducible across ranks."""

from __future__ import annotations

import torch

from actionmoe.engine.distributed import DistContext, all_reduce_sum


class Meter:
    """Sums of named scalars and one vector (expert usage); ``mean`` after reducing over ranks."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.vector: torch.Tensor | None = None
        self.vector_count = 0

    def add(self, **values: float) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def add_vector(self, values: torch.Tensor) -> None:
        values = values.detach().float().cpu()
        self.vector = values if self.vector is None else self.vector + values
        self.vector_count += 1

    def reduced(self, context: DistContext) -> dict[str, float]:
        names = sorted(self.sums)
        totals = all_reduce_sum(torch.tensor([self.sums[n] for n in names], dtype=torch.float64), context)
        return dict(zip(names, totals.tolist()))

    def vector_mean(self) -> list[float]:
        if self.vector is None:
            return []
        return (self.vector / max(1, self.vector_count)).tolist()
