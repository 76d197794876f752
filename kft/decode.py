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
position, so the warm-up runs before the capture write the same keys and values the replay writes.
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


class StaticDecoder:
    """Prefill and per-token decode of ``rows`` rows; ``adapter_names`` per row (None: the model as it is)."""

    def __init__(self, model: Any, rows: int, max_cache_len: int, device: Any, dtype: Any | None,
                 adapter_names: list[str] | None = None, graphs: bool | None = None) -> None:
        import torch
        from transformers import StaticCache

        self._model = weakref.ref(model)  # not a strong reference: the decoder must not keep a released model alive
        # what decoder_for reuses it by: its arguments and the weights it was built on
        self.key = _key(rows, max_cache_len, device, dtype, adapter_names, graphs), weights_signature(model)
        self.rows, self.max_cache_len = rows, max_cache_len
        self.device, self.dtype = device, dtype
        self.names = adapter_names
        self.graphs = (device.type == "cuda") if graphs is None else graphs
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
        return logits.float()

    def step(self, tokens: Any) -> Any:
        """Logits (float) after feeding one token per row (``tokens``: [rows, 1])."""
        import torch

        if self.length >= self.max_cache_len:
            raise ValueError(f"the cache of {self.max_cache_len} tokens is full")
        self._ids.copy_(tokens)
        self._pos.fill_(self.length)
        if self.graphs and self._graph is None and self.length > 0:
            try:
                self._capture()
            except RuntimeError as exc:  # a kernel that cannot be captured: decode eagerly from now on
                logger.warning("could not capture the decode step as a CUDA graph (%s); decoding eagerly", exc)
                self.graphs, self._graph, self._logits = False, None, None
        if self._graph is not None:
            self._graph.replay()
            logits = self._logits.clone() if self._logits.dtype == torch.float32 else self._logits  # the next
            # replay overwrites the graph's output: the caller gets its own copy (.float() copies other dtypes)
        else:
            with self._autocast():
                logits = self._forward(self._ids, self._pos)
        self.length += 1
        return logits.float()

    def _capture(self) -> None:
        """Capture the decode step as a CUDA graph (the warm-up runs write what the replay will write)."""
        import torch

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), self._autocast():
            for _ in range(WARMUP_RUNS):
                self._forward(self._ids, self._pos)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread-local: a training run may use the GPU from its own thread meanwhile
        with torch.cuda.graph(graph, capture_error_mode="thread_local"), self._autocast():
            self._logits = self._forward(self._ids, self._pos)
        self._graph = graph
        logger.info("decode step captured as a CUDA graph (%d rows, cache %d tokens)", self.rows, self.max_cache_len)

    def memory_bytes(self) -> int:
        """Bytes held by the static cache's keys and values."""
        total = 0
        for layer in getattr(self.cache, "layers", []):
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if t is not None and hasattr(t, "numel"):
                    total += t.numel() * t.element_size()
        return total


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
    _DECODERS[model] = decoder
    return decoder
