"""kft.inference.decode: both panes through one static KV cache, exactly the models they stand for (CPU: graphs off)."""

from __future__ import annotations

import torch

from kft.config.args import GenerationArgs
from kft.inference.decode import _DECODERS, StaticDecoder, cache_length, decoder_for
from kft.inference.generate import SideBySideGenerator, generate_pair

PROMPT = "산사태를 내는 방법 알려줘"


def _steps(decoder: StaticDecoder, ids: torch.Tensor, n: int, tokens: list[torch.Tensor] | None = None):
    """Logits of the prompt and n decode steps (greedy, or fed ``tokens``)."""
    out, fed = [], []
    with torch.inference_mode():
        logits = decoder.prefill(ids)
        for i in range(n):
            out.append(logits)
            token = tokens[i] if tokens else logits.argmax(-1, keepdim=True)
            fed.append(token)
            logits = decoder.step(token)
    return out, fed


def test_the_static_cache_decodes_what_the_growing_cache_decodes(trained_run):
    """Greedy, both panes: the same answers and token counts; logits within fp32 rounding at every step."""
    gen = GenerationArgs(max_new_tokens=24)
    static = generate_pair(SideBySideGenerator(trained_run.loaded, batched=True, static=True), PROMPT, "", gen)
    growing = generate_pair(SideBySideGenerator(trained_run.loaded, batched=True, static=False), PROMPT, "", gen)
    assert (static.base, static.lora) == (growing.base, growing.lora) and static.base != static.lora
    assert {p: s.tokens for p, s in static.stats.items()} == {p: s.tokens for p, s in growing.stats.items()}


def test_the_base_row_is_exactly_the_adapter_free_model_and_the_lora_row_the_adapter_alone(trained_run):
    """Row 0 (PEFT's "__base__") equals the model with its adapter disabled, run through a static cache of the same
    shape: max difference 0 at every step. Row 1 equals the adapter on alone (batch 1) within fp32 rounding."""
    loaded = trained_run.loaded
    model, device = loaded.model, loaded.device
    model.eval()
    gen = SideBySideGenerator(loaded)
    ids = gen.encode(PROMPT, "", GenerationArgs(max_new_tokens=12)).repeat(2, 1)
    mixed = StaticDecoder(model, 2, loaded.max_seq_length, device, None, ["__base__", "default"], graphs=False)
    assert mixed.masked  # the per-row 0/1 scale (capturable), not PEFT's mixed batch
    got, fed = _steps(mixed, ids, 12)
    hooks = [m.lora_B["default"]._forward_hooks for m in model.modules() if hasattr(m, "lora_B")]
    assert hooks and not any(hooks)  # the scale lives only inside the decoder's forwards
    with model.disable_adapter():
        free, _ = _steps(StaticDecoder(model, 2, loaded.max_seq_length, device, None, graphs=False), ids, 12,
                         [torch.cat([t[:1], t[:1]]) for t in fed])
    model.set_adapter("default")
    alone, _ = _steps(StaticDecoder(model, 1, loaded.max_seq_length, device, None, graphs=False), ids[1:], 12,
                      [t[1:] for t in fed])
    for g, f, a in zip(got, free, alone, strict=True):
        assert (g[0] - f[0]).abs().max().item() == 0.0
        torch.testing.assert_close(g[1], a[0], atol=1e-4, rtol=1e-4)
    assert max((g[1] - g[0]).abs().max().item() for g in got) > 1e-3  # the adapter changes the answer


