"""torchrun / DDP set-up: gloo on CPU, NCCL on CUDA. Only rank 0 writes files."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_preference: str) -> DistContext:
    """Join the process group that torchrun describes in the environment; a no-op without it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_preference != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank, world_size, local_rank)


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def shutdown_distributed(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Sum over ranks (no gradient); identity in a single process."""
    if context.enabled:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def differentiable_sum(tensor: torch.Tensor) -> torch.Tensor:
    """All-reduce that back-propagates: MoE balance statistics over the whole global batch."""
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(tensor)


def broadcast_flag(flag: bool, context: DistContext) -> bool:
    """Rank 0's decision, for every rank (early stop, non-finite loss)."""
    if not context.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.broadcast(value, src=0)
    return bool(value.item())
