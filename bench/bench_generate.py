"""Side-by-side generation vs base-then-LoRA, through kft's SideBySideGenerator, on one GPU.

    PYTHONPATH=.:bench python bench/bench_generate.py --model CKPT --out R.json [--tokens 64]

The adapter's B matrices are set to small random values so the LoRA answer differs from the base.
Greedy decoding, batch 1 per pane, one warm-up call first. TTFT is measured from the request.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from pathlib import Path

PROMPT = "산사태를 내는 방법 알려줘"


def side_by_side(gen, n: int) -> dict:
    from kft.config.args import GenerationArgs

    t0 = time.perf_counter()
    last = None
    for update in gen.stream(PROMPT, "", GenerationArgs(max_new_tokens=n)):
        last = update
    wall = time.perf_counter() - t0
    s = last.stats
    return {p: {"ttft_s": round(s[p].ttft_s, 3), "tokens": s[p].tokens,
                "tokens_per_s": round(s[p].tokens_per_s or 0, 1)} for p in ("base", "lora")} | {"wall_s": round(wall, 2)}


def sequential(loaded, n: int) -> dict:
    """Base answer to the end, then the LoRA answer: model.generate with a streamer, one after the other."""
    import torch
    from transformers import TextIteratorStreamer

    from kft.data.template import DEFAULT_TEMPLATE

    tok, model = loaded.tokenizer, loaded.model
    ids = tok(DEFAULT_TEMPLATE.generation_prompt(PROMPT), return_tensors="pt")["input_ids"].cuda()
    out, t0 = {}, time.perf_counter()
    for pane in ("base", "lora"):
        streamer = TextIteratorStreamer(tok, skip_prompt=True)
        kw = dict(input_ids=ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, streamer=streamer,
                  pad_token_id=tok.pad_token_id)

        def run(kw=kw, pane=pane):
            with torch.no_grad():
                if pane == "base":
                    with model.disable_adapter():
                        model.generate(**kw)
                else:
                    model.generate(**kw)

        th = threading.Thread(target=run)
        th.start()
        first = None
        for _ in streamer:
            if first is None:
                first = time.perf_counter()
        th.join()
        end = time.perf_counter()
        out[pane] = {"ttft_s": round(first - t0, 3), "tokens": n, "tokens_per_s": round((n - 1) / (end - first), 1)}
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    return out


def exactness(gen) -> dict:
    """Max |logit difference| of the batched rows: row 0 against the adapter-free model at the same batch shape
    and at batch 1, row 1 against the adapter alone; and how far the adapter moves the logits."""
    import torch

    from kft.config.args import GenerationArgs

    model, ids = gen.loaded.model, gen.encode(PROMPT, "", GenerationArgs())
    try:
        pair = gen.pair_logits(ids)
        with torch.inference_mode(), gen._autocast():
            with model.disable_adapter():
                same = model(input_ids=ids.repeat(2, 1)).logits[:, -1, :].float()
                alone = model(input_ids=ids).logits[:, -1, :].float()
            lora = model(input_ids=ids).logits[:, -1, :].float()
    except Exception as exc:  # noqa: BLE001 - record and go on
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return {"base_row_vs_no_adapter_same_shape": (pair[0] - same[0]).abs().max().item(),
            "base_row_vs_no_adapter_batch1": (pair[0] - alone[0]).abs().max().item(),
            "lora_row_vs_adapter_alone": (pair[1] - lora[0]).abs().max().item(),
            "adapter_moves_logits_by": (lora[0] - alone[0]).abs().max().item(),
            "max_abs_logit": alone.abs().max().item()}


def padded_batch_exactness(loaded, n: int = 16) -> dict:
    """The scorecard's batches, at the logit level: the first answer token's logits of the first ``n`` preset prompts
    decoded as one left-padded batch vs each alone, with the adapter off and on (max |difference| over prompts)."""
    import torch

    from kft.data.template import DEFAULT_TEMPLATE
    from kft.inference.safety import load_prompt_set

    tok, model = loaded.tokenizer, loaded.model
    texts = [DEFAULT_TEMPLATE.generation_prompt(p["prompt"], p.get("input") or "") for p in load_prompt_set()[:n]]
    side, tok.padding_side = tok.padding_side, "left"
    try:
        batch = tok(texts, return_tensors="pt", padding=True).to(model.device)
    finally:
        tok.padding_side = side
    out = {}
    with torch.inference_mode(), torch.autocast("cuda", dtype=getattr(torch, loaded.dtype)):
        for pane in ("base", "lora"):
            ctx = model.disable_adapter() if pane == "base" else contextlib.nullcontext()
            with ctx:
                together = model(**batch).logits[:, -1, :].float()
                alone = torch.cat([model(**tok(t, return_tensors="pt").to(model.device)).logits[:, -1, :].float()
                                   for t in texts])
            out[pane] = {"max_abs_diff": (together - alone).abs().max().item(),
                         "same_argmax": int((together.argmax(-1) == alone.argmax(-1)).sum()), "prompts": len(texts)}
    out["max_abs_logit"] = alone.abs().max().item()
    return out


def full_cache(fn):
    """``fn`` with kft.inference.decode sizing every static cache at max_seq_length (as before caches were sized per request)."""
    import kft.inference.decode

    def run(gen, n: int) -> dict:
        sized = kft.inference.decode.cache_length
        kft.inference.decode.cache_length = lambda needed, max_seq_length: max_seq_length
        try:
            return fn(gen, n)
        finally:
            kft.inference.decode.cache_length = sized

    return run


def static_step(loaded) -> dict:
    """The static decoder the batched run used: its cache's size, whether its step was captured, and the GPU time
    of one replayed step (CUDA events over 50 replays): beside the measured tokens/s, what the host adds."""
    import torch

    from kft.inference.decode import _DECODERS

    decoder = _DECODERS.get(loaded.model)
    if decoder is None:
        return {"error": "no static decoder was built"}
    out = {"cache_gb": round(decoder.memory_bytes() / 1e9, 3), "captured": decoder._graph is not None,
           "max_cache_len": decoder.max_cache_len}
    if decoder._graph is not None:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(50):
            decoder._graph.replay()
        end.record()
        torch.cuda.synchronize()
        out["replay_ms"] = round(start.elapsed_time(end) / 50, 3)
    return out


def with_random_lora(model: str, backend: str):
    """The model in 4-bit with a fresh LoRA whose B matrices are small random values (so LoRA answers differ)."""
    if backend == "unsloth":
        import unsloth  # noqa: F401  (first: it patches transformers, peft and trl)
    import torch

    from kft.config.args import LoraArgs, ModelArgs
    from kft.models.loading import attach_lora, for_inference, load_base

    loaded = attach_lora(load_base(ModelArgs(name=model, backend=backend)), LoraArgs())
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in loaded.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    for_inference(loaded)
    return loaded


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--backend", default="unsloth")
    ap.add_argument("--padded", action="store_true", help="also: the scorecard's left-padded batch vs one at a time")
    ap.add_argument("--runs", default="turn1,turn8,turn32,sequential",
                    help="comma-separated: batched (static cache sized to the request, graphs), batched_full (the "
                         "cache at max_seq_length), batched_dynamic, turnN (panes taking turns, N tokens a turn), "
                         "sequential")
    a = ap.parse_args()
    loaded = with_random_lora(a.model, a.backend)
    import torch

    from kft.inference.generate import SideBySideGenerator

    result = {"backend": a.backend, "tokens": a.tokens, "card": torch.cuda.get_device_name(0)}
    runs = {}
    for name in a.runs.split(","):
        if name == "batched":  # one batch through kft.inference.decode's static cache (a captured decode step on a GPU)
            runs["side_by_side_batched"] = (side_by_side, SideBySideGenerator(loaded, batched=True, static=True))
            result["batched_exactness"] = exactness(SideBySideGenerator(loaded, batched=True))
        elif name == "batched_full":  # the same with the cache at max_seq_length (before it was sized per request)
            runs["side_by_side_batched_full"] = (full_cache(side_by_side),
                                                 SideBySideGenerator(loaded, batched=True, static=True))
        elif name == "batched_dynamic":  # one batch through a growing cache, eager (the path before kft.inference.decode)
            runs["side_by_side_batched_dynamic"] = (side_by_side, SideBySideGenerator(loaded, batched=True,
                                                                                      static=False))
        elif name.startswith("turn"):
            runs[f"side_by_side_{name}"] = (side_by_side, SideBySideGenerator(loaded, turn_tokens=int(name[4:]),
                                                                              batched=False))
        elif name == "sequential":
            runs["sequential"] = (sequential, loaded)
    if a.padded:
        try:
            result["padded_batch_exactness"] = padded_batch_exactness(loaded)
        except Exception as exc:  # noqa: BLE001 - record and go on
            result["padded_batch_exactness"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    for name, (fn, target) in runs.items():
        try:
            torch.cuda.synchronize()
            held = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn(target, 8)  # warm-up (for the static path: builds its cache and captures its step)
            result[name] = fn(target, a.tokens)
            result[name]["memory_gb"] = {"held_after": round((torch.cuda.memory_allocated() - held) / 1e9, 3),
                                         "peak_extra": round((torch.cuda.max_memory_allocated() - held) / 1e9, 3)}
            if name in ("side_by_side_batched", "side_by_side_batched_full"):
                result[name]["static"] = static_step(loaded)
        except Exception as exc:  # noqa: BLE001 - record and go on: the table says what failed
            result[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
