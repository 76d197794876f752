"""kft's decode engine: a gpt-fast-style forward over a loaded model's own weights (kft.engine.weights), for N rows
that each run with their own adapter or none, through a static KV cache of the engine's own.

- **Rows and adapters.** Every adapter's LoRA is applied to every row and multiplied by a per-row mask that holds the
  adapter's scaling where the row uses it and 0 elsewhere, so a row without an adapter adds an exact zero (it is the
  adapter-free model). Projections that share an input share their LoRA matmuls: the q/k/v A matrices of all
  adapters are one matrix, their B matrices one block-diagonal matrix; the same for gate/up; o and down on their own.
- **Dtypes.** Activations and the cache are in the compute dtype (bf16, fp16 on a T4, fp32 on the CPU) end to end;
  norms accumulate in fp32 and write back in the compute dtype, as the model does. Large weights (4-bit projections,
  embedding, lm_head, unquantized projections) are read where they lie; only small ones (norm weights, biases, the
  grouped LoRA matrices) are held as compute-dtype copies, rebuilt when an adapter's weights change.
- **Prefill and decode through the same forward.** Rows are left-padded: each row's first real slot ``pad[row]``
  masks the slots before it and sets its positions (slot - pad), so prompts of different lengths share a batch.
- **The decode step as a CUDA graph** (kft.engine.graphs): its inputs (tokens, the slot, the row masks) are buffers
  that the step reads, so one capture serves every later step and request of this engine. A capture that fails or
  disagrees with the eager step is dropped: the step then runs eagerly (speed lost, never an answer).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .graphs import StepGraph
from .weights import ModelWeights, Projection, read_weights, version

logger = logging.getLogger(__name__)
GROUPS = (("q_proj", "k_proj", "v_proj"), ("o_proj",), ("gate_proj", "up_proj"), ("down_proj",))


@dataclass
class _Lora:
    """One group's LoRA for all adapters: x @ A.T, times the row mask, @ B.T gives the group's outputs side by side."""

    a: Any  # (R, in)
    b: Any  # (sum of outputs, R), block-diagonal
    cols: dict[str, list[tuple[int, int, float]]]  # adapter -> its column ranges in R and scaling
    mask: Any  # (rows, R): the scaling where the row uses the adapter, 0 elsewhere


class DecodeEngine:
    """Prefill and one-token decode of ``rows`` rows with a static cache of ``max_len`` tokens."""

    def __init__(self, model: Any, rows: int, max_len: int, dtype: Any | None = None, graphs: bool | None = None,
                 capturer: Any | None = None, weights: ModelWeights | None = None) -> None:
        import torch

        self.w = weights or read_weights(model)
        w = self.w
        self.device = w.embed.device
        self.dtype = dtype or (w.embed.dtype if self.device.type == "cuda" else torch.float32)
        self.rows, self.max_len = rows, max_len
        self.version = version(w)
        self.adapters = w.adapters
        dt, dev = self.dtype, self.device
        self._small: dict[int, Any] = {}
        self._norms = [(self._copy(layer.input_norm), self._copy(layer.post_norm)) for layer in w.layers]
        self._final_norm = self._copy(w.norm)
        self._bias = {id(p): (None if p.bias is None else p.bias.detach().to(dt if p.quantized else p.weight.dtype))
                      for layer in w.layers for p in layer.proj.values()}
        self._lora_packs = [[self._pack(layer.proj, names) for names in GROUPS] for layer in w.layers]
        if any(p.quantized for layer in w.layers for p in layer.proj.values()):
            import bitsandbytes as bnb

            self._bnb = bnb
        shape = (rows, w.kv_heads, max_len, w.head_dim)
        self.k = [torch.zeros(shape, dtype=dt, device=dev) for _ in w.layers]
        self.v = [torch.zeros(shape, dtype=dt, device=dev) for _ in w.layers]
        pos = torch.arange(max_len, dtype=torch.float32, device=dev)
        freqs = torch.outer(pos, w.inv_freq.to(dev))
        emb = torch.cat((freqs, freqs), dim=-1)
        self._cos = emb.cos() * w.rope_scaling  # (max_len, head_dim) fp32
        sin = emb.sin() * w.rope_scaling
        half = w.head_dim // 2
        self._sin = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)  # rotate_half's sign folded in
        self._slots = torch.arange(max_len, device=dev)
        # the decode step's inputs: buffers the captured graph reads
        self._tokens = torch.zeros((rows, 1), dtype=torch.long, device=dev)
        self._slot = torch.zeros((1,), dtype=torch.long, device=dev)
        self._pad = torch.zeros((rows,), dtype=torch.long, device=dev)
        self._logits = torch.zeros((rows, w.vocab), dtype=torch.float32, device=dev)
        self.row_adapters: list[str | None] = [None] * rows
        self._any_lora = False
        self._span: int | None = None  # eager steps: the cache slots attention reads (None: all, as a capture needs)
        self.length = 0
        self.graph = StepGraph(self._decode_into, dev, enabled=graphs, capturer=capturer, output=lambda: self._logits)

    # ---- building -------------------------------------------------------------------------------------------------
    def _copy(self, t: Any) -> Any:
        """A small weight in the compute dtype: the tensor itself when it already is."""
        t = t.detach()
        return t if t.dtype == self.dtype else t.to(self.dtype)

    def _pack(self, proj: dict[str, Projection], names: tuple[str, ...]) -> _Lora | None:
        import torch

        a_parts, cols, r0 = [], {}, 0
        outs = [proj[n].out_features for n in names]
        blocks = []  # (output offset, column offset, B)
        for adapter in self.w.adapters:
            for i, n in enumerate(names):
                if adapter not in proj[n].lora:
                    continue
                a, b, scale = proj[n].lora[adapter]
                a_parts.append(a.detach().to(self.dtype))
                blocks.append((sum(outs[:i]), r0, b.detach().to(self.dtype)))
                cols.setdefault(adapter, []).append((r0, r0 + a.shape[0], scale))
                r0 += a.shape[0]
        if not a_parts:
            return None
        big_b = torch.zeros((sum(outs), r0), dtype=self.dtype, device=self.device)
        for out0, c0, b in blocks:
            big_b[out0:out0 + b.shape[0], c0:c0 + b.shape[1]] = b
        mask = torch.zeros((self.rows, r0), dtype=self.dtype, device=self.device)
        return _Lora(torch.cat(a_parts), big_b, cols, mask)

    def set_rows(self, row_adapters: list[str | None]) -> None:
        """Which adapter each row runs with (None: the base model). Writes the masks the step reads."""
        if len(row_adapters) != self.rows:
            raise ValueError(f"{len(row_adapters)} row adapters for an engine of {self.rows} rows")
        unknown = sorted({a for a in row_adapters if a is not None} - set(self.adapters))
        if unknown:
            raise ValueError(f"adapter(s) {unknown} are not loaded (loaded: {list(self.adapters)})")
        self.row_adapters = list(row_adapters)
        self._any_lora = any(a is not None for a in row_adapters)
        for layer in self._lora_packs:
            for pack in layer:
                if pack is None:
                    continue
                pack.mask.zero_()
                for row, adapter in enumerate(row_adapters):
                    for c0, c1, scale in pack.cols.get(adapter, []) if adapter else []:
                        pack.mask[row, c0:c1] = scale

    def memory_bytes(self) -> int:
        """The static cache's size."""
        return cache_bytes(self.w, self.rows, self.max_len, self.dtype)

    # ---- the forward ----------------------------------------------------------------------------------------------
    # Rows x positions are flattened to one dimension (n = rows * T), so every projection is a 2-D matmul and each
    # LoRA delta is added by the B matmul itself (addmm); q/k/v and gate/up leave their 4-bit matmuls side by side
    # in one tensor, so one LoRA B, one rotary embedding (q and k together) and one SiLU-and-multiply serve them.
    def _rms(self, h: Any, weight: Any) -> Any:
        import torch.nn.functional as F

        return F.rms_norm(h, (h.shape[-1],), weight, self.w.eps)

    def _linear(self, p: Projection, x: Any) -> Any:
        import torch.nn.functional as F

        bias = self._bias[id(p)]
        if p.quantized:
            return self._bnb.matmul_4bit(x, p.weight, bias=bias, quant_state=p.quant_state)
        w = p.weight
        y = F.linear(x if x.dtype == w.dtype else x.to(w.dtype), w, bias)
        return y if y.dtype == self.dtype else y.to(self.dtype)

    def _lora(self, layer: int, g: int, x: Any, out: Any, t: int) -> Any:
        """``out`` + group ``g``'s LoRA delta of ``x`` for each row's adapter (a row without one adds zero)."""
        import torch
        import torch.nn.functional as F

        pack = self._lora_packs[layer][g]
        if pack is None or not self._any_lora:
            return out
        mask = pack.mask if t == 1 else pack.mask.repeat_interleave(t, dim=0)
        return torch.addmm(out, F.linear(x, pack.a) * mask, pack.b.t())

    def _forward(self, ids: Any, positions: Any, attend: Any) -> Any:
        """Hidden states after the last norm (rows, T, hidden), for ``ids`` (rows, T) at ``positions`` (rows, T);
        ``attend(layer, q, k, v, rows, t)`` stores k/v (n, heads, head_dim) in the cache and returns the attention
        output (n, heads * head_dim)."""
        import torch
        import torch.nn.functional as F

        w, (rows, t) = self.w, ids.shape
        n, hd, heads, kv = rows * t, w.head_dim, w.heads, w.kv_heads
        h = F.embedding(ids.reshape(n), w.embed)
        h = h if h.dtype == self.dtype else h.to(self.dtype)
        flat = positions.reshape(n)
        cos = self._cos[flat].to(self.dtype).unsqueeze(1)  # (n, 1, head_dim)
        sin = self._sin[flat].to(self.dtype).unsqueeze(1)  # signed: rotate_half(x) * sin == roll(x) * this
        qk_width = (heads + kv) * hd
        for i, layer in enumerate(w.layers):
            proj, (norm_in, norm_post) = layer.proj, self._norms[i]
            x = self._rms(h, norm_in)
            qkv = torch.cat([self._linear(proj[name], x) for name in GROUPS[0]], dim=-1)
            qkv = self._lora(i, 0, x, qkv, t)
            qk = qkv[:, :qk_width].view(n, heads + kv, hd)
            qk = torch.addcmul(qk * cos, torch.roll(qk, hd // 2, dims=-1), sin)
            v = qkv[:, qk_width:].view(n, kv, hd)
            a = attend(i, qk[:, :heads], qk[:, heads:], v, rows, t)
            h = self._lora(i, 1, a, h + self._linear(proj["o_proj"], a), t)
            x = self._rms(h, norm_post)
            gu = self._lora(i, 2, x, torch.cat([self._linear(proj[name], x) for name in GROUPS[2]], dim=-1), t)
            inter = proj["gate_proj"].out_features
            act = F.silu(gu[:, :inter]) * gu[:, inter:]
            h = self._lora(i, 3, act, h + self._linear(proj["down_proj"], act), t)
        return self._rms(h, self._final_norm).view(rows, t, -1)

    def _head(self, last: Any) -> Any:
        import torch.nn.functional as F

        head = self.w.lm_head
        return F.linear(last if last.dtype == head.dtype else last.to(head.dtype), head).float()

    # ---- prefill and decode ---------------------------------------------------------------------------------------
    def start(self, ids: Any, pad: Any, row_adapters: list[str | None]) -> Any:
        """A new request: ``ids`` (rows, T) left-padded, ``pad`` (rows,) the padding of each row. Returns the
        next-token logits (rows, vocab, float32)."""
        import torch
        import torch.nn.functional as F

        rows, t = ids.shape
        if rows != self.rows:
            raise ValueError(f"{rows} rows for an engine of {self.rows}")
        if t >= self.max_len:
            raise ValueError(f"a prompt of {t} tokens does not fit a cache of {self.max_len}")
        self.set_rows(row_adapters)
        pad = pad.to(self.device)
        self._pad.copy_(pad)
        ids = ids.to(self.device)
        positions = (torch.arange(t, device=self.device)[None, :] - pad[:, None]).clamp(min=0)
        slots = self._slots[:t]
        # causal, no padding keys; a padding query sees itself (its output is never used, but must not be NaN)
        mask = ((slots[None, :] <= slots[:, None])[None] & (slots[None, None, :] >= pad[:, None, None])) \
            | torch.eye(t, dtype=torch.bool, device=self.device)[None]
        group = self.w.heads // self.w.kv_heads

        def attend(i: int, q: Any, k: Any, v: Any, rows: int, t: int) -> Any:
            q, k, v = (x.view(rows, t, -1, x.shape[-1]).transpose(1, 2) for x in (q, k, v))
            self.k[i][:, :, :t] = k
            self.v[i][:, :, :t] = v
            if group > 1:
                k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])
            return out.transpose(1, 2).reshape(rows * t, -1)

        with torch.inference_mode():
            h = self._forward(ids, positions, attend)
            self.length = t
            return self._head(h[:, -1])

    def _decode_into(self) -> None:
        """One decode step from the buffers (tokens, slot, pad, masks) into ``self._logits``: the captured work."""
        import torch.nn.functional as F

        w = self.w
        group = w.heads // w.kv_heads
        positions = (self._slot - self._pad).clamp(min=0)[:, None]  # (rows, 1)
        span = self._span or self.max_len  # an eager step reads only the slots written so far (the rest are masked)
        slots = self._slots[:span]
        visible = ((slots[None, :] >= self._pad[:, None]) & (slots[None, :] <= self._slot))[:, None, None]

        def attend(i: int, q: Any, k: Any, v: Any, rows: int, t: int) -> Any:
            self.k[i].index_copy_(2, self._slot, k.unsqueeze(2))
            self.v[i].index_copy_(2, self._slot, v.unsqueeze(2))
            # grouped-query attention without repeating the cache: a kv head's queries side by side
            out = F.scaled_dot_product_attention(q.reshape(rows, w.kv_heads, group, w.head_dim),
                                                 self.k[i][:, :, :span], self.v[i][:, :, :span], attn_mask=visible)
            return out.reshape(rows, -1)

        h = self._forward(self._tokens, positions, attend)
        self._logits.copy_(self._head(h[:, -1]))

    def step(self, tokens: Any) -> Any:
        """Feed one token per row (rows,) or (rows, 1); the next logits (rows, vocab, float32; a buffer the next
        step overwrites)."""
        import torch

        if self.length >= self.max_len:
            raise ValueError(f"the cache of {self.max_len} tokens is full")
        with torch.inference_mode():
            self._tokens.copy_(tokens.view(self.rows, 1))
            self._slot.fill_(self.length)
            self._span = None if self.graph.enabled else self.length + 1
            self.graph.run()
            self.length += 1
        return self._logits


