"""The base model's answers to the 39 preset prompts on the CPU, through kft's own load and batched decode (issue 25).

    HF_HUB_OFFLINE=1 nice -n 10 python bench/real_base_answers.py --model /work/qwen15-hf --out R.json \
        [--tokens 80] [--bf16] [--measure]

Loads the model with ``kft.models.loading.load_base`` (transformers backend; fp32, kft's CPU dtype), optionally casts
the weights to bf16 (``--bf16``: the engine then reads bf16 weights and keeps fp32 activations; about 3x faster
matrix products on this CPU), with ``--measure`` times the prefill and a few decode steps of 8 rows in each dtype, then answers every prompt greedily (the Korean Alpaca template, ``SideBySideGenerator.answer_batch`` with the
base row only) and writes prompt, label, answer and the detector's verdict.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def measure(gen, texts: list[str], steps: int = 4) -> dict:
    """Seconds for the prefill of every row together and per decode step (all rows), through the engine."""
    import torch

    from kft.engine.engine import cpu_threads

    enc = gen._left_padded(texts)
    ids, pad = enc["input_ids"], (enc["attention_mask"] == 0).sum(dim=1)
    engine = gen._engine(ids.shape[0], ids.shape[1] + steps + 1)
    with torch.inference_mode(), cpu_threads(engine.w):
        t0 = time.perf_counter()
        logits = engine.start(ids, pad, [None] * ids.shape[0])
        prefill = time.perf_counter() - t0
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            logits = engine.step(logits.argmax(-1))
            times.append(time.perf_counter() - t0)
    return {"rows": int(ids.shape[0]), "prompt_tokens": int(ids.shape[1]), "prefill_s": round(prefill, 2),
            "step_s": [round(t, 3) for t in times]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", type=int, default=80)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--measure", action="store_true")
    ns = ap.parse_args()

    import torch

    from kft.config.args import GenerationArgs, ModelArgs
    from kft.inference.generate import SideBySideGenerator
    from kft.inference.safety import detect_refusal, load_prompt_set
    from kft.models.loading import load_base

    t0 = time.perf_counter()
    loaded = load_base(ModelArgs(name=ns.model, backend="transformers"))
    load_s = time.perf_counter() - t0
    gen = SideBySideGenerator(loaded, adapter=None)
    prompts = load_prompt_set("presets")
    texts = [gen.template.generation_prompt(p["prompt"], p.get("input") or "") for p in prompts]
    timing: dict = {"load_s": round(load_s, 1)}
    if ns.measure:
        timing["fp32"] = measure(gen, texts[:8])
        print("fp32", timing["fp32"], flush=True)
    if ns.bf16:
        import kft.engine.engine as engines

        loaded.model.to(torch.bfloat16)
        engines._ENGINES = None  # its engines hold the fp32 weights (their key names the adapters' weights only)
        if ns.measure:
            timing["bf16"] = measure(gen, texts[:8])
            print("bf16", timing["bf16"], flush=True)
    t0 = time.perf_counter()
    answers = gen.answer_batch([(p["prompt"], p.get("input") or "") for p in prompts],
                               GenerationArgs(max_new_tokens=ns.tokens, do_sample=False), adapters=[None])
    total = time.perf_counter() - t0
    rows = []
    for p, (answer,) in zip(prompts, answers, strict=True):
        verdict = detect_refusal(answer)
        rows.append({"prompt": p["prompt"], "label": p["label"], "category": p.get("category"), "answer": answer,
                     "answer_tokens": len(loaded.tokenizer(answer)["input_ids"]),
                     "detector_refusal": verdict.refusal, "detector_matched": verdict.matched})
    out = {
        "machine": f"CPU only: {torch.get_num_threads()} threads on a 2-core shared {platform.processor() or 'x86_64'}"
                   " host (other engineers' jobs ran beside it), nice 10",
        "model": ns.model, "backend": loaded.backend, "pad": loaded.pad.to_json() if loaded.pad else None,
        "weights_dtype": "bfloat16" if ns.bf16 else "float32", "activations_dtype": "float32",
        "decoding": {"greedy": True, "max_new_tokens": ns.tokens, "template": "kft DEFAULT_TEMPLATE (Korean Alpaca)",
                     "batch": f"all {len(prompts)} prompts as rows of one left-padded batch (answer_batch)"},
        "timing": {**timing, "answer_batch_s": round(total, 1),
                   "s_per_step_all_rows": round(total / ns.tokens, 2),
                   "s_per_token_per_row": round(total / ns.tokens / len(prompts), 3)},
        "rows": rows,
    }
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out["timing"]), flush=True)


if __name__ == "__main__":
    main()
