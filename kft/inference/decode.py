"""One batch of rows decoded with a static KV cache, the decode step captured as a CUDA graph on a GPU.

``StaticDecoder`` is what ``SideBySideGenerator`` runs for both panes on the transformers backend: row 0 without
the adapter, row 1 with it. The adapter is masked per row: with the adapter active, each LoRA up-projection's
output is multiplied by a per-row 0/1 scale, so row 0 adds an exact zero to the base layer's output and is
exactly the adapter-free model (PEFT's own ``adapter_names`` batches index rows with Python lists, which copy
index tensors to the GPU at every call: not allowed inside a CUDA graph capture). The cache
is allocated once per decoder at ``max_cache_len`` tokens (the model's max_seq_length) and reset between requests,
so its shapes never change and one captured graph serves every request with the same adapter. The prompt
(prefill) and the first decode step always run eagerly: the first token never waits for a capture. Where CUDA
graphs cannot run (CPU, ``graphs=False``), every step runs the same forward eagerly: the tests check that path on
the tiny model, and the GPU run checks the graph against it.

Capture is idempotent by construction: the step that is captured is the real next step, fed its real token and
position, so the warm-up runs before the capture write the same keys and values the replay writes. That needs every
position the forward reads to be set before each run: transformers' ``StaticLayer`` (5.x) writes at its own device
counter (``cumulative_length``, advanced in place by each update) rather than at ``cache_position``. The decoder binds
the layers' counters to one tensor of its own and sets it, with the input position, before every warm-up, eager step
and replay; without that, the two warm-ups advanced the counters and every replayed step wrote its keys three places
further than its mask and rotary positions said (seen on an H200: logits off by as much as their own size). Layers
that count in Python ints (sliding-window layers) cannot be replayed, so such caches decode eagerly.

The two CUDA-specific pieces of a capture (warm-up runs on a side stream, the capture itself) sit in ``CudaGraphs``;
the tests stand in for them on the CPU to run the same protocol, replay included.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from typing import Any

logger = logging.getLogger(__name__)
_DECODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its decoder (graph kept across requests)

BASE_ROW = "__base__"  # a row without the adapter (PEFT's name for it)
WARMUP_RUNS = 2  # eager runs on a side stream before capture (allocator and lazy initialisation settle)
# the first replay vs the same step run eagerly, relative to the largest logit: the same kernels give 0 or bf16-level
# differences; the position bug this guards against gave differences as large as the logits themselves
CAPTURE_TOLERANCE = 1e-2
MIN_CACHE = 256  # smallest static cache (tokens); sizes are powers of two up to the model's max_seq_length


def cache_length(needed: int, max_seq_length: int) -> int:
    """The static cache's size for ``needed`` tokens (prompt + max new tokens): the next power of two from
    MIN_CACHE, capped at max_seq_length. Attention reads the whole cache at every step, so a 256-token answer does
    not pay for 2,048 positions; a few sizes keep the captured graphs (one per decoder) few."""
    size = MIN_CACHE
    while size < needed:
        size *= 2
    return min(size, max_seq_length)


class StaticDecoder:
    """Prefill and per-token decode of ``rows`` rows; ``adapter_names`` per row (None: the model as it is)."""

    def __init__(self, model: Any, rows: int, max_cache_len: int, device: Any, dtype: Any | None,
                 adapter_names: list[str] | None = None, graphs: bool | None = None,
                 capturer: Any | None = None) -> None:
        import torch
        from transformers import StaticCache

        self._model = weakref.ref(model)  # not a strong reference: the decoder must not keep a released model alive
        self.key: tuple | None = None  # set by decoder_for: its arguments and the weights it was built on
        self.rows, self.max_cache_len = rows, max_cache_len
        self.device, self.dtype = device, dtype
        self.names = adapter_names
        self.graphs = (device.type == "cuda") if graphs is None else graphs
        self.capturer = capturer or CudaGraphs()
        adapters = {n for n in adapter_names or () if n != BASE_ROW}
        # one adapter for the non-base rows: masked per row (capturable); several: PEFT's mixed batch (eager only)
        self.masked = adapter_names is not None and len(adapters) == 1
        self._adapter = next(iter(adapters)) if self.masked else None
        self._scale = (torch.tensor([0.0 if n == BASE_ROW else 1.0 for n in adapter_names], device=device)
                       .view(-1, 1, 1) if self.masked else None)
        if not self.masked:
            self.graphs = False
        self.cache = StaticCache(config=model.config, max_cache_len=max_cache_len)
        self._ids = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self._pos = torch.zeros((1,), dtype=torch.long, device=device)
        self._counters: Any | None = None  # the cache layers' write positions, bound to one tensor after the prefill
        self._graph: Any | None = None
        self._logits: Any | None = None
        self.length = 0  # tokens in the cache

    @property
    def model(self) -> Any:
        model = self._model()
        if model is None:
            raise RuntimeError("the model of this decoder was released")
        return model

    def _autocast(self) -> Any:
        import torch

        if self.device.type != "cuda" or self.dtype is None:
            return contextlib.nullcontext()
        # no weight-cast cache: a captured graph must not hold casts made outside it
        return torch.autocast(device_type="cuda", dtype=self.dtype, cache_enabled=False)

    def _forward(self, ids: Any, positions: Any) -> Any:
        model = self.model
        extra = {"adapter_names": self.names} if self.names and not self.masked else {}
        with self._rows_masked(model):
            out = model(input_ids=ids, past_key_values=self.cache, cache_position=positions,
                        position_ids=positions.unsqueeze(0).expand(ids.shape[0], -1), use_cache=True,
                        return_dict=True, **extra)
        return out.logits[:, -1, :]

    @contextlib.contextmanager
    def _rows_masked(self, model: Any) -> Any:
        """With the adapter active, scale each LoRA up-projection's output by the row's 0/1 (hooks live only for
        this forward; a captured graph keeps the multiplications)."""
        if not self.masked:
            yield
            return
        import torch

        scale, calls = self._scale, [0]

        def hook(module: Any, args: Any, out: Any) -> Any:
            calls[0] += 1
            return out * scale.to(out.dtype)

        name = self._adapter
        model.set_adapter(name)
        handles = [m.lora_B[name].register_forward_hook(hook) for m in model.modules()
                   if isinstance(getattr(m, "lora_B", None), torch.nn.ModuleDict) and name in m.lora_B]
        if not handles:
            raise RuntimeError(f"adapter {self._adapter!r} has no LoRA layers in this model")
        try:
            yield
        finally:
            for h in handles:
                h.remove()
        if calls[0] == 0:  # a fused LoRA path (Unsloth's) never calls lora_B: the mask would not apply
            raise RuntimeError("the adapter's LoRA layers were not called, so the per-row mask cannot apply")

    def prefill(self, ids: Any) -> Any:
        """Logits (float) after the prompt ``ids`` ([rows, n]); the cache holds the prompt afterwards."""
        import torch

        if ids.shape[0] != self.rows:
            raise ValueError(f"expected {self.rows} rows, got {ids.shape[0]}")
        if ids.shape[1] >= self.max_cache_len:
            raise ValueError(f"prompt of {ids.shape[1]} tokens does not fit a cache of {self.max_cache_len}")
        self.cache.reset()
        with self._autocast():
            logits = self._forward(ids, torch.arange(ids.shape[1], device=self.device))
        self.length = ids.shape[1]
        if self._counters is None:
            self._bind_counters()
        return logits.float()

    def _bind_counters(self) -> None:
        """After the first prefill (the layers exist then): point every layer's write position at one tensor of this
        decoder, so one fill sets them all before a run. A layer that counts in a Python int cannot be replayed."""
        import torch

        layers = list(getattr(self.cache, "layers", []))
        counters = [getattr(layer, "cumulative_length", None) for layer in layers]
        if any(hasattr(layer, "cumulative_length_int") or isinstance(c, int) for layer, c in zip(layers, counters, strict=True)):
            if self.graphs:
                logger.info("this cache counts positions in Python ints: decoding eagerly, without a CUDA graph")
            self.graphs = False
        if not layers or not all(isinstance(c, torch.Tensor) for c in counters):
            return
        self._counters = torch.zeros(len(layers), dtype=counters[0].dtype, device=counters[0].device)
        for i, layer in enumerate(layers):
            layer.cumulative_length = self._counters[i]  # a view: the layer's in-place add_ lands here
        self._counters.fill_(self.length)

    def _place(self) -> None:
        """Set every position the next forward reads to ``self.length`` (input position and the layers' counters)."""
        self._pos.fill_(self.length)
        if self._counters is not None:
            self._counters.fill_(self.length)

    def step(self, tokens: Any) -> Any:
        """Logits (float) after feeding one token per row (``tokens``: [rows, 1])."""
        if self.length >= self.max_cache_len:
            raise ValueError(f"the cache of {self.max_cache_len} tokens is full")
        self._ids.copy_(tokens)
        logits = None
        if self.graphs and self._graph is None and self.length > 0:
            logits = self._capture()  # this step's logits, checked against an eager run (None: decode eagerly)
        if logits is None:
            self._place()
            if self._graph is not None:
                self._graph.replay()
                logits = self._replayed()
            else:
                logits = self._eager()
        self.length += 1
        return logits.float()

    def _replayed(self) -> Any:
        """The replay's logits as float, in a tensor of the caller's own (the next replay overwrites the graph's)."""
        import torch

        return self._logits.to(torch.float32, copy=True)

    def _eager(self) -> Any:
        with self._autocast():
            return self._forward(self._ids, self._pos)

    def _capture(self) -> Any | None:
        """Capture the decode step, replay it once and compare with the same step run eagerly: the replay's logits
        when they agree (within CAPTURE_TOLERANCE of the logits' size), else None and no graph from now on (the
        decoder then runs every step eagerly; a capture bug costs speed, never a wrong answer)."""
        try:
            self.capturer.warm_up(self._eager, before=self._place)  # each run from the same positions
            self._place()
            want = self._eager().float()
            self._place()  # outside the capture: a fill inside it would replay this step's position forever
            self._graph, self._logits = self.capturer.capture(self._eager)
            self._place()
            self._graph.replay()
            got = self._replayed()
            off = (got - want).abs().max().item()
            limit = CAPTURE_TOLERANCE * max(want.abs().max().item(), 1.0)
            if not off <= limit:  # NaN counts as disagreeing
                raise RuntimeError(f"the replayed step's logits differ from the eager step's by {off:.3g} "
                                   f"(allowed {limit:.3g})")
        except RuntimeError as exc:  # a kernel that cannot be captured, or a replay that disagrees
            logger.warning("decode step not captured as a CUDA graph (%s); decoding eagerly", exc)
            self.graphs, self._graph, self._logits = False, None, None
            return None
        logger.info("decode step captured as a CUDA graph (%d rows, cache %d tokens; replay within %.3g of eager)",
                    self.rows, self.max_cache_len, off)
        return got

    def memory_bytes(self) -> int:
        """Bytes held by the static cache's keys and values."""
        total = 0
        for layer in getattr(self.cache, "layers", []):
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if t is not None and hasattr(t, "numel"):
                    total += t.numel() * t.element_size()
        return total


class CudaGraphs:
    """The CUDA-specific pieces of a capture: warm-up runs on a side stream, then the capture on its own stream."""

    def warm_up(self, run: Any, before: Any) -> None:
        import torch

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                before()
                run()
        torch.cuda.current_stream().wait_stream(side)

    def capture(self, run: Any) -> tuple[Any, Any]:
        """(graph, its output); nothing runs until the graph is replayed."""
        import torch

        graph = torch.cuda.CUDAGraph()
        # thread-local: a training run may use the GPU from its own thread meanwhile
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = run()
        return graph, out


def _key(rows: int, max_cache_len: int, device: Any, dtype: Any | None, adapter_names: list[str] | None,
         graphs: bool | None) -> tuple:
    return rows, max_cache_len, str(device), dtype, tuple(adapter_names or ()), graphs


def weights_signature(model: Any) -> int:
    """What a captured step bakes in besides its inputs: every parameter's address, shape and dtype, and each LoRA
    layer's scaling (a Python float in the graph). An adapter deleted and loaded again under the same name (the
    comparison's slot does that) changes it, so its decoder is rebuilt instead of replaying freed memory."""
    parts: list[Any] = [(p.data_ptr(), tuple(p.shape), p.dtype) for p in model.parameters()]
    parts += [tuple(sorted(m.scaling.items())) for m in model.modules() if isinstance(getattr(m, "scaling", None), dict)]
    return hash(tuple(parts))


def decoder_for(model: Any, rows: int, max_cache_len: int, device: Any, dtype: Any | None,
                adapter_names: list[str] | None = None, graphs: bool | None = None) -> StaticDecoder:
    """The model's decoder for these shapes, adapters and weights: reused across requests (its cache and captured
    graph), replaced when any of them changes (the old one's cache and graph are then freed)."""
    current = _DECODERS.get(model)
    key = _key(rows, max_cache_len, device, dtype, adapter_names, graphs), weights_signature(model)
    if current is not None and current.key == key:
        return current
    _DECODERS.pop(model, None)
    decoder = StaticDecoder(model, rows, max_cache_len, device, dtype, adapter_names, graphs)
    decoder.key = key
    _DECODERS[model] = decoder
    return decoder
