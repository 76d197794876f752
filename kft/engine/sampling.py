"""Choosing the next token of every row on the device, outside the captured step: greedy, or temperature / top-p
sampling with a generator of the request's own (never the global one), after a repetition penalty; each setting
per row. The same arithmetic as transformers' RepetitionPenalty, Temperature and TopP processors, in that order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class RowSampling:
    """Per-row decoding settings as tensors (rows,) on the device."""

    do_sample: Any  # bool
    temperature: Any  # float32
    top_p: Any  # float32
    repetition_penalty: Any  # float32
    penalize: bool  # some row has a penalty other than 1
    sample: bool  # some row samples
    suppress: Any | None = None  # token ids never chosen (the model's generation_config.suppress_tokens)

    @classmethod
    def of(cls, gens: list[Any], device: Any, suppress: list[int] | None = None) -> RowSampling:
        """From one GenerationArgs per row; ``suppress``: token ids no row may choose."""
        import torch

        def col(name: str, dtype: Any) -> Any:
            return torch.tensor([getattr(g, name) for g in gens], dtype=dtype, device=device)

        return cls(col("do_sample", torch.bool), col("temperature", torch.float32), col("top_p", torch.float32),
                   col("repetition_penalty", torch.float32),
                   any(g.repetition_penalty != 1.0 for g in gens), any(g.do_sample for g in gens),
                   torch.tensor(sorted(suppress), dtype=torch.long, device=device) if suppress else None)


def choose(logits: Any, history: Any, s: RowSampling, generator: Any | None) -> Any:
    """The next token of every row (rows,) from float32 ``logits`` (rows, vocab); ``history`` (rows, n) the ids so
    far (prompt included), which the repetition penalty reads."""
    import torch

    if s.suppress is not None:
        logits = logits.index_fill(1, s.suppress, float("-inf"))
    if s.penalize:
        p = s.repetition_penalty[:, None]
        score = logits.gather(1, history)
        logits = logits.scatter(1, history, torch.where(score < 0, score * p, score / p))
    greedy = logits.argmax(dim=-1)
    if not s.sample:
        return greedy
    scaled = logits / s.temperature[:, None]
    ordered, index = scaled.sort(dim=-1, descending=False)
    cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
    drop = (cumulative <= (1 - s.top_p[:, None])) & (s.top_p < 1.0)[:, None]
    drop[:, -1] = False  # keep at least the most likely token
    scaled = scaled.scatter(1, index, ordered.masked_fill(drop, float("-inf")))
    sampled = torch.multinomial(scaled.softmax(dim=-1), 1, generator=generator).squeeze(1)
    return torch.where(s.do_sample, sampled, greedy)
