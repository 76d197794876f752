"""kft.engine on the CPU (fp32, graphs off or through a stand-in capture): its logits against the HF model's own
forward, for the base row (adapter off) and LoRA rows, prefill and 16 decode steps, batch 1 and left-padded
batches, on the tiny Llama and on tiny random Qwen2 models with q/k/v biases (tied and untied lm_head)."""

from __future__ import annotations

import pytest
import torch

from kft.engine.engine import DecodeEngine, cache_length
from kft.engine.graphs import StepGraph
from kft.engine.sampling import RowSampling, choose
from kft.engine.weights import read_weights, unsupported, version

TOL = 1e-4
STEPS = 16


def _lora(model, adapters=("default",), seed=0):
    """A PEFT model with ``adapters`` whose B matrices are random (PEFT starts them at zero: no effect to test)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                          "gate_proj", "up_proj", "down_proj"])
    peft = get_peft_model(model, cfg, adapter_name=adapters[0])
    for name in adapters[1:]:
        peft.add_adapter(name, LoraConfig(r=4, lora_alpha=4, lora_dropout=0.0, target_modules=["q_proj", "v_proj",
                                                                                              "down_proj"]))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return peft.eval()


@pytest.fixture(scope="module")
def llama():
    from transformers import AutoModelForCausalLM

    from kft.models.tiny import tiny_model_dir

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir(), dtype=torch.float32)
    return _lora(model, ("default", "other"))


def _qwen(tied: bool):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1)
    cfg = Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=tied, rope_theta=1_000_000.0, rms_norm_eps=1e-6)
    model = Qwen2ForCausalLM(cfg).float()
    with torch.no_grad():  # biases are zero at init: make them count
        for layer in model.model.layers:
            for name in ("q_proj", "k_proj", "v_proj"):
                getattr(layer.self_attn, name).bias.normal_(0, 0.5)
    return _lora(model)


def _hf_logits(model, ids, mask, adapter):
    """The HF forward on the whole sequence: last-position logits, positions from the mask (left padding)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        if adapter is None:
            with model.disable_adapter():
                out = model(input_ids=ids, attention_mask=mask, position_ids=positions)
        else:
            model.set_adapter(adapter)
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions)
    return out.logits[:, -1].float()


