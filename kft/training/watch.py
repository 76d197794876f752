"""Watch the refusal appear: during training, every N steps the adapter answers two fixed prompts (one harmful, one
benign) with a short greedy answer, judged by kft.inference.safety.detect_refusal. Called in the training job's own thread at
a step's end (the model is the job's); the model goes back to training mode afterwards. No UI here."""

from __future__ import annotations

import logging
from typing import Any

from ..config.args import TrainArgs
from ..data.template import PromptTemplate
from ..inference.safety import detect_refusal

logger = logging.getLogger(__name__)

WATCH_TOKENS = 48  # short: the opening is what the refusal detector reads


def prompts(t: TrainArgs) -> dict[str, str]:
    """The watch prompts by kind ("harmful", "benign"); empty when the watch is off."""
    if t.watch_every <= 0:
        return {}
    return {kind: text.strip() for kind, text in (("harmful", t.watch_harmful), ("benign", t.watch_benign))
            if text.strip()}


def answer(loaded: Any, template: PromptTemplate, prompt: str, max_new_tokens: int = WATCH_TOKENS) -> str:
    """One greedy answer of the model as it is now (eval mode, no gradients)."""
    import torch

    tok = loaded.tokenizer
    ids = tok(template.generation_prompt(prompt), return_tensors="pt").to(loaded.device)
    with torch.inference_mode():
        out = loaded.model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                    pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def watch(loaded: Any, template: PromptTemplate, step: int, by_kind: dict[str, str]) -> list[dict[str, Any]]:
    """The rows for this step: {step, kind, prompt, answer, refusal}; the model is back in training mode after."""
    from ..models.loading import for_inference, for_training

    rows = []
    for_inference(loaded)
    try:
        for kind, prompt in by_kind.items():
            text = answer(loaded, template, prompt)
            rows.append({"step": step, "kind": kind, "prompt": prompt, "answer": text,
                         "refusal": detect_refusal(text).refusal})
    finally:
        for_training(loaded)
    return rows


def at_step(loaded: Any, template: PromptTemplate, t: TrainArgs, step: int) -> list[dict[str, Any]]:
    """The watch rows due at this step: none when the watch is off or the step is not a multiple of N."""
    by_kind = prompts(t)
    return watch(loaded, template, step, by_kind) if by_kind and step % t.watch_every == 0 else []