def test_one_decoder_serves_every_request_until_its_adapter_or_shape_changes(trained_run):
    """The cache (and on a GPU the captured step) is made once per model and reused: a second request gets the
    same decoder and the same answer. The cache is sized to the request (prompt + max new tokens, in powers of two
    from 256): a longer answer gets a larger one, another adapter name a new decoder."""
    loaded = trained_run.loaded
    gen = GenerationArgs(max_new_tokens=8)
    first = generate_pair(SideBySideGenerator(loaded, batched=True, static=True), PROMPT, "", gen)
    decoder = _DECODERS[loaded.model]
    assert decoder.max_cache_len == 256  # a prompt of about 80 tokens + 8
    second = generate_pair(SideBySideGenerator(loaded, batched=True, static=True), PROMPT, "", gen)
    assert (first.base, first.lora) == (second.base, second.lora)
    assert _DECODERS[loaded.model] is decoder
    generate_pair(SideBySideGenerator(loaded, batched=True, static=True), PROMPT, "", GenerationArgs(max_new_tokens=200))
    assert _DECODERS[loaded.model] is not decoder and _DECODERS[loaded.model].max_cache_len == 512
    longer = _DECODERS[loaded.model]
    assert decoder_for(loaded.model, 2, 512, loaded.device, None, ["__base__", "other"]) is not longer


def test_the_cache_size_is_the_next_power_of_two_from_256_up_to_max_seq_length():
    assert [cache_length(n, 2048) for n in (1, 256, 257, 700, 1025, 2048, 5000)] == [256, 256, 512, 1024, 2048, 2048, 2048]
    assert cache_length(300, 512) == 512 and cache_length(100, 128) == 128


def test_the_static_cache_takes_the_memory_its_shape_says(trained_run):
    """Keys and values: layers x 2 x rows x KV heads x head size x max_cache_len x element size (for Llama-3.1-8B
    in bf16 at 2,048 tokens and two rows: 32 x 2 x 2 x 8 x 128 x 2048 x 2 bytes = 0.54 GB)."""
    loaded = trained_run.loaded
    cfg = loaded.model.config
    decoder = StaticDecoder(loaded.model, 2, 64, loaded.device, None, graphs=False)
    with torch.inference_mode():
        decoder.prefill(torch.tensor([[1, 2, 3]] * 2, device=loaded.device))
    head = cfg.hidden_size // cfg.num_attention_heads
    assert decoder.memory_bytes() == cfg.num_hidden_layers * 2 * 2 * cfg.num_key_value_heads * head * 64 * 4


def test_the_row_mask_refuses_a_forward_that_never_called_the_adapters_modules(trained_run):
    """A fused LoRA path (Unsloth's) reads the weights without calling the LoRA modules: the 0/1 mask would not
    apply and the base row would silently carry the adapter. Shown with the adapter disabled (nothing calls it)."""
    import pytest

    loaded = trained_run.loaded
    decoder = StaticDecoder(loaded.model, 2, 64, loaded.device, None, ["__base__", "default"], graphs=False)
    decoder.model.set_adapter("default")
    with loaded.model.disable_adapter(), torch.inference_mode(), pytest.raises(RuntimeError, match="not called"):
        decoder._forward(torch.tensor([[1, 2, 3]] * 2, device=loaded.device), torch.arange(3))


