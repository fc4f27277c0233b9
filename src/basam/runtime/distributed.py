"""The little that `torchrun` needs: join the process group it describes, and gather to rank 0."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup(device: str = "cpu") -> tuple[int, int]:
    """(rank, world size). Under torchrun (WORLD_SIZE > 1) joins the process group: gloo on CPU,
    nccl on CUDA. A plain run is rank 0 of 1 and touches nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def gather_to_rank0(obj):
    """[obj of rank 0, obj of rank 1, …] on rank 0, None elsewhere; [obj] without torchrun."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
