"""Data-parallel training under torchrun: which process this is, and the few collective operations the
loop needs. Under plain `python -m trainer` everything here is the single-process identity.

Every rank keeps the same global random stream (same seed, same draws): each epoch's permutation and
each step's noise are drawn for the whole global batch on every rank, and each rank takes its shard.
So N ranks of batch B see exactly the data and noise that one process of batch N x B would, and a
resumed run needs only rank 0's saved state, whatever the number of ranks.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def from_environment() -> Ranks:
    """The process's place in a torchrun job (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return Ranks(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def init(ranks: Ranks, device: torch.device) -> None:
    """Join the process group: NCCL on CUDA, gloo on the CPU. Publishing and evaluation on rank 0 may take
    minutes while the others wait, hence the long timeout."""
    if ranks.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=2))


def device_for(ranks: Ranks, device: torch.device) -> torch.device:
    """One GPU per rank: cuda:LOCAL_RANK."""
    if ranks.distributed and device.type == "cuda":
        torch.cuda.set_device(ranks.local_rank)
        return torch.device("cuda", ranks.local_rank)
    return device


def shard(n: int, ranks: Ranks) -> slice:
    """This rank's rows of a global batch of n: as equal as can be, in rank order."""
    base, extra = divmod(n, ranks.world_size)
    start = ranks.rank * base + min(ranks.rank, extra)
    return slice(start, start + base + (1 if ranks.rank < extra else 0))


def any_rank(flag: bool, ranks: Ranks) -> bool:
    """True on every rank if it is true on any: all ranks stop at the same step. A CPU tensor through
    gloo: with NCCL it would synchronise the GPU stream every step."""
    if not ranks.distributed:
        return flag
    t = torch.tensor([1 if flag else 0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_cpu_group())
    return bool(t.item())


def mean_over_ranks(t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The element-wise mean of a CPU tensor over all ranks (the per-step statistics, once an epoch)."""
    if not ranks.distributed:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=_cpu_group())
    return t / ranks.world_size


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier(group=_cpu_group())


def finish(ranks: Ranks) -> None:
    """Leave the process group, after every rank is done with it.

    DistributedDataParallel's wrappers sit in reference cycles that hold gloo's pending work; a rank that only
    waits (every rank but 0, at the barrier while rank 0 publishes) allocates nothing, so the cyclic collector
    never runs there, and the wrappers are freed only while the interpreter shuts down, when freeing their tensors
    from gloo's threads aborts the process ("terminate called without an active exception", SIGABRT) after a
    successful run. Collected here, they go while everything is alive; the barrier first means no rank tears
    its group down while another still uses it."""
    if ranks.distributed and dist.is_initialized():
        gc.collect()
        dist.barrier(group=_cpu_group())
        dist.destroy_process_group()


_CPU_GROUP = None


def _cpu_group():
    global _CPU_GROUP
    if _CPU_GROUP is None:
        _CPU_GROUP = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    return _CPU_GROUP
