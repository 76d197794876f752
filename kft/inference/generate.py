"""Answers from ONE loaded model for rows that each run with their own adapter or none: the side-by-side panes
(base and LoRA; any number of rows), the scorecard's batches and ``kft eval``.

Where the model is one kft's decode engine reads (kft.engine: the Llama family and Qwen2, on Unsloth or
transformers + PEFT alike), every row decodes in one batch through it: the base row adds an exact zero for the
adapter, the step is a captured CUDA graph on a GPU, and prompts of different lengths share a batch (left padding).
Any other architecture takes the generic path, logged as such: each row in turn, one token per round, through the
model's own forward with a growing cache, the base row inside ``model.disable_adapter()``. One generation at a time
(a lock); a newer request or a cancel Event stops it.
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
from ..engine.engine import cache_bytes, cache_length, cpu_threads, engine_for
from ..engine.sampling import RowSampling, choose
from ..engine.weights import read_weights, unsupported

logger = logging.getLogger(__name__)
BASE, LORA = "base", "lora"
CACHE_BUDGET = 0.25  # of the free GPU memory: the most the scorecard's static cache may take (rows are split above it)


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
    origin: Any = None  # what produced the answers (set by the caller, e.g. kft.services.comparison.Origin)


class _Pane:
    """One row's answer so far: ``ids`` the prompt and the tokens chosen (a view of the decode's history)."""

    def __init__(self, name: str, prompt_ids: Any) -> None:
        self.name = name
        self.ids = prompt_ids
        self.prompt_len = prompt_ids.shape[1]
        self.stats = PaneStats()
        self.text = ""
        self.t_first: float | None = None


class SideBySideGenerator:
    """Streams the answers of several rows (by default base and the LoRA ``adapter``) for one prompt from one model,
    and answers many prompts in batches (see the module docstring)."""

    def __init__(self, loaded: Any, template: PromptTemplate = DEFAULT_TEMPLATE, adapter: str | None = "default",
                 engine: bool | None = None, graphs: bool | None = None) -> None:
        self.loaded = loaded
        why = unsupported(loaded.model)
        self.engine = why is None if engine is None else engine
        if not self.engine:
            logger.info("generic decode path (each row in turn through the model's own forward): %s",
                        why or "the engine was turned off")
        self.graphs = graphs  # None: captured on a GPU, eager on the CPU
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

    def _check_adapters(self, adapters: list[str | None]) -> None:
        """PromptError when a row asks for an adapter the model does not carry."""
        named = [a for a in adapters if a is not None]
        if not named:
            return
        if not self._has_adapters():
            raise PromptError("no adapter is loaded: train one or load one from a run directory first")
        missing = [a for a in named if a not in self.loaded.model.peft_config]
        if missing:
            raise PromptError(f"adapter {missing[0]!r} is not loaded (loaded: {sorted(self.loaded.model.peft_config)})")

    def _pair(self) -> list[str | None]:
        if self.adapter is None:
            raise PromptError("no adapter is loaded: train one or load one from a run directory first")
        return [None, self.adapter]

    def _adapter_ctx(self, adapter: str | None) -> Any:
        model = self.loaded.model
        if adapter is None:
            return model.disable_adapter() if self._has_adapters() else contextlib.nullcontext()
        model.set_adapter(adapter)
        return contextlib.nullcontext()

    def _autocast(self) -> Any:
        """Mixed precision on a GPU for the generic path, as transformers' generate() uses; nothing on CPU."""
        import torch

        if self.loaded.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=getattr(torch, self.loaded.dtype))

    def _dtype(self) -> Any:
        import torch

        return getattr(torch, self.loaded.dtype) if self.loaded.device.type == "cuda" else torch.float32

    def _engine(self, rows: int, needed: int) -> Any:
        return engine_for(self.loaded.model, rows, cache_length(needed, self.loaded.max_seq_length), self._dtype(),
                          self.graphs)

    def warm_up(self) -> None:
        """On a GPU, right after a model is loaded: one short prefill and two steps through the engine, so the
        first request does not pay for CUDA's lazy start-up (cuBLAS, bitsandbytes' and attention's kernels loaded on
        first use: 0.5 to 2.4 s seen on the H200 in the first request after a load)."""
        import torch

        if not self.engine or self.loaded.device.type != "cuda":
            return
        t0 = time.perf_counter()
        try:
            ids = self.loaded.tokenizer(self.template.generation_prompt("warm up", ""), return_tensors="pt")
            batch = ids["input_ids"].to(self.loaded.device).repeat(2, 1)
            engine = self._engine(2, batch.shape[1] + 2)
            logits = engine.start(batch, torch.zeros(2, dtype=torch.long), [None, None])
            for _ in range(2):
                logits = engine.step(logits.argmax(-1))
            torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001 - a warm-up must never cost the load
            logger.warning("the decode warm-up failed (%s: %s); the first request will start the GPU's kernels",
                           type(exc).__name__, exc)
            return
        logger.info("decode warmed up in %.2f s", time.perf_counter() - t0)

    def pair_logits(self, ids: Any) -> Any:
        """Both rows' next-token logits for a prompt, as the decode computes them (row 0 base, row 1 LoRA)."""
        import torch

        rows = self._pair()
        self._check_adapters(rows)
        batch = ids.repeat(2, 1)
        if self.engine:
            return self._engine(2, batch.shape[1] + 1).start(batch, torch.zeros(2, dtype=torch.long), rows).clone()
        return torch.cat([self._generic_logits(batch[r:r + 1], a) for r, a in enumerate(rows)])

    def _generic_logits(self, ids: Any, adapter: str | None) -> Any:
        import torch

        with torch.inference_mode(), self._autocast(), self._adapter_ctx(adapter):
            return self.loaded.model(input_ids=ids).logits[:, -1, :].float()

    def stream(self, instruction: str, input: str = "", gen: GenerationArgs | None = None,  # noqa: A002
               cancel: threading.Event | None = None, seed: int = 0, t0: float | None = None) -> Iterator[PairUpdate]:
        """Base and LoRA for one prompt: a PairUpdate after every round of one token per unfinished pane; times to
        first token count from ``t0`` (a ``time.perf_counter()`` value: when the user asked), by default from now."""
        for _names, panes, done, cancelled in self.stream_rows(instruction, input, self._pair(), gen, cancel, seed, t0):
            yield PairUpdate(base=panes[0].text, lora=panes[1].text,
                             stats={BASE: PaneStats(**vars(panes[0].stats)), LORA: PaneStats(**vars(panes[1].stats))},
                             done=done, cancelled=cancelled)

    def stream_rows(self, instruction: str, input: str, adapters: list[str | None],  # noqa: A002
                    gen: GenerationArgs | list[GenerationArgs] | None = None, cancel: threading.Event | None = None,
                    seed: int = 0, t0: float | None = None) -> Iterator[tuple[list[str | None], list[_Pane], bool, bool]]:
        """One prompt answered by every row of ``adapters`` (None: the base model), each with its own decoding
        settings when ``gen`` is a list: (adapters, panes, done, cancelled) after every round."""
        import torch

        gens = gen if isinstance(gen, list) else [gen or GenerationArgs()] * len(adapters)
        longest = max(gens, key=lambda g: g.max_new_tokens)
        ids = self.encode(instruction, input, longest)
        self._check_adapters(adapters)
        cancel = cancel or threading.Event()
        with self._guard:  # a newer request stops the running one
            if self._cancel_current is not None and self._cancel_current is not cancel:
                self._cancel_current.set()  # (a caller may reuse its Event across prompts: never stop itself)
            self._cancel_current = cancel
        with self._lock:
            if cancel.is_set():
                yield adapters, [_Pane(str(a), ids) for a in adapters], True, True
                return
            rng = torch.Generator(device=ids.device).manual_seed(seed)
            t0 = time.perf_counter() if t0 is None else t0
            decode = self._decode_engine if self.engine else self._decode_generic
            for panes, done, cancelled in decode(ids, adapters, gens, cancel, rng, t0):
                yield adapters, panes, done, cancelled

    def _record(self, p: _Pane, token: int, gen: GenerationArgs, eos_ids: set[int], t0: float) -> None:
        """A pane's figures, stop reason and text after it got ``token`` (already in ``p.ids``)."""
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

    def _decode_engine(self, ids: Any, adapters: list[str | None], gens: list[GenerationArgs],
                       cancel: threading.Event, rng: Any, t0: float) -> Iterator[tuple[list[_Pane], bool, bool]]:
        """Every row in one batch through the engine; a finished row is still fed (its tokens are dropped) so the
        batch keeps its shape. Each step enters inference mode itself, never around a ``yield``: it is thread-local
        and Gradio runs each ``next()`` on any worker thread."""
        import torch

        rows, t = len(adapters), ids.shape[1]
        eos_ids = _eos_ids(self.loaded)
        engine = self._engine(rows, t + max(g.max_new_tokens for g in gens))
        with torch.inference_mode():
            history = torch.zeros((rows, engine.max_len), dtype=torch.long, device=ids.device)
            history[:, :t] = ids
            sampling = RowSampling.of(gens, ids.device, _suppressed(self.loaded))
            logits = engine.start(history[:, :t], torch.zeros(rows, dtype=torch.long), adapters)
        panes = [_Pane(str(a), history[r:r + 1, :t]) for r, a in enumerate(adapters)]
        n, host, longest = t, _HostCopy(rows, ids.device), max(g.max_new_tokens for g in gens)
        with torch.inference_mode():
            tokens = choose(logits, history[:, :n], sampling, rng)
        while True:
            if cancel.is_set():
                yield panes, True, True
                return
            more = n + 1 - t < longest
            # a replayed step goes to the GPU before this round's text is made, so the host work of a round (the
            # tokens' copy, decoding text, the yield) overlaps it (past the last token it is dropped); an eager step
            # is itself host work (thousands of launches), so it follows the round, as the first ones do
            ahead = more and engine.graph.replay is not None
            with torch.inference_mode():
                history[:, n] = tokens
                n += 1
                host.start(tokens)
                if ahead:
                    logits = engine.step(tokens)
                chosen = host.values()
            for row, p in enumerate(panes):
                if not p.stats.finished:
                    p.ids = history[row:row + 1, :n]
                    self._record(p, chosen[row], gens[row], eos_ids, t0)
            finished = all(p.stats.finished for p in panes)
            yield panes, finished, False
            if finished:
                return
            with torch.inference_mode():
                if not ahead:
                    logits = engine.step(tokens)
                tokens = choose(logits, history[:, :n], sampling, rng)

    def _decode_generic(self, ids: Any, adapters: list[str | None], gens: list[GenerationArgs],
                        cancel: threading.Event, rng: Any, t0: float) -> Iterator[tuple[list[_Pane], bool, bool]]:
        """Each row in turn, one token per round, through the model's own forward and a growing cache of its own."""
        import torch
        from transformers import DynamicCache

        from ..models.loading import for_inference

        for_inference(self.loaded)
        eos_ids = _eos_ids(self.loaded)
        panes = [_Pane(str(a), ids) for a in adapters]
        caches = [DynamicCache() for _ in adapters]
        fed = [ids for _ in adapters]
        sampling = [RowSampling.of([g], ids.device, _suppressed(self.loaded)) for g in gens]
        while not all(p.stats.finished for p in panes):
            for row, (p, adapter) in enumerate(zip(panes, adapters, strict=True)):
                if p.stats.finished:
                    continue
                if cancel.is_set():
                    yield panes, True, True
                    return
                with torch.inference_mode(), self._autocast(), self._adapter_ctx(adapter):
                    past = p.ids.shape[1] - fed[row].shape[1]
                    positions = torch.arange(past, p.ids.shape[1], device=ids.device)[None]
                    out = self.loaded.model(input_ids=fed[row], past_key_values=caches[row], position_ids=positions,
                                            use_cache=True, return_dict=True)
                    logits = (out[0] if isinstance(out, tuple) else out.logits)[:, -1, :].float()
                    token = choose(logits, p.ids, sampling[row], rng)[:, None]
                    p.ids, fed[row] = torch.cat([p.ids, token], dim=1), token
                self._record(p, int(token[0, 0]), gens[row], eos_ids, t0)
                yield panes, False, False
        yield panes, True, False

    def answer_batch(self, prompts: list[tuple[str, str]], gen: GenerationArgs,
                     cancel: threading.Event | None = None,
                     adapters: list[str | None] | None = None) -> list[tuple[str, ...]] | None:
        """(base, LoRA) answers for many prompts (the scorecard, ``kft eval``); None when ``cancel`` was set. With
        ``adapters`` (None: the base), one answer per row instead: (base, run A, run B) for the three-way scorecard.
        Through the engine: every prompt x row as rows of left-padded batches, as many rows per batch as the
        static cache's budget allows. Generic path: each pane's prompts as one batch through ``generate()``."""
        rows = adapters if adapters is not None else self._pair()
        self._check_adapters(rows)
        texts = [self.template.generation_prompt(i, x or "") for i, x in prompts]
        with self._lock:
            answers = (self._answers_engine if self.engine else self._answers_generic)(texts, rows, gen, cancel)
        if answers is None:
            return None
        return [tuple(a[k] for a in answers) for k in range(len(texts))]  # type: ignore[misc]

    def _left_padded(self, texts: list[str]) -> Any:
        tok = self.loaded.tokenizer
        side, tok.padding_side = tok.padding_side, "left"  # new tokens follow every prompt directly
        try:
            return tok(texts, return_tensors="pt", padding=True).to(self.loaded.device)
        finally:
            tok.padding_side = side

    def _row_budget(self, per_row: int) -> int:
        import torch

        if self.loaded.device.type != "cuda":
            return 256
        free, _ = torch.cuda.mem_get_info(self.loaded.device)
        return max(2, int(free * CACHE_BUDGET) // max(per_row, 1))

    def _answers_engine(self, texts: list[str], adapters: list[str | None], gen: GenerationArgs,
                        cancel: threading.Event | None) -> list[list[str]] | None:

        tok, eos_ids = self.loaded.tokenizer, _eos_ids(self.loaded)
        jobs = [(a, i) for a in adapters for i in range(len(texts))]  # (adapter, prompt index)
        lengths = [len(ids) for ids in tok(texts)["input_ids"]]
        size = cache_length(max(lengths) + gen.max_new_tokens, self.loaded.max_seq_length)
        per_row = cache_bytes(read_weights(self.loaded.model), 1, size, self._dtype())
        step = min(len(jobs), self._row_budget(per_row))
        out: dict[tuple[str | None, int], str] = {}
        for start in range(0, len(jobs), step):
            chunk = jobs[start:start + step]
            enc = self._left_padded([texts[i] for _, i in chunk])
            ids = enc["input_ids"]
            pad = (enc["attention_mask"] == 0).sum(dim=1)
            answers = self._run_rows(ids, pad, [a for a, _ in chunk], gen, eos_ids, cancel)
            if answers is None:
                return None
            out.update({job: text for job, text in zip(chunk, answers, strict=True)})
        return [[out[(a, i)] for i in range(len(texts))] for a in adapters]

    def _run_rows(self, ids: Any, pad: Any, adapters: list[str | None], gen: GenerationArgs, eos_ids: set[int],
                  cancel: threading.Event | None) -> list[str] | None:
        """Greedy or sampled answers of left-padded rows through the engine, to EOS or max_new_tokens."""
        import torch

        rows, t = ids.shape
        engine = self._engine(rows, t + gen.max_new_tokens)
        eos = torch.tensor(sorted(eos_ids), device=ids.device)
        with torch.inference_mode(), cpu_threads(engine.w):
            history = torch.zeros((rows, t + gen.max_new_tokens), dtype=torch.long, device=ids.device)
            history[:, :t] = ids
            sampling = RowSampling.of([gen] * rows, ids.device, _suppressed(self.loaded))
            rng = torch.Generator(device=ids.device).manual_seed(0)
            logits = engine.start(ids, pad, adapters)
            done = torch.zeros(rows, dtype=torch.bool, device=ids.device)
            ends = torch.full((rows,), t + gen.max_new_tokens, dtype=torch.long, device=ids.device)
            for n in range(t, t + gen.max_new_tokens):
                if cancel is not None and cancel.is_set():
                    return None
                tokens = choose(logits, history[:, :n], sampling, rng)
                history[:, n] = tokens
                hit = torch.isin(tokens, eos) & ~done
                ends = torch.where(hit, n + 1, ends)
                done |= hit
                if n + 1 < t + gen.max_new_tokens:
                    if (n - t) % 16 == 15 and bool(done.all()):  # one host read every 16 steps
                        break
                    logits = engine.step(tokens)
            spans = ends.tolist()
        tok = self.loaded.tokenizer
        return [tok.decode(history[r, t:spans[r]], skip_special_tokens=True) for r in range(rows)]

    def _answers_generic(self, texts: list[str], adapters: list[str | None], gen: GenerationArgs,
                         cancel: threading.Event | None) -> list[list[str]] | None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from ..models.loading import for_inference

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> bool:
                return cancel is not None and cancel.is_set()

        for_inference(self.loaded)
        tok, model = self.loaded.tokenizer, self.loaded.model
        enc = self._left_padded(texts)
        sampling = dict(temperature=gen.temperature, top_p=gen.top_p) if gen.do_sample else {}
        kw = dict(**enc, max_new_tokens=gen.max_new_tokens, repetition_penalty=gen.repetition_penalty,
                  pad_token_id=tok.pad_token_id, eos_token_id=sorted(_eos_ids(self.loaded)), do_sample=gen.do_sample,
                  stopping_criteria=StoppingCriteriaList([Cancelled()]), **sampling)
        answers = []
        for adapter in adapters:
            with self._adapter_ctx(adapter), torch.inference_mode(), self._autocast():
                out = model.generate(**kw)
            if cancel is not None and cancel.is_set():
                return None
            answers.append(tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True))
        return answers


class _HostCopy:
    """The chosen tokens copied to the host without waiting for work queued after them (pinned memory on a GPU)."""

    def __init__(self, rows: int, device: Any) -> None:
        import torch

        self.cuda = device.type == "cuda"
        self.buf = torch.empty(rows, dtype=torch.long, pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None
        self.tokens: Any = None

    def start(self, tokens: Any) -> None:
        if self.cuda:
            self.buf.copy_(tokens, non_blocking=True)
            self.event.record()
        else:
            self.tokens = tokens

    def values(self) -> list[int]:
        if self.cuda:
            self.event.synchronize()
            return self.buf.tolist()
        return self.tokens.tolist()


def _suppressed(loaded: Any) -> list[int] | None:
    """Token ids never to choose: the model's ``generation_config.suppress_tokens`` (a pad kft added, for one)."""
    ids = getattr(getattr(loaded.model, "generation_config", None), "suppress_tokens", None)
    return [int(i) for i in ids] if ids else None


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
