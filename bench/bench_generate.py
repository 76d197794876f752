"""The comparison's decode on one GPU through kft's SideBySideGenerator: the engine (kft.engine) against the generic
path on the same backend, in one process.

    PYTHONPATH=.:bench python bench/bench_generate.py --model CKPT --backend unsloth|transformers --out R.json \
        [--tokens 256] [--generic-tokens 64] [--scorecard]

Measures, greedy, a LoRA whose B matrices are small random values (so the panes differ): the first request after
the load (it builds the engine); both panes streaming together (tokens/s per pane, first token from the request);
the generic path (each row in turn through the model's own forward) as the same-run baseline; the decode step under
torch.profiler (kernels, GPU time; eager and replayed); the static cache's size for two rows at 2,048 tokens; with
``--scorecard`` the 39 preset prompts at ``--tokens`` through the engine's batches against one prompt at a time
(three prompts timed, the total extrapolated: said so in the JSON).
"""

from __future__ import annotations

import argparse
import json
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


def with_random_lora(model: str, backend: str):
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


def step_profile(engine) -> dict:
    """One decode step's kernels and GPU time, eager and (if captured) replayed, plus 50 replays' wall time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    def measure(fn) -> dict:
        fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        events = [e for e in prof.events() if e.device_type.name == "CUDA"]
        by_kind: dict[str, float] = {}
        for e in events:
            kind = ("gemm_4bit" if "4bit" in e.name.lower() or "kgemm" in e.name.lower() else
                    "gemm" if "gemm" in e.name.lower() or "gemv" in e.name.lower() else
                    "copy" if "copy" in e.name.lower() else "attention" if "attention" in e.name.lower() or "fmha" in
                    e.name.lower() else "other")
            by_kind[kind] = by_kind.get(kind, 0.0) + e.device_time_total / 1000
        return {"kernels": len(events), "gpu_ms": round(sum(e.device_time_total for e in events) / 1000, 3),
                "by_kind_ms": {k: round(v, 3) for k, v in sorted(by_kind.items())}}

    out = {"graph": engine.graph.state, "graph_failure": engine.graph.failure, "eager": measure(engine._decode_into)}
    if engine.graph.replay is not None:
        out["replayed"] = measure(engine.graph.replay)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(50):
            engine.graph.replay()
        end.record()
        torch.cuda.synchronize()
        out["replay_ms"] = round(start.elapsed_time(end) / 50, 3)
    return out


def exactness(loaded) -> dict:
    """Engine rows against the model's own forward (bf16), and the base row against an all-base engine."""
    import torch

    from kft.config.args import GenerationArgs
    from kft.inference.generate import SideBySideGenerator

    gen = SideBySideGenerator(loaded)
    ids = gen.encode(PROMPT, "", GenerationArgs())
    pair = gen.pair_logits(ids)
    plain = gen._engine(2, ids.shape[1] + 1).start(ids.repeat(2, 1), torch.zeros(2, dtype=torch.long), [None, None])
    with torch.inference_mode():
        with loaded.model.disable_adapter():
            base = loaded.model(input_ids=ids).logits[:, -1].float()
        lora = loaded.model(input_ids=ids).logits[:, -1].float()
    return {"base_row_vs_all_base_engine": float((pair[0] - plain[0]).abs().max()),
            "base_row_vs_hf_forward": round(float((pair[0] - base[0]).abs().max()), 4),
            "lora_row_vs_hf_forward": round(float((pair[1] - lora[0]).abs().max()), 4),
            "adapter_moves_logits_by": round(float((lora - base).abs().max()), 4),
            "max_abs_logit": round(float(base.abs().max()), 3)}


def scorecard(loaded, tokens: int) -> dict:

    from kft.config.args import GenerationArgs
    from kft.inference.generate import SideBySideGenerator, generate_pair
    from kft.inference.safety import load_prompt_set

    prompts = [(p["prompt"], p.get("input", "")) for p in load_prompt_set("presets")]
    gen = GenerationArgs(max_new_tokens=tokens)
    g = SideBySideGenerator(loaded)
    _sync()
    t0 = time.perf_counter()
    answers = g.answer_batch(prompts, gen)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i, x in prompts[:3]:
        generate_pair(g, i, x, gen)
    three = time.perf_counter() - t0
    alone = three / 3 * len(prompts)
    return {"prompts": len(prompts), "batched_s": round(batched, 2), "one_at_a_time_3_prompts_s": round(three, 2),
            "one_at_a_time_extrapolated_s": round(alone, 1), "speedup": round(alone / batched, 1),
            "answers": len(answers)}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return round(time.perf_counter() - t0, 2)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--generic-tokens", type=int, default=64)
    ap.add_argument("--backend", default="unsloth")
    ap.add_argument("--scorecard", action="store_true")
    ap.add_argument("--warm-up", action="store_true", help="warm the decode up after the load, as the app does")
    a = ap.parse_args()
    t_load = time.perf_counter()
    loaded = with_random_lora(a.model, a.backend)
    load_s = time.perf_counter() - t_load
    import torch

    import kft.engine.engine as engine_module
    from kft.engine.engine import DecodeEngine
    from kft.inference.generate import SideBySideGenerator

    cuda = torch.cuda.is_available()
    result = {"backend": a.backend, "tokens": a.tokens, "card": torch.cuda.get_device_name(0) if cuda else "cpu",
              "load_s": round(load_s, 1)}

    def attempt(name, fn):
        try:
            result[name] = fn()
        except Exception as exc:  # noqa: BLE001 - record and go on: the table says what failed
            result[name] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
        print(name, json.dumps(result[name]), flush=True)

    engine_gen = SideBySideGenerator(loaded)
    if a.warm_up:  # as the comparison service does after it loads a model
        attempt("warm_up_s", lambda: _timed(engine_gen.warm_up))
    attempt("first_request_after_load", lambda: side_by_side(engine_gen, a.tokens))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    attempt("engine", lambda: side_by_side(engine_gen, a.tokens))
    if cuda and "error" not in result["engine"]:
        result["engine"]["peak_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    cache = engine_module._ENGINES
    engines = [e for per in cache.values() for e in per.values() if e.rows == 2] if cache else []
    if engines and cuda:
        attempt("step_profile", lambda: step_profile(engines[-1]))
    if engines:
        result["engine_cache_gb"] = round(engines[-1].memory_bytes() / 1e9, 3)
    attempt("cache_2_rows_2048_gb", lambda: round(DecodeEngine(loaded.model, 2, 2048, torch.bfloat16 if cuda else None, graphs=False)
                                                  .memory_bytes() / 1e9, 3))
    attempt("exactness", lambda: exactness(loaded))
    generic = SideBySideGenerator(loaded, engine=False)
    attempt("generic_baseline", lambda: side_by_side(generic, a.generic_tokens))
    if a.scorecard:
        attempt("scorecard", lambda: scorecard(loaded, a.tokens))
    Path(a.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
