"""Side-by-side streaming of the base answer and the LoRA answer from ONE loaded model.

On a PEFT model (the transformers backend) both answers decode as ONE batch: row 0 runs with no adapter (PEFT's
``adapter_names=["__base__", ...]``: the LoRA adds nothing to that row, so it is exactly the adapter-free model),
row 1 with the chosen adapter; on a GPU that batch runs through ``kft.inference.decode`` (a static KV cache and the decode
step captured as a CUDA graph, the adapter masked per row by a 0/1 scale). Unsloth's fast path reads only the first
active adapter, so there the answers are decoded in turns, each with its own KV cache: the base turn inside
``model.disable_adapter()``. One generation at a time (a lock); a newer request or a cancel Event stops it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..config.args import MAX_PROMPT_CHARS, GenerationArgs
from ..config.validation import INVALID_UNICODE, valid_text
from ..data.template import DEFAULT_TEMPLATE, PromptTemplate

logger = logging.getLogger(__name__)
BASE, LORA = "base", "lora"
GPU_TURN_TOKENS = 8


class PromptError(ValueError):
    """The prompt or the decoding settings cannot be used; the message says why."""


def prompt_problems(instruction: str, input: str) -> list[str]:  # noqa: A002
    """Problems with the prompt text itself (no tokenizer needed)."""
    problems = []
    if not instruction or not instruction.strip():
        problems.append("the instruction is empty: type a request")
    if not all(valid_text(text or "") for text in (instruction, input)):
        problems.append(f"the prompt {INVALID_UNICODE}")
    size = len(instruction or "") + len(input or "")
    if size > MAX_PROMPT_CHARS:
        problems.append(f"the prompt is {size:,} characters; the limit is {MAX_PROMPT_CHARS:,}")
    return problems


@dataclass
class PaneStats:
    """One pane's figures, timed from the request (taking turns, LoRA's first token follows base's first turn)."""

    tokens: int = 0
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    finished: bool = False
    stop_reason: str | None = None


@dataclass
class PairUpdate:
    """Both answers so far."""

    base: str = ""
    lora: str = ""
    stats: dict[str, PaneStats] = field(default_factory=lambda: {BASE: PaneStats(), LORA: PaneStats()})
    done: bool = False
    cancelled: bool = False
    loading: bool = False  # the adapter or its base is being loaded; no answer yet


class _Pane:
    def __init__(self, name: str, prompt_ids: Any) -> None:
        self.name = name
        self.ids = prompt_ids
        self.prompt_len = prompt_ids.shape[1]
        self.cache: Any = None
        self.next_input = prompt_ids
        self.stats = PaneStats()
        self.text = ""
        self.t_first: float | None = None


def _processors(gen: GenerationArgs) -> Any:
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    procs = LogitsProcessorList()
    if gen.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(gen.repetition_penalty))
    if gen.do_sample:
        if gen.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(gen.temperature))
        if gen.top_p < 1.0:
            procs.append(TopPLogitsWarper(gen.top_p))
    return procs