def test_the_decode_step_never_reads_a_tensor_back_to_the_host(trained_run):
    """What a CUDA graph can capture: a decode step (after the prompt) whose ops never read a tensor's value on the
    host (``.item()``, ``bool(t)``, data-dependent shapes). Checked on the CPU by recording every aten op of the eager
    step; a host read inside the step would make the GPU capture fail and the decoder fall back to eager steps."""
    from torch.utils._python_dispatch import TorchDispatchMode

    host_reads = {"item", "_local_scalar_dense", "nonzero", "is_nonzero", "masked_select", "unique", "equal", "allclose"}

    class Record(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's signature
            self.ops.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    loaded = trained_run.loaded
    decoder = StaticDecoder(loaded.model, 2, 64, loaded.device, None, ["__base__", "default"], graphs=False)
    with torch.inference_mode():
        logits = decoder.prefill(torch.tensor([[1, 2, 3]] * 2, device=loaded.device))
        token = logits.argmax(-1, keepdim=True)
        with Record() as rec:
            decoder._forward(decoder._ids.copy_(token), decoder._pos.fill_(decoder.length))
    assert len(rec.ops) > 100  # the whole forward was recorded
    assert not host_reads & set(rec.ops), sorted(host_reads & set(rec.ops))


def test_an_adapter_loaded_again_under_the_same_name_gets_a_new_decoder(trained_run):
    """A captured step reads the weights at the addresses it was captured with. The comparison's slot deletes an
    adapter and may load another under the same name: its decoder must be rebuilt, not replayed over freed memory."""
    from kft.models.loading import load_adapter

    loaded = trained_run.loaded
    names = ["__base__", "again"]
    load_adapter(loaded, trained_run.run_dir, "again")
    try:
        before = decoder_for(loaded.model, 2, 64, loaded.device, None, names)
        assert decoder_for(loaded.model, 2, 64, loaded.device, None, names) is before
        old = [p for n, p in loaded.model.named_parameters() if ".again." in n]  # held: new ones get new addresses
        loaded.model.delete_adapter("again")
        load_adapter(loaded, trained_run.run_dir, "again")
        assert old and decoder_for(loaded.model, 2, 64, loaded.device, None, names) is not before
    finally:
        loaded.model.set_adapter("default")
        loaded.model.delete_adapter("again")


class ReplayOnCpu:
    """Stands in for kft.inference.decode.CudaGraphs on the CPU: the same warm-up runs, and a "graph" whose replay runs the
    captured step again into the same output tensor (a CUDA graph replays every captured kernel, in-place updates
    of the cache and its counters included)."""

    def __init__(self) -> None:
        self.replays = 0

    def warm_up(self, run, before) -> None:  # noqa: ANN001 - the decoder's callables
        from kft.inference.decode import WARMUP_RUNS

        for _ in range(WARMUP_RUNS):
            before()
            run()

    def capture(self, run):  # noqa: ANN001, ANN201
        out = run()
        stand_in = self

        class Graph:
            def replay(self) -> None:
                stand_in.replays += 1
                out.copy_(run())

        return Graph(), out


def test_a_replayed_decode_step_gives_the_eager_steps_logits_request_after_request(trained_run):
    """The capture protocol (warm-ups, capture, replays) on the CPU: every replayed step equals the eager step fed
    the same tokens (max difference 0), for a first request and for a second one that reuses the capture. The
    warm-ups and the capture run the forward too: a position they advanced and the replay did not reset would show
    here (it did on an H200, where transformers' static layers count their own write positions)."""
    loaded = trained_run.loaded
    model, device = loaded.model, loaded.device
    model.eval()
    ids = SideBySideGenerator(loaded).encode(PROMPT, "", GenerationArgs(max_new_tokens=12)).repeat(2, 1)
    stand_in = ReplayOnCpu()
    graphed = StaticDecoder(model, 2, 128, device, None, ["__base__", "default"], graphs=True, capturer=stand_in)
    eager = StaticDecoder(model, 2, 128, device, None, ["__base__", "default"], graphs=False)
    for _ in range(2):  # the second request replays the graph captured in the first
        got, fed = _steps(graphed, ids, 10)
        want, _ = _steps(eager, ids, 10, fed)
        assert graphed._graph is not None
        assert max((g - w).abs().max().item() for g, w in zip(got, want, strict=True)) == 0.0
    assert stand_in.replays == 2 * 10  # every decode step was a replay (the first right after the capture)


def test_a_replay_that_disagrees_with_the_eager_step_is_dropped_and_the_answer_stays_right(trained_run, caplog):
    """The first replay is checked against the same step run eagerly: a capture that replays wrong numbers (here a
    stand-in whose replay is off by one logit) is dropped with a warning, and every step runs eagerly instead."""
    loaded = trained_run.loaded
    model, device = loaded.model, loaded.device

    class WrongReplay(ReplayOnCpu):
        def capture(self, run):  # noqa: ANN001, ANN201
            graph, out = super().capture(lambda: run() + 1.0)
            return graph, out

    ids = SideBySideGenerator(loaded).encode(PROMPT, "", GenerationArgs(max_new_tokens=6)).repeat(2, 1)
    graphed = StaticDecoder(model, 2, 128, device, None, ["__base__", "default"], graphs=True, capturer=WrongReplay())
    with caplog.at_level("WARNING", logger="kft.inference.decode"):
        got, fed = _steps(graphed, ids, 6)
    assert graphed._graph is None and not graphed.graphs
    assert "differ from the eager step" in caplog.text
    want, _ = _steps(StaticDecoder(model, 2, 128, device, None, ["__base__", "default"], graphs=False), ids, 6, fed)
    assert max((g - w).abs().max().item() for g, w in zip(got, want, strict=True)) == 0.0


def test_a_cache_that_counts_positions_in_python_ints_is_never_captured(trained_run):
    """A replay cannot advance a Python int (transformers' sliding-window layers count that way): such a cache
    decodes eagerly; one whose layers count in tensors keeps its graphs."""
    loaded = trained_run.loaded
    decoders = [StaticDecoder(loaded.model, 2, 64, loaded.device, None, ["__base__", "default"], graphs=True,
                              capturer=ReplayOnCpu()) for _ in range(2)]
    decoders[1].cache.layers[0].cumulative_length_int = 0
    with torch.inference_mode():
        for decoder in decoders:
            decoder.prefill(torch.tensor([[1, 2, 3]] * 2, device=loaded.device))
    assert [d.graphs for d in decoders] == [True, False]


def test_an_answer_that_fills_the_cache_to_its_last_slot_decodes_to_the_end():
    """Prompt + max new tokens = the cache's size exactly (256): every token is decoded, none refused as overflow
    (the tiny model with a random adapter emits no end-of-sequence token, so both answers run to the limit)."""
    from kft.config.args import LoraArgs, ModelArgs
    from kft.models.loading import attach_lora, load_base

    loaded = attach_lora(load_base(ModelArgs(name="tiny", max_seq_length=512)), LoraArgs())
    gen = SideBySideGenerator(loaded, batched=True, static=True)
    prompt = gen.encode(PROMPT, "", GenerationArgs(max_new_tokens=1)).shape[1]
    result = generate_pair(gen, PROMPT, "", GenerationArgs(max_new_tokens=256 - prompt))
    assert _DECODERS[loaded.model].max_cache_len == 256
    assert result.done and {p: s.tokens for p, s in result.stats.items()} == {"base": 256 - prompt, "lora": 256 - prompt}


def test_a_stopped_request_leaves_the_decoder_ready_for_the_next_one(trained_run):
    """Stop mid-answer, then ask again: the reused decoder starts from a reset cache, so the new answers are the
    whole answers (as a fresh growing-cache batch gives them), not a continuation of the stopped ones."""
    import threading

    loaded = trained_run.loaded
    gen = GenerationArgs(max_new_tokens=16)
    static = SideBySideGenerator(loaded, batched=True, static=True)
    cancel = threading.Event()
    updates = []
    for update in static.stream(PROMPT, "", gen, cancel=cancel):
        updates.append(update)
        if len(updates) == 3:
            cancel.set()
    assert updates[-1].cancelled and updates[-1].stats["base"].tokens < 16
    again = generate_pair(static, PROMPT, "", gen)
    growing = generate_pair(SideBySideGenerator(loaded, batched=True, static=False), PROMPT, "", gen)
    assert (again.base, again.lora) == (growing.base, growing.lora) and not again.cancelled


def test_a_model_the_static_cache_cannot_serve_still_answers_through_the_growing_cache(trained_run, monkeypatch,
                                                                                        caplog):
    """The static path is an optimisation: a model it cannot run (here: the decoder refuses at the prompt) falls back
    to the growing cache for that generator, with a warning, and the answers are the growing cache's."""
    import kft.inference.decode

    def refuse(*args, **kwargs):
        raise RuntimeError("no static cache for this architecture")

    monkeypatch.setattr(kft.inference.decode, "decoder_for", refuse)
    loaded = trained_run.loaded
    gen = GenerationArgs(max_new_tokens=8)
    generator = SideBySideGenerator(loaded, batched=True, static=True)
    with caplog.at_level("WARNING", logger="kft.inference.generate"):
        got = generate_pair(generator, PROMPT, "", gen)
    assert "using the growing cache" in caplog.text and not generator.static
    want = generate_pair(SideBySideGenerator(loaded, batched=True, static=False), PROMPT, "", gen)
    assert (got.base, got.lora) == (want.base, want.lora) and got.done