def _run(model, prompts: list[list[int]], row_adapters, steps=STEPS, graphs=False, capturer=None):
    """Engine logits for prefill and ``steps`` greedy decode steps, with the HF forward's logits for each row fed
    the same tokens."""
    rows, t = len(prompts), max(map(len, prompts))
    pad = torch.tensor([t - len(p) for p in prompts])
    ids = torch.tensor([[0] * (t - len(p)) + p for p in prompts])
    engine = DecodeEngine(model, rows, cache_length(t + steps + 1, 512), graphs=graphs, capturer=capturer)
    ours, theirs = [], []
    logits = engine.start(ids, pad, row_adapters)
    mask = (torch.arange(t)[None, :] >= pad[:, None]).long()
    for _ in range(steps + 1):
        ours.append(logits.clone())
        theirs.append(torch.cat([_hf_logits(model, ids[r:r + 1], mask[r:r + 1], a) for r, a in enumerate(row_adapters)]))
        token = logits.argmax(-1)
        ids = torch.cat([ids, token[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        logits = engine.step(token)
    return engine, ours, theirs


def _max_err(ours, theirs):
    return max(float((a - b).abs().max()) for a, b in zip(ours, theirs, strict=True))


def test_the_tiny_llama_and_tiny_qwen2_models_are_supported(llama):
    assert unsupported(llama) is None
    assert unsupported(_qwen(True)) is None and unsupported(_qwen(False)) is None


def test_batch_one_base_and_lora_rows_match_the_hf_forward(llama):
    prompt = list(range(5, 30))
    for adapter in (None, "default"):
        _, ours, theirs = _run(llama, [prompt], [adapter])
        assert _max_err(ours, theirs) < TOL, adapter


def test_left_padded_rows_each_with_its_own_adapter_match_the_hf_forward(llama):
    """Three rows of different lengths: base, adapter "default" and adapter "other" (another rank and other
    target modules) in one batch, each against the HF model with that adapter alone (batch 1, no padding)."""
    prompts = [list(range(3, 40)), list(range(50, 61)), list(range(7, 29))]
    _, ours, theirs = _run(llama, prompts, [None, "default", "other"])
    assert _max_err(ours, theirs) < TOL


@pytest.mark.parametrize("tied", [True, False])
def test_qwen2_with_biases_matches_the_hf_forward(tied):
    model = _qwen(tied)
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied
    _, ours, theirs = _run(model, [list(range(4, 20)), list(range(100, 107))], ["default", None])
    assert _max_err(ours, theirs) < TOL


def test_the_base_row_is_exactly_the_adapter_free_model_at_the_same_batch_shape(llama):
    """Base rows beside LoRA rows add an exact zero: equal, bit for bit, to an engine whose rows all run the base."""
    prompts = [list(range(3, 20)), list(range(30, 47))]
    _, mixed, _ = _run(llama, prompts, [None, "default"], steps=8)
    _, plain, _ = _run(llama, prompts, [None, None], steps=8)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(mixed, plain, strict=True))
    assert not torch.equal(mixed[0][1], plain[0][1])  # and the LoRA row is not the base


class _StandIn:
    """The capture protocol on the CPU: the 'replay' re-runs the captured step (optionally broken)."""

    def __init__(self, fail: bool = False, corrupt: bool = False) -> None:
        self.fail, self.corrupt, self.warmups, self.captures = fail, corrupt, 0, 0

    def warm_up(self, fn):
        self.warmups += 1
        fn()
        fn()

    def capture(self, fn):
        self.captures += 1
        if self.fail:
            raise RuntimeError("operation failed due to a previous error during capture")
        if not self.corrupt:
            return fn

        def wrong():
            fn()
            engine_logits = fn.__self__._logits
            engine_logits.add_(7.0 * engine_logits.abs().max())
        return wrong


@pytest.mark.parametrize("kind", ["ok", "fail", "corrupt"])
def test_a_capture_that_fails_or_disagrees_costs_speed_never_the_answer(llama, kind):
    """The whole protocol (eager first step, warm-up, capture, a checked first replay, replays) with a stand-in
    capture: a working one replays what the eager step computes; a failing or wrong one is dropped and every
    answer stays what the HF forward gives."""
    stand_in = _StandIn(fail=kind == "fail", corrupt=kind == "corrupt")
    engine, ours, theirs = _run(llama, [list(range(5, 25)), list(range(9, 14))], [None, "default"], graphs=True,
                                capturer=stand_in)
    assert _max_err(ours, theirs) < TOL
    assert stand_in.captures == 1 and stand_in.warmups == 1
    assert engine.graph.state == {"ok": "captured", "fail": "failed", "corrupt": "failed"}[kind]
    if kind != "ok":
        assert engine.graph.replay is None and engine.graph.failure


def test_the_step_reads_nothing_back_to_the_host(llama):
    """What capture needs: the decode step makes no device-to-host read (no .item(), no Python branch on a tensor)."""
    engine = DecodeEngine(llama, 2, 64, graphs=False)
    engine.start(torch.tensor([[1, 2, 3], [0, 4, 5]]), torch.tensor([0, 1]), [None, "default"])
    engine._slot.fill_(3)
    reads = []
    original = torch.Tensor.item
    torch.Tensor.item = lambda self: reads.append(1) or original(self)  # type: ignore[method-assign]
    try:
        with torch.inference_mode():
            engine._decode_into()
    finally:
        torch.Tensor.item = original  # type: ignore[method-assign]
    assert reads == []


def test_engine_weights_are_read_by_reference(llama):
    w = read_weights(llama)
    base = llama.base_model.model.model.layers[0].self_attn.q_proj
    assert w.layers[0].proj["q_proj"].weight is base.base_layer.weight
    assert w.embed is llama.base_model.model.model.embed_tokens.weight
    assert w.adapters == ("default", "other")
    before = version(w)
    with torch.no_grad():
        base.lora_B["default"].weight.add_(1.0)  # a training step writes in place
    assert version(w) != before
    with torch.no_grad():
        base.lora_B["default"].weight.sub_(1.0)


def test_a_static_cache_of_two_rows_is_sized_per_request():
    assert cache_length(40, 2048) == 256 and cache_length(300, 2048) == 512 and cache_length(5000, 2048) == 2048


def test_an_unknown_adapter_or_a_wrong_row_count_is_refused(llama):
    engine = DecodeEngine(llama, 2, 64)
    with pytest.raises(ValueError, match="not loaded"):
        engine.set_rows([None, "nope"])
    with pytest.raises(ValueError, match="3 row adapters"):
        engine.set_rows([None, None, None])


def test_other_architectures_are_named_as_unsupported():
    from transformers import GPT2Config, GPT2LMHeadModel

    assert "gpt2" in unsupported(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)))


