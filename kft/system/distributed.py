"""Distributed data parallel helpers (torchrun / accelerate launch set RANK, WORLD_SIZE, LOCAL_RANK). The engine
is PyTorch DDP via transformers' Trainer; kft only decides who writes files (rank 0) and sums token counters."""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """Only rank 0 logs, writes metrics and run.json, and saves the adapter."""
    return rank() == 0


def sum_across_ranks(value: int) -> int:
    """Sum an integer over all ranks (the value itself when not distributed)."""
    import torch.distributed as dist

    if not (is_distributed() and dist.is_available() and dist.is_initialized()):
        return value
    import torch

    device = f"cuda:{local_rank()}" if torch.cuda.is_available() and dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(t)
    return int(t.item())
