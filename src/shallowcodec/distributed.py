"""Processes and devices of a training job: torchrun's process group and the rank-0 helpers.

``torchrun --nproc_per_node=P -m shallowcodec.train ...`` trains with P processes under
DistributedDataParallel (gloo on CPU, nccl with GPU LOCAL_RANK on CUDA); rank 0 writes
checkpoints and weights and shows progress, and all ranks stop together. Without torchrun the
job is one process (rank 0 of 1) and every helper here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

#: Environment variables set by torchrun for each process.
TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class Process:
    """This training process: its rank among ``world_size`` torchrun processes (0 of 1 without), its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Whether this process writes checkpoints and weights and shows progress (rank 0)."""
        return self.rank == 0


def start_process(device: str) -> Process:
    """Join the torchrun job if WORLD_SIZE, RANK and LOCAL_RANK are set (gloo on CPU, nccl on cuda:LOCAL_RANK).

    Raises:
        ValueError: ``device`` is "cuda" but PyTorch finds no CUDA device.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: PyTorch finds no CUDA device (train with --device cpu)")
    if not all(k in os.environ for k in TORCHRUN_VARIABLES):
        return Process(0, 1, torch.device(device))
    world_size, rank, local_rank = (int(os.environ[k]) for k in TORCHRUN_VARIABLES)
    if device == "cpu":
        dist.init_process_group("gloo")
        return Process(rank, world_size, torch.device("cpu"))
    gpu = torch.device("cuda", local_rank)
    torch.cuda.set_device(gpu)
    dist.init_process_group("nccl", device_id=gpu)
    return Process(rank, world_size, gpu)


def end_process() -> None:
    """Leave the torchrun job's process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def rank0_first(proc: Process) -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (all at once without torchrun)."""
    if proc.world_size > 1 and not proc.main:
        dist.barrier()
    yield
    if proc.world_size > 1 and proc.main:
        dist.barrier()


def rank0_decides(proc: Process, stop: bool, planned: int | None) -> tuple[bool, int | None]:
    """Rank 0's stop decision and planned total on every rank (a broadcast; as given without torchrun)."""
    if proc.world_size == 1:
        return stop, planned
    decision = torch.tensor([float(stop), float(planned or 0)], dtype=torch.float64, device=proc.device)
    dist.broadcast(decision, src=0)
    return bool(decision[0]), int(decision[1]) or None


def mean_over_processes(t: Tensor, world_size: int) -> Tensor:
    """``t`` averaged over the ``world_size`` processes in place (an all-reduce; ``t`` itself with one process)."""
    if world_size > 1:
        dist.all_reduce(t)
        t /= world_size
    return t