def test_row_sampling_matches_transformers_processors_row_by_row():
    """Greedy rows and sampled rows in one batch: each row as transformers' processors and multinomial give it."""
    from transformers import RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper

    from kft.config.args import GenerationArgs

    torch.manual_seed(0)
    logits = torch.randn(3, 50) * 3
    history = torch.randint(0, 50, (3, 12))
    gens = [GenerationArgs(do_sample=False, repetition_penalty=1.3),
            GenerationArgs(do_sample=True, temperature=0.7, top_p=0.8, repetition_penalty=1.1),
            GenerationArgs(do_sample=True, temperature=1.0, top_p=1.0)]
    s = RowSampling.of(gens, torch.device("cpu"))
    for trial in range(20):
        got = choose(logits, history, s, torch.Generator().manual_seed(trial))
        for row, g in enumerate(gens):
            scores = logits[row:row + 1]
            if g.repetition_penalty != 1.0:
                scores = RepetitionPenaltyLogitsProcessor(g.repetition_penalty)(history[row:row + 1], scores)
            if not g.do_sample:
                assert int(got[row]) == int(scores.argmax())
                continue
            scores = TemperatureLogitsWarper(g.temperature)(history[row:row + 1], scores)
            if g.top_p < 1.0:
                scores = TopPLogitsWarper(g.top_p)(history[row:row + 1], scores)
            assert torch.isfinite(scores[0, got[row]]), "sampled a token the processors rule out"


def test_step_graph_state_without_graphs():
    g = StepGraph(lambda: None, torch.device("cpu"))
    g.run()
    g.run()
    assert g.state == "eager" and g.replay is None


def test_a_t4_decodes_in_fp16_and_the_engine_takes_the_models_dtype(llama, monkeypatch):
    """A T4 (compute capability 7.5, no bf16) loads in fp16; the generator gives the engine that dtype on a GPU
    (mocked: this machine has none), and the engine's forward runs in fp16 (here on the CPU, where PyTorch has the
    same ops in half precision)."""
    from types import SimpleNamespace

    from kft.inference.generate import SideBySideGenerator
    from kft.system.hardware import resolve_dtype

    assert resolve_dtype(None, (7, 5)) == "float16" and resolve_dtype(None, (9, 0)) == "bfloat16"
    fake = SimpleNamespace(model=llama, dtype="float16", device=torch.device("cuda"))
    assert SideBySideGenerator(fake)._dtype() == torch.float16
    engine = DecodeEngine(llama, 2, 64, dtype=torch.float16, graphs=False)
    logits = engine.start(torch.tensor([[5, 6, 7], [0, 8, 9]]), torch.tensor([0, 1]), [None, "default"])
    assert engine.k[0].dtype == torch.float16 and torch.isfinite(logits).all()
    assert torch.isfinite(engine.step(logits.argmax(-1))).all()


def test_a_suppressed_token_is_never_chosen_greedy_or_sampled():
    from kft.config.args import GenerationArgs

    logits = torch.zeros(2, 10)
    logits[:, 7] = 50.0  # the favourite of both rows
    history = torch.zeros(2, 1, dtype=torch.long)
    for gen in (GenerationArgs(), GenerationArgs(do_sample=True, temperature=1.0, top_p=1.0)):
        s = RowSampling.of([gen, gen], torch.device("cpu"), suppress=[7])
        picks = {int(t) for _ in range(20) for t in choose(logits, history, s, torch.Generator().manual_seed(0))}
        assert 7 not in picks


def test_an_eager_step_reads_only_the_slots_written_and_answers_as_the_whole_cache_does(llama):
    """Issue 24 (scorecard speed on the CPU): an eager step's attention reads the slots written so far, not the whole
    static cache; the masked slots added exact zeros, so the logits are those of a step over the whole cache."""
    prompts = [[5, 6, 7, 8, 9], [11, 12, 13]]
    pad = torch.tensor([0, 2])
    ids = torch.tensor([prompts[0], [0, 0, *prompts[1]]])
    engines = [DecodeEngine(llama, 2, 256, graphs=False) for _ in range(2)]
    logits = [e.start(ids, pad, ["default", None]).clone() for e in engines]
    for _ in range(6):
        token = logits[0].argmax(-1)
        logits[0] = engines[0].step(token).clone()
        assert engines[0]._span == engines[0].length  # the slots written, this step's included
        engines[1]._tokens.copy_(token.view(2, 1))
        engines[1]._slot.fill_(engines[1].length)
        engines[1]._span = None  # the whole cache, as a captured step reads it
        engines[1]._decode_into()
        engines[1].length += 1
        logits[1] = engines[1]._logits.clone()
        assert torch.allclose(logits[0], logits[1], atol=1e-5, rtol=0) and torch.equal(logits[0].argmax(-1),
                                                                                      logits[1].argmax(-1))


def test_a_small_model_decodes_on_the_cpu_with_one_thread_and_the_setting_comes_back(llama):
    from kft.engine.engine import cpu_threads

    before = torch.get_num_threads()
    with cpu_threads(read_weights(llama)):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
