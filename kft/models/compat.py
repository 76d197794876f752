"""Small shims for the pinned stack. Each says why it exists.

TRL 1.15's SFTTrainer computes the loss through a fused LM head with a Triton kernel; without Triton (CPU-only
PyTorch) TRL sets it to None and training crashes ("'NoneType' object has no attribute 'apply'").
``ensure_trl_cpu_kernel`` installs a plain-PyTorch equivalent, only when the Triton kernel is missing.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class TorchChunkedLogProb:
    """Plain-PyTorch stand-in for trl.kernels.ChunkedLogProbFunction (same arguments and outputs)."""

    @staticmethod
    def apply(hidden, weight, bias, labels, temperature, chunk_size, softcap, logit_scale, outputs):  # noqa: ANN001, ANN205
        import torch

        logits = torch.nn.functional.linear(hidden, weight, bias).float() * logit_scale
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        logits = logits / temperature
        logp = torch.log_softmax(logits, dim=-1)
        log_probs = logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            probs = logp.exp()
            entropy = -(probs * logp).sum(-1) if "entropy" in outputs else None
            log_sum_sq = torch.logsumexp(2 * logp, dim=-1) if "log_sum_sq_probs" in outputs else None
            mean_logits = logits.mean(-1) if "mean_logits" in outputs else None
            is_top1 = (logits.argmax(-1) == labels) if "is_top1" in outputs else None
        return (log_probs if "log_probs" in outputs else None, entropy, log_sum_sq, mean_logits, is_top1)


def ensure_trl_cpu_kernel() -> bool:
    """Install the PyTorch fallback when TRL's Triton kernel is unavailable. True if installed."""
    import trl.trainer.utils as tu

    if getattr(tu, "_ChunkedLogProbFunction", object()) is None:
        tu._ChunkedLogProbFunction = TorchChunkedLogProb
        logger.info("Triton is not available: using kft's PyTorch version of TRL's fused log-prob kernel")
        return True
    return False
