"""TRL's SFTTrainer without host syncs in the step: its per-micro-batch metrics stay on the GPU until a log.

TRL 1.15's ``compute_loss`` reads three numbers back from the GPU for every micro-batch (entropy, token
accuracy, token count: ``.item()`` each, and an all-gather each under DDP). Each read makes the CPU wait for
the GPU to finish the forward before it can queue the backward, so CPU and GPU time add up instead of
overlapping; with the seed's micro-batches of two rows most of a step went there (docs/BENCHMARKS.md).

``LeanSFTTrainer`` computes the same loss the same way (TRL's fused LM head, summed log-probabilities over the
label tokens divided by ``num_items_in_batch``) and adds the metrics into running sums on the GPU. ``log`` turns
them into numbers once, when the loss is read anyway: entropy and accuracy are then averaged over the label
tokens of the logging window (TRL averages per micro-batch; equal when the micro-batches have equal token
counts), ``num_tokens`` is the same count. Anything off the plain path (evaluation, DFT, label smoothing, a
custom loss, MoE aux loss, sequence parallelism, ``return_outputs``) goes to TRL's own ``compute_loss``.
"""

from __future__ import annotations

from typing import Any

_CLASS: type | None = None


def lean_trainer_class() -> type:
    """The SFTTrainer subclass (built on first use: trl must be imported after unsloth, never at kft's import)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _build()
    return _CLASS


def _build() -> type:
    import torch
    from trl import SFTTrainer

    class LeanSFTTrainer(SFTTrainer):
        _sums: torch.Tensor | None = None  # label tokens, entropy sum, top-1 hits, input tokens since the last log

        def _plain(self, model: Any, return_outputs: bool) -> bool:
            args = self.args
            pc = getattr(self.accelerator, "parallelism_config", None)
            return (model.training and not return_outputs and getattr(args, "loss_type", "nll") == "nll"
                    and self.compute_loss_func is None and self.label_smoother is None
                    and not getattr(self, "aux_loss_enabled", False)
                    and not (pc is not None and getattr(pc, "sp_enabled", False)))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            if not self._plain(model, return_outputs):
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            inputs["use_cache"] = False
            outputs = model(**inputs, fused_lm_head=True)
            num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = (-outputs.log_probs).sum() / torch.as_tensor(num_tokens).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            self._add_metrics(outputs, inputs)
            return loss

        def _add_metrics(self, outputs: Any, inputs: dict[str, Any]) -> None:
            """Running sums on the GPU; nothing is read back here."""
            with torch.no_grad():
                mask = outputs.label_mask
                zero = mask.new_zeros((), dtype=torch.float32)
                if "attention_mask" in inputs:
                    seen = inputs["attention_mask"].sum()
                else:  # padding-free: one row of real tokens
                    seen = zero + inputs["position_ids"].size(1)
                part = torch.stack([mask.sum().float(),
                                    outputs.entropy.sum().float() if outputs.entropy is not None else zero,
                                    outputs.is_top1.sum().float() if outputs.is_top1 is not None else zero,
                                    seen.float()])
                self._sums = part if self._sums is None else self._sums + part

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if self._sums is not None and self.model.training:
                sums = self._sums
                if self.accelerator.num_processes > 1:
                    sums = self.accelerator.reduce(sums, reduction="sum")
                valid, entropy, top1, seen = sums.tolist()  # the one read-back, beside the loss's
                self._sums = None
                metrics = self._metrics["train"]
                metrics["entropy"] = [entropy / valid if valid > 0 else 0.0]
                metrics["mean_token_accuracy"] = [top1 / valid if valid > 0 else 0.0]
                self._total_train_tokens += int(seen) // self._tp_size
                metrics["num_tokens"] = [self._total_train_tokens]
            super().log(logs, start_time)

    return LeanSFTTrainer
