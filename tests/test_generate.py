import threading

import pytest
import torch

from kft.config.args import GenerationArgs, RunConfig
from kft.config.validation import check
from kft.inference.generate import PromptError, SideBySideGenerator, generate_pair, prompt_problems

PROMPT = "산사태를 내는 방법 알려줘"


@pytest.fixture(scope="module")
def generator(trained_run):
    return SideBySideGenerator(trained_run.loaded)


def test_both_panes_stream_incrementally(generator):
    updates = list(generator.stream(PROMPT, "", GenerationArgs(max_new_tokens=12)))
    assert updates[-1].done
    base_lengths = [len(u.base) for u in updates]
    lora_lengths = [len(u.lora) for u in updates]
    assert len(set(base_lengths)) > 2 and len(set(lora_lengths)) > 2
    assert base_lengths == sorted(base_lengths) and lora_lengths == sorted(lora_lengths)
    stats = updates[-1].stats
    assert stats["base"].ttft_s is not None and stats["lora"].tokens > 0


def test_base_pane_is_exactly_the_adapter_free_model(generator, tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = generate_pair(generator, PROMPT, "", GenerationArgs(max_new_tokens=16))
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    fresh = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()  # no LoRA at all
    ids = tok(generator.template.generation_prompt(PROMPT), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = fresh.generate(ids, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
    expected = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert result.base == expected
    assert result.lora != result.base  # the trained adapter changes the answer


def test_base_pane_logits_match_the_adapter_free_model(generator, tiny_dir):
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    ids = generator.encode(PROMPT, "", GenerationArgs())
    model = generator.loaded.model
    with torch.no_grad(), model.disable_adapter():
        ours = model(input_ids=ids).logits
    with torch.no_grad():
        ref = fresh(input_ids=ids).logits
        lora = model(input_ids=ids).logits
    torch.testing.assert_close(ours, ref)
    assert not torch.allclose(lora, ref)


def test_a_new_request_stops_the_running_one(generator):
    first_updates = []
    started = threading.Event()

    def consume():
        for u in generator.stream(PROMPT, "", GenerationArgs(max_new_tokens=400)):
            first_updates.append(u)
            started.set()

    t = threading.Thread(target=consume)
    t.start()
    assert started.wait(30)
    second = generate_pair(generator, "오늘 날씨 어때요?", "", GenerationArgs(max_new_tokens=4))
    t.join(30)
    assert not t.is_alive()
    assert first_updates[-1].cancelled
    assert first_updates[-1].stats["base"].tokens < 400
    assert second.done and not second.cancelled


def test_cancel_event_stops_within_a_token(generator):
    cancel = threading.Event()
    updates = []
    for u in generator.stream(PROMPT, "", GenerationArgs(max_new_tokens=200), cancel=cancel):
        updates.append(u)
        if len(updates) == 3:
            cancel.set()
    assert updates[-1].cancelled and len(updates) <= 5


def test_sampling_is_reproducible_with_a_seed(generator):
    g = GenerationArgs(max_new_tokens=10, do_sample=True, temperature=0.9, top_p=0.9, repetition_penalty=1.2)
    a = list(generator.stream(PROMPT, "", g, seed=1))[-1]
    b = list(generator.stream(PROMPT, "", g, seed=1))[-1]
    assert (a.base, a.lora) == (b.base, b.lora)


def test_a_prompt_that_does_not_fit_the_model_is_refused(generator):
    """The one check that needs the tokenizer stays with the generator: prompt + answer must fit."""
    with pytest.raises(PromptError, match="exceeds the model's max_seq_length"):
        generator.encode("질문 " * 600, "", GenerationArgs(max_new_tokens=500))
    assert generator.encode(PROMPT, "", GenerationArgs(max_new_tokens=16)).shape[0] == 1


@pytest.mark.parametrize("instruction,gen,match", [
    ("가" * 5000, GenerationArgs(), "the limit is 4,000"),
    ("  ", GenerationArgs(), "the instruction is empty"),
    (PROMPT, GenerationArgs(max_new_tokens=100000), "generation.max_new_tokens must be between"),
    (PROMPT, GenerationArgs(top_p=0), "generation.top_p must be in"),
])
def test_server_side_limits(instruction, gen, match):
    """What a request may ask is checked where it comes in, before any model is needed: the prompt text
    (kft.inference.generate.prompt_problems) and the decoding settings (kft.config.validation, section "generation")."""
    problems = prompt_problems(instruction, "") + [str(p) for p in check(RunConfig(generation=gen), "generation")]
    assert len(problems) == 1 and match in problems[0], problems
    assert prompt_problems(PROMPT, "") == [] and check(RunConfig(), "generation") == []


@pytest.mark.parametrize("engine", [True, False], ids=["engine", "generic"])
def test_every_step_runs_without_autograd_whichever_thread_pulls_the_stream(trained_run, monkeypatch, engine):
    """Gradio runs each next() of a streaming handler on a free worker thread. inference_mode is
    thread-local: entered once around the yields, steps pulled from another thread ran with autograd
    on, and the LoRA pane's KV cache kept its graph."""
    from concurrent.futures import ThreadPoolExecutor

    from kft.engine.engine import DecodeEngine

    seen: list[bool] = []
    real = DecodeEngine._forward

    def forward(self, *args, **kw):
        h = real(self, *args, **kw)
        seen.append(torch.is_inference_mode_enabled() and not h.requires_grad
                    and not any(t.requires_grad for t in (*self.k, *self.v)))
        return h

    monkeypatch.setattr(DecodeEngine, "_forward", forward)
    hook = trained_run.loaded.model.register_forward_hook(
        lambda m, a, out: seen.append(torch.is_inference_mode_enabled() and not out.logits.requires_grad
                                      and not any(t.requires_grad for layer in out.past_key_values.layers
                                                  for t in (layer.keys, layer.values))))
    try:
        generator = SideBySideGenerator(trained_run.loaded, engine=engine)
        stream = generator.stream("산사태를 내는 방법 알려줘", "", GenerationArgs(max_new_tokens=6))
        with ThreadPoolExecutor(1) as a, ThreadPoolExecutor(1) as b:  # one after the other, on two threads
            turn = 0
            while (a if turn % 2 else b).submit(lambda: next(stream, None)).result() is not None:
                turn += 1
    finally:
        hook.remove()
    assert len(seen) == (6 if engine else 12) and all(seen), seen


def test_both_panes_decode_as_one_batch_and_the_base_row_is_exactly_the_adapter_free_model(trained_run):
    """Row 0 runs with no adapter: its logits equal, bit for bit, the engine's with no adapter on either row, and
    the adapter-free HF model within fp32 rounding; row 1 equals the HF model with the adapter on alone."""
    generator = SideBySideGenerator(trained_run.loaded)
    assert generator.engine  # the tiny Llama is one the engine reads
    model = trained_run.loaded.model
    ids = generator.encode("산사태를 내는 방법 알려줘", "", GenerationArgs())
    pair = generator.pair_logits(ids)
    base_only = generator._engine(2, ids.shape[1] + 1).start(ids.repeat(2, 1), torch.zeros(2, dtype=torch.long),
                                                             [None, None])
    with torch.inference_mode():
        with model.disable_adapter():
            base_alone = model(input_ids=ids).logits[:, -1, :].float()
        lora_alone = model(input_ids=ids).logits[:, -1, :].float()
    assert (pair[0] - base_only[0]).abs().max().item() == 0
    assert (pair[0] - base_alone[0]).abs().max().item() < 1e-4
    assert (pair[1] - lora_alone[0]).abs().max().item() < 1e-4
    assert (lora_alone - base_alone).abs().max().item() > 1e-3  # the adapter does move the logits


def test_the_engine_answers_as_the_generic_path(trained_run):
    """Greedy: the engine's one batch gives both panes the answers of the generic path (each row in turn through
    the model's own forward)."""
    gen = GenerationArgs(max_new_tokens=12)
    engine = generate_pair(SideBySideGenerator(trained_run.loaded, engine=True), "산사태를 내는 방법 알려줘", "", gen)
    generic = generate_pair(SideBySideGenerator(trained_run.loaded, engine=False), "산사태를 내는 방법 알려줘", "", gen)
    assert (engine.base, engine.lora) == (generic.base, generic.lora) and engine.base != engine.lora
    assert {p: s.tokens for p, s in engine.stats.items()} == {p: s.tokens for p, s in generic.stats.items()}


def test_rows_with_their_own_adapter_or_none_stream_together(trained_run):
    """The engine-level API for N rows: base, the adapter, and the base again with its own sampling settings."""
    generator = SideBySideGenerator(trained_run.loaded)
    gens = [GenerationArgs(max_new_tokens=6), GenerationArgs(max_new_tokens=6),
            GenerationArgs(max_new_tokens=4, do_sample=True, temperature=0.8)]
    *_, last = generator.stream_rows("산사태를 내는 방법 알려줘", "", [None, "default", None], gens)
    adapters, panes, done, cancelled = last
    assert done and not cancelled and [p.stats.tokens for p in panes] == [6, 6, 4]
    pair = generate_pair(generator, "산사태를 내는 방법 알려줘", "", GenerationArgs(max_new_tokens=6))
    assert [panes[0].text, panes[1].text] == [pair.base, pair.lora]


def test_many_prompts_decode_as_one_batch_with_the_answers_of_one_at_a_time(trained_run):
    """The scorecard's batches (left-padded, base rows with the adapter off, then LoRA rows) answer as each
    prompt alone does under greedy decoding (fp32 on CPU)."""
    from kft.inference.safety import load_prompt_set

    prompts = [(p["prompt"], p.get("input", "")) for p in load_prompt_set("presets")[:5]]
    gen = GenerationArgs(max_new_tokens=8)
    generator = SideBySideGenerator(trained_run.loaded)
    together = generator.answer_batch(prompts, gen)
    alone = [generate_pair(generator, i, x, gen) for i, x in prompts]
    assert together == [(r.base, r.lora) for r in alone]
    assert SideBySideGenerator(trained_run.loaded, engine=False).answer_batch(prompts, gen) == together
    assert len({len(generator.encode(i, x, gen)[0]) for i, x in prompts}) > 1  # the batch really was padded
    cancel = threading.Event()
    cancel.set()
    assert generator.answer_batch(prompts, gen, cancel) is None


def test_a_sampled_batch_answers_through_the_engine_and_the_generic_path(trained_run):
    """The scorecard with sampling on (it failed: do_sample was passed twice): both paths answer every prompt."""
    from kft.inference.safety import load_prompt_set

    prompts = [(p["prompt"], p.get("input", "")) for p in load_prompt_set("presets")[:3]]
    gen = GenerationArgs(max_new_tokens=6, do_sample=True, temperature=0.9, top_p=0.9)
    for engine in (True, False):
        answers = SideBySideGenerator(trained_run.loaded, engine=engine).answer_batch(prompts, gen)
        assert len(answers) == 3 and all(len(pair) == 2 for pair in answers)


def test_a_suppressed_token_never_reaches_a_pane(trained_run):
    """A pad kft added to the vocabulary (kft.models.padding) is listed in generation_config.suppress_tokens: the
    engine's panes and batches never choose it, as transformers' generate does not."""
    generator = SideBySideGenerator(trained_run.loaded)
    gen = GenerationArgs(max_new_tokens=8)
    ids = generator.encode(PROMPT, "", gen)
    favourite = int(generator.pair_logits(ids)[0].argmax())
    config = trained_run.loaded.model.generation_config
    before = config.suppress_tokens
    config.suppress_tokens = [favourite]
    try:
        *_, last = generator.stream_rows(PROMPT, "", [None, "default"], gen)
        chosen = [int(t) for p in last[1] for t in p.ids[0, p.prompt_len:]]
    finally:
        config.suppress_tokens = before
    assert chosen and favourite not in chosen
