"""Data-parallel training over several processes: ``torchrun --nproc_per_node N -m nlp_rnn train CONFIG``.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; the trainer then joins a process group (gloo on
CPU, nccl on CUDA) and wraps its training step in ``DistributedDataParallel``. ``train.batch_size`` (and
``train.max_tokens``) is per process, as in PyTorch's DDP: every rank builds the same bucketed batches of
``world_size * batch_size`` examples and takes its own share (:func:`shard`), so N processes step through
exactly the batches one process would with an N times larger batch, and DDP averages their gradients.
Training metrics are summed across ranks; validation runs on rank 0 and its report is broadcast, so every
rank takes the same early-stopping and schedule decisions; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def context_from_env() -> Context:
    """This process's place in a torchrun job (one process, rank 0, when not launched by torchrun)."""
    return Context(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def setup(context: Context, device: torch.device) -> None:
    """Join the process group torchrun prepared (gloo on CPU, nccl on CUDA); nothing for one process."""
    if context.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(indices: list[int], context: Context) -> list[int]:
    """This rank's share of a global batch: every world_size-th example, starting at its rank."""
    return indices[context.rank :: context.world_size]


def sum_across(values: list[float], context: Context) -> list[float]:
    """Element-wise sums over ranks (float64 on the CPU, so counts stay exact)."""
    if not context.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def from_main(value: Any, context: Context) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather(value: Any, context: Context) -> list[Any]:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank; ``[value]`` alone."""
    if not context.enabled:
        return [value]
    values: list[Any] = [None] * context.world_size
    dist.all_gather_object(values, value)
    return values


def barrier(context: Context) -> None:
    if context.enabled:
        dist.barrier()