class SideBySideGenerator:
    """Streams base and LoRA answers for one prompt from one model (see module docstring)."""

    def __init__(self, loaded: Any, template: PromptTemplate = DEFAULT_TEMPLATE, adapter: str | None = "default",
                 turn_tokens: int | None = None, batched: bool | None = None, static: bool | None = None) -> None:
        self.loaded = loaded
        # one batch for both panes where PEFT masks the adapter per row (None: wherever the backend allows it)
        self.batched = loaded.backend != "unsloth" if batched is None else batched
        # the batch through kft.inference.decode's static cache and captured step: on a GPU (7.6x the growing cache's tokens/s
        # on an H200, docs/BENCHMARKS.md); on the CPU the growing cache (no graphs there, and it reads fewer keys)
        self.static = (self.batched and loaded.device.type == "cuda") if static is None else static
        # tokens per turn: 1 on CPU; a few on a GPU, where each adapter switch costs (Unsloth re-reads LoRA weights)
        self.turn_tokens = turn_tokens or (1 if loaded.device.type == "cpu" else GPU_TURN_TOKENS)
        self.template = template
        self.adapter = adapter
        self._lock = threading.Lock()
        self._cancel_current: threading.Event | None = None
        self._guard = threading.Lock()

    def encode(self, instruction: str, input: str, gen: GenerationArgs) -> Any:  # noqa: A002
        """The prompt's token ids; PromptError when prompt + answer cannot fit (the rest was checked upstream)."""
        text = self.template.generation_prompt(instruction, input or "")
        ids = self.loaded.tokenizer(text, return_tensors="pt")["input_ids"]
        limit = self.loaded.max_seq_length
        if ids.shape[1] + gen.max_new_tokens > limit:
            raise PromptError(f"prompt ({ids.shape[1]} tokens) + max new tokens ({gen.max_new_tokens}) exceeds the "
                              f"model's max_seq_length {limit}: shorten the prompt or lower max new tokens")
        return ids.to(self.loaded.device)

    def _has_adapters(self) -> bool:
        model = self.loaded.model
        return bool(hasattr(model, "disable_adapter") and getattr(model, "peft_config", None))

    def _check_adapter(self) -> None:
        """PromptError when the model carries no adapters or the chosen one is not among them."""
        if not self._has_adapters() or self.adapter is None:
            raise PromptError("no adapter is loaded: train one or load one from a run directory first")
        if self.adapter not in self.loaded.model.peft_config:
            raise PromptError(f"adapter {self.adapter!r} is not loaded (loaded: {sorted(self.loaded.model.peft_config)})")

    def _adapter_ctx(self, pane: str) -> Any:
        model = self.loaded.model
        if pane == BASE:
            return model.disable_adapter() if self._has_adapters() else contextlib.nullcontext()
        self._check_adapter()
        model.set_adapter(self.adapter)
        return contextlib.nullcontext()

    def _autocast(self) -> Any:
        """Mixed precision on a GPU, as Unsloth's and transformers' generate() use; nothing on CPU."""
        import torch

        if self.loaded.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=getattr(torch, self.loaded.dtype))

    def _forward(self, ids: Any, next_input: Any, cache: Any, **extra: Any) -> tuple[Any, Any]:
        """Last-position logits (float) and the cache after feeding ``next_input`` (the end of ``ids``)."""
        import torch

        past = ids.shape[1] - next_input.shape[1]
        # explicit positions: Unsloth's fast decode step needs them (generate() would pass them too)
        positions = torch.arange(past, ids.shape[1], device=ids.device).unsqueeze(0).expand(ids.shape[0], -1)
        out = self.loaded.model(input_ids=next_input, past_key_values=cache, position_ids=positions, use_cache=True,
                                return_dict=True, **extra)
        if isinstance(out, tuple):  # Unsloth's fast decode step can answer with a plain tuple
            return out[0][:, -1, :].float(), out[1]
        return out.logits[:, -1, :].float(), out.past_key_values

    def pair_logits(self, ids: Any) -> Any:
        """Both rows' next-token logits for a prompt, as the batched decode computes them (row 0 base, row 1 LoRA)."""
        import torch
        from transformers import DynamicCache

        from ..models.loading import for_inference

        for_inference(self.loaded)
        batch = ids.repeat(2, 1)
        with torch.inference_mode(), self._autocast():
            return self._forward(batch, batch, DynamicCache(), adapter_names=["__base__", self.adapter])[0]

    @staticmethod
    def _choose(scores: Any, gen: GenerationArgs, rng: Any) -> Any:
        import torch

        if gen.do_sample:
            return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=rng)
        return scores.argmax(dim=-1, keepdim=True)

    def _step(self, pane: _Pane, procs: Any, gen: GenerationArgs, rng: Any) -> int:
        from transformers import DynamicCache

        logits, pane.cache = self._forward(pane.ids, pane.next_input, pane.cache or DynamicCache())
        token = self._choose(procs(pane.ids, logits) if len(procs) else logits, gen, rng)
        pane.ids = self._cat(pane.ids, token)
        pane.next_input = token
        return int(token.item())

    @staticmethod
    def _cat(ids: Any, token: Any) -> Any:
        import torch

        return torch.cat([ids, token], dim=1)

    def stream(self, instruction: str, input: str = "", gen: GenerationArgs | None = None,  # noqa: A002
               cancel: threading.Event | None = None, seed: int = 0, t0: float | None = None) -> Iterator[PairUpdate]:
        """Yield a PairUpdate after every round of one token per unfinished pane; times to first token count from
        ``t0`` (a ``time.perf_counter()`` value: when the user asked), by default from now."""
        import torch

        gen = gen or GenerationArgs()
        ids = self.encode(instruction, input, gen)
        cancel = cancel or threading.Event()
        with self._guard:  # a newer request stops the running one
            if self._cancel_current is not None and self._cancel_current is not cancel:
                self._cancel_current.set()  # (a caller may reuse its Event across prompts: never stop itself)
            self._cancel_current = cancel
        with self._lock:
            if cancel.is_set():
                yield PairUpdate(done=True, cancelled=True)
                return
            rng = torch.Generator(device=ids.device).manual_seed(seed)
            yield from self._decode(ids, gen, cancel, rng, time.perf_counter() if t0 is None else t0)

    def _advance(self, p: _Pane, procs: Any, gen: GenerationArgs, rng: Any, eos_ids: set[int], t0: float) -> None:
        """One token for one pane, with its timing and text. inference_mode and autocast are entered per step, never
        around a ``yield``: both are thread-local and Gradio runs each ``next()`` on any worker thread. Held across
        yields, a step ran with autograd on and the LoRA KV cache kept its graph (memory grew with length squared)."""
        import torch

        with torch.inference_mode(), self._autocast():
            token = self._step(p, procs, gen, rng)
        self._record(p, token, gen, eos_ids, t0)

    def _record(self, p: _Pane, token: int, gen: GenerationArgs, eos_ids: set[int], t0: float) -> None:
        """A pane's figures, stop reason and text after it got ``token`` (already appended to ``p.ids``)."""
        now = time.perf_counter()
        if p.t_first is None:
            p.t_first = now
            p.stats.ttft_s = now - t0
        n = p.ids.shape[1] - p.prompt_len
        p.stats.tokens = n
        if n > 1:
            p.stats.tokens_per_s = (n - 1) / max(now - p.t_first, 1e-9)
        if token in eos_ids:
            p.stats.finished, p.stats.stop_reason = True, "eos"
        elif n >= gen.max_new_tokens:
            p.stats.finished, p.stats.stop_reason = True, "max_new_tokens"
        text = self.loaded.tokenizer.decode(p.ids[0, p.prompt_len:], skip_special_tokens=True)
        p.text = text.rstrip("\ufffd") if not p.stats.finished else text

    def _decode(self, ids: Any, gen: GenerationArgs, cancel: threading.Event, rng: Any,
                t0: float) -> Iterator[PairUpdate]:
        from ..models.loading import for_inference

        for_inference(self.loaded)
        eos_ids = _eos_ids(self.loaded)
        procs = _processors(gen)
        panes = [_Pane(BASE, ids), _Pane(LORA, ids)]
        if self.batched:
            self._check_adapter()
            yield from self._decode_batched(panes, gen, cancel, rng, eos_ids, procs, t0)
            return
        update = PairUpdate()
        while not all(p.stats.finished for p in panes) and not update.cancelled:
            for p in panes:
                if p.stats.finished or update.cancelled:
                    continue
                # one adapter switch per turn (not free on GPU); adapter state is the model's, so it may span yields
                with self._adapter_ctx(p.name):
                    for _ in range(self.turn_tokens):
                        if cancel.is_set():
                            update.cancelled = True
                            break
                        self._advance(p, procs, gen, rng, eos_ids, t0)
                        update = PairUpdate(base=panes[0].text, lora=panes[1].text,
                                            stats={q.name: PaneStats(**vars(q.stats)) for q in panes})
                        yield update
                        if p.stats.finished:
                            break
        update.done = True
        yield update

    def _decode_batched(self, panes: list[_Pane], gen: GenerationArgs, cancel: threading.Event, rng: Any,
                        eos_ids: set[int], procs: Any, t0: float) -> Iterator[PairUpdate]:
        """Both panes as one batch of two rows (see the module docstring); a finished row is still fed (its
        tokens are dropped) so the batch keeps its shape. With ``static`` the rows decode through kft.inference.decode's
        static cache (and, on a GPU, its captured decode step); otherwise through a growing cache."""
        import torch
        from transformers import DynamicCache

        batch = panes[0].ids.repeat(2, 1)
        names = ["__base__", self.adapter]
        cache = DynamicCache()

        def growing(first: bool, tokens: Any) -> Any:
            nonlocal cache
            logits, cache = self._forward(batch, batch if first else tokens, cache, adapter_names=names)
            return logits

        def static(first: bool, tokens: Any) -> Any:
            nonlocal decoder
            if first:
                from .decode import cache_length, decoder_for

                dtype = getattr(torch, self.loaded.dtype) if self.loaded.device.type == "cuda" else None
                size = cache_length(batch.shape[1] + gen.max_new_tokens, self.loaded.max_seq_length)
                decoder = decoder_for(self.loaded.model, 2, size, self.loaded.device, dtype, names)
                return decoder.prefill(batch)
            return decoder.step(tokens)

        decoder, feed = None, static if self.static else growing
        update, tokens, first = PairUpdate(), None, True
        while not all(p.stats.finished for p in panes):
            if cancel.is_set():
                update.cancelled = True
                break
            with torch.inference_mode(), self._autocast():
                try:
                    logits = feed(first, tokens)
                except Exception as exc:  # noqa: BLE001 - a faster path must not cost the answer
                    if feed is growing or not first:
                        raise
                    logger.warning("the static-cache decode cannot run on this model (%s: %s); using the growing "
                                   "cache", type(exc).__name__, exc)
                    self.static, feed = False, growing
                    logits = feed(first, tokens)
                tokens = self._choose(procs(batch, logits) if len(procs) else logits, gen, rng)
            batch, first = self._cat(batch, tokens), False
            for row, p in enumerate(panes):
                if not p.stats.finished:
                    p.ids = batch[row:row + 1]
                    self._record(p, int(tokens[row, 0]), gen, eos_ids, t0)
            update = PairUpdate(base=panes[0].text, lora=panes[1].text,
                                stats={q.name: PaneStats(**vars(q.stats)) for q in panes})
            yield update
        update.done = True
        yield update

    def answer_batch(self, prompts: list[tuple[str, str]], gen: GenerationArgs,
                     cancel: threading.Event | None = None) -> list[tuple[str, str]] | None:
        """(base, LoRA) answers for many prompts (the scorecard, ``kft eval``): all base answers as one left-padded
        batch with the adapter off, then all LoRA answers as one batch; None when ``cancel`` was set."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from ..models.loading import for_inference

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> bool:
                return cancel is not None and cancel.is_set()

        for_inference(self.loaded)
        self._check_adapter()
        tok, model = self.loaded.tokenizer, self.loaded.model
        texts = [self.template.generation_prompt(i, x or "") for i, x in prompts]
        side, tok.padding_side = tok.padding_side, "left"  # new tokens follow every prompt directly
        try:
            enc = tok(texts, return_tensors="pt", padding=True).to(self.loaded.device)
        finally:
            tok.padding_side = side
        sampling = dict(do_sample=True, temperature=gen.temperature, top_p=gen.top_p) if gen.do_sample else {}
        kw = dict(**enc, max_new_tokens=gen.max_new_tokens, repetition_penalty=gen.repetition_penalty,
                  pad_token_id=tok.pad_token_id, eos_token_id=sorted(_eos_ids(self.loaded)), do_sample=False,
                  stopping_criteria=StoppingCriteriaList([Cancelled()]), **sampling)
        answers = []
        for pane in (BASE, LORA):
            with self._adapter_ctx(pane), self._lock, torch.inference_mode(), self._autocast():
                out = model.generate(**kw)
            if cancel is not None and cancel.is_set():
                return None
            answers.append(tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True))
        return list(zip(*answers, strict=True))


def _eos_ids(loaded: Any) -> set[int]:
    ids: set[int] = set()
    tok = loaded.tokenizer
    if tok.eos_token_id is not None:
        ids.add(int(tok.eos_token_id))
    cfg = getattr(loaded.model, "generation_config", None)
    eos = getattr(cfg, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, (list, tuple)):
        ids.update(int(e) for e in eos)
    return ids


def generate_pair(generator: SideBySideGenerator, instruction: str, input: str = "",  # noqa: A002
                  gen: GenerationArgs | None = None, cancel: threading.Event | None = None) -> PairUpdate:
    """Run to the end (or until ``cancel`` is set) and return the final update (for the CLI and the scorecard)."""
    last = PairUpdate()
    for update in generator.stream(instruction, input, gen, cancel=cancel):
        last = update
    return last