SMALL_HIDDEN = 512  # a model this narrow decodes on the CPU with one intra-op thread (see cpu_threads)


@contextlib.contextmanager
def cpu_threads(weights: ModelWeights) -> Iterator[None]:
    """One intra-op thread for a small model's decode on the CPU (the tiny model): its matmuls are too small for
    threads to share, so a second thread only adds hand-offs, and on a shared machine each one waits for a busy core
    (the 39-preset scorecard on 2 cores at load 10-14: 82 s with 2 threads, 14 s with 1; about 25% slower idle).
    Larger models and GPUs keep torch's setting."""
    import torch

    if weights.embed.device.type != "cpu" or weights.embed.shape[1] > SMALL_HIDDEN or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cache_bytes(weights: ModelWeights, rows: int, max_len: int, dtype: Any) -> int:
    """The static KV cache's size for ``rows`` rows of ``max_len`` tokens."""
    import torch

    per_token = 2 * len(weights.layers) * weights.kv_heads * weights.head_dim * torch.finfo(dtype).bits // 8
    return rows * max_len * per_token


def cache_length(needed: int, max_seq_length: int, smallest: int = 256) -> int:
    """The cache size for ``needed`` tokens (prompt + new tokens): the next power of two from ``smallest``, capped at
    max_seq_length; attention reads the whole cache every step, so a short answer does not pay for 2,048 slots,
    and a few sizes keep captures few."""
    return min(max(smallest, 1 << math.ceil(math.log2(max(needed, 1)))), max_seq_length)


