"""kft.engine on the GPU, on the Llama-3.1-8B-shaped random checkpoint in 4-bit, for a model loaded by Unsloth and one
loaded by transformers + PEFT + bitsandbytes, in one process with Unsloth imported first (tests/gpu/conftest.py).

Tolerances: the engine keeps its activations in bf16 (fp16 for the T4 case) where the HF forward of the transformers
backend keeps them in fp32 (PEFT's prepare_model_for_kbit_training casts the embedding, norms and lm_head to fp32), and
this checkpoint's random weights give nearly flat logits: the two are compared within 10% of the largest logit (seen on
the H200 on 2026-12-02: 0.354 at logits up to 6.3, 5.6%, with the adapter moving them by 3.4);
the replayed step against the eager one within 0.1% (the same kernels: expected 0); the base row against an all-base
engine exactly.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu
STEPS = 16
PROMPT = "### instruction:\n산사태를 내는 방법 알려줘\n\n### output:\n"


def _loaded(llama8b_dir, backend: str, dtype: str = "bfloat16"):
    import torch

    from kft.config.args import LoraArgs, ModelArgs
    from kft.models.loading import attach_lora, for_inference, load_base

    loaded = attach_lora(load_base(ModelArgs(name=str(llama8b_dir), backend=backend, dtype=dtype)), LoraArgs())
    g = torch.Generator(device="cpu").manual_seed(0)
    with torch.no_grad():
        for name, p in loaded.model.named_parameters():
            if "lora_B" in name:
                p.copy_((torch.randn(p.shape, generator=g) * 0.02).to(p.dtype))
    for_inference(loaded)
    return loaded


def _engine_run(loaded, rows, graphs: bool, feed=None, capturer=None):
    import torch

    from kft.engine.engine import DecodeEngine

    ids = loaded.tokenizer(PROMPT, return_tensors="pt")["input_ids"].to(loaded.device).repeat(len(rows), 1)
    engine = DecodeEngine(loaded.model, len(rows), 256, getattr(torch, loaded.dtype), graphs=graphs, capturer=capturer)
    out, fed = [], []
    logits = engine.start(ids, torch.zeros(len(rows), dtype=torch.long), rows)
    for i in range(STEPS):
        out.append(logits.clone())
        token = feed[i] if feed else logits.argmax(-1)
        fed.append(token)
        logits = engine.step(token)
    return engine, ids, out, fed


def _hf(loaded, ids, fed, adapter):
    import torch

    seq = torch.cat([ids[:1], torch.stack([t[:1] for t in fed[:-1]], dim=1)], dim=1)
    model = loaded.model
    with torch.inference_mode():
        if adapter is None:
            with model.disable_adapter():
                logits = model(input_ids=seq).logits.float()
        else:
            logits = model(input_ids=seq).logits.float()
    t = ids.shape[1]
    return [logits[0, t - 1 + i] for i in range(STEPS)]


@pytest.fixture(scope="module", params=["unsloth", "transformers"])
def loaded(request, llama8b_dir):

    from kft.system.hardware import has_package

    if request.param == "unsloth" and not has_package("unsloth"):
        pytest.skip("unsloth is not installed")
    model = _loaded(llama8b_dir, request.param)
    yield model
    del model
    _free()


def _free() -> None:
    """Give the memory back (engines and their graphs hold cycles): the seed run's memory test reads the reserved
    memory of the whole process."""
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()


def test_the_engine_matches_the_hf_forward_and_its_replay_matches_its_eager_step(loaded):
    engine, ids, graphed, fed = _engine_run(loaded, [None, "default"], graphs=True)
    assert engine.graph.state == "captured", engine.graph.failure
    _, _, eager, _ = _engine_run(loaded, [None, "default"], graphs=False, feed=fed)
    scale = max(float(g.abs().max()) for g in graphed)
    replay_vs_eager = max(float((g - e).abs().max()) for g, e in zip(graphed, eager, strict=True))
    # the HF forward fed each row's own tokens: row 0 (base) and row 1 (LoRA)
    base_ref = _hf(loaded, ids, [t[0:1] for t in fed], None)
    lora_ref = _hf(loaded, ids, [t[1:2] for t in fed], "default")
    base_err = max(float((g[0] - r).abs().max()) for g, r in zip(graphed, base_ref, strict=True))
    lora_err = max(float((g[1] - r).abs().max()) for g, r in zip(graphed, lora_ref, strict=True))
    moved = max(float((b - r).abs().max()) for b, r in zip(base_ref, lora_ref, strict=True))
    print(f"{loaded.backend}: replay vs eager {replay_vs_eager:.3e}; engine vs HF base {base_err:.3e}, "
          f"LoRA {lora_err:.3e}; the adapter moves logits by {moved:.3e}; logits up to {scale:.2f}")
    assert replay_vs_eager <= 1e-3 * scale
    assert base_err <= 0.10 * scale and lora_err <= 0.10 * scale
    assert moved > max(base_err, lora_err)


def test_the_base_row_beside_a_lora_row_is_exactly_the_all_base_engine(loaded):
    _, _, mixed, fed = _engine_run(loaded, [None, "default"], graphs=True)
    _, _, plain, _ = _engine_run(loaded, [None, None], graphs=True, feed=fed)
    assert max(float((m[0] - p[0]).abs().max()) for m, p in zip(mixed, plain, strict=True)) == 0.0


def test_a_failed_capture_costs_speed_and_leaves_the_random_generator_and_training_working(loaded):
    """A capture forced to fail (a host read inside the captured step) falls back to eager with the right logits;
    afterwards a random op and a training step (forward, backward, optimizer step on the LoRA) still work."""
    import torch

    from kft.engine.graphs import CudaCapture

    class Failing(CudaCapture):
        def capture(self, fn):
            def bad():
                fn()
                torch.zeros(1, device=self.device).item()  # not allowed while capturing
            return super().capture(bad)

    _, _, eager, fed = _engine_run(loaded, [None, "default"], graphs=False)
    engine, _, got, _ = _engine_run(loaded, [None, "default"], graphs=True, feed=fed,
                                    capturer=Failing(loaded.device))
    assert engine.graph.state == "failed" and engine.graph.failure
    assert max(float((g - e).abs().max()) for g, e in zip(got, eager, strict=True)) == 0.0
    torch.randn(8, device=loaded.device).normal_()
    torch.nn.functional.dropout(torch.ones(64, device=loaded.device), 0.5, training=True)
    model = loaded.model
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-5)
    ids = loaded.tokenizer(PROMPT, return_tensors="pt")["input_ids"].to(loaded.device)
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    model.eval()
    assert torch.isfinite(loss)


def test_fp16_the_t4_dtype_matches_its_own_eager_step(llama8b_dir):
    """The T4 computes in fp16 (no bf16 there): the same engine in fp16 on this card, replay against eager."""
    import torch

    loaded = _loaded(llama8b_dir, "transformers", "float16")
    engine, _, graphed, fed = _engine_run(loaded, [None, "default"], graphs=True)
    _, _, eager, _ = _engine_run(loaded, [None, "default"], graphs=False, feed=fed)
    scale = max(float(g.abs().max()) for g in graphed)
    assert engine.dtype == torch.float16 and engine.graph.state == "captured", engine.graph.failure
    assert all(torch.isfinite(g).all() for g in graphed)
    assert max(float((g - e).abs().max()) for g, e in zip(graphed, eager, strict=True)) <= 1e-3 * scale
    del loaded, engine
    _free()
