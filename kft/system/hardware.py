"""The one place that asks what this machine has (a CUDA GPU, its capability, optional packages such as Unsloth),
so a test can pretend to be a T4 or an H200 by patching one function."""

from __future__ import annotations

import importlib.util
import logging

logger = logging.getLogger(__name__)


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def cuda_capability() -> tuple[int, int] | None:
    """Compute capability of GPU 0, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability(0))  # type: ignore[return-value]


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def has_package(name: str) -> bool:
    """Whether an optional package (unsloth, scipy, ...) can be imported, without importing it."""
    return importlib.util.find_spec(name) is not None


def resolve_dtype(requested: str | None, capability: tuple[int, int] | None) -> str:
    """The dtype to compute in (capability: CUDA compute capability, None on CPU). bf16 needs 8.0 (Ampere) or newer;
    on a T4 (7.5) ``torch.cuda.is_bf16_supported()`` can answer True (emulation), so it is not asked."""
    if requested:
        if capability is None and requested != "float32":
            logger.info("dtype %s requested on CPU; using float32", requested)
            return "float32"
        if requested == "bfloat16" and capability is not None and capability < (8, 0):
            raise ValueError(f"bfloat16 needs compute capability 8.0 or newer; this GPU has {capability[0]}.{capability[1]}. Use float16.")
        return requested
    if capability is None:
        return "float32"
    return "bfloat16" if capability >= (8, 0) else "float16"