_ENGINES: Any = None  # model -> {key: engine}; weak on the model, so a released model frees its engines and caches
KEEP = 2  # engines kept per model (the panes' and the scorecard's): each holds a static cache


def engine_for(model: Any, rows: int, max_len: int, dtype: Any | None = None, graphs: bool | None = None) -> DecodeEngine:
    """The engine for these rows and cache size, kept across requests (its captured step with it) and built again
    when an adapter's weights changed (a training step, a reload under the same name) or the adapters did."""
    global _ENGINES
    import weakref

    if _ENGINES is None:
        _ENGINES = weakref.WeakKeyDictionary()
    weights = read_weights(model)
    key = (rows, max_len, dtype, graphs, weights.adapters, version(weights))
    engines = _ENGINES.setdefault(model, {})
    engine = engines.pop(key, None)
    if engine is None:
        for old in [k for k in engines if k[:2] == (rows, max_len)]:
            del engines[old]  # the same shape on older weights: never used again
        engine = DecodeEngine(model, rows, max_len, dtype=dtype, graphs=graphs, weights=weights)
        logger.info("decode engine: %d rows, cache %d, %s, adapters %s, graphs %s", rows, max_len,
                    str(engine.dtype).removeprefix("torch."), list(weights.adapters) or "none", engine.graph.enabled)
    engines[key] = engine  # newest last
    while len(engines) > KEEP:
        del engines[next(iter(engines))]
    return engine
