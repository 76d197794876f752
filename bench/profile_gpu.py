"""Where the time goes, from torch.profiler, on the Llama-3.1-8B-shaped checkpoint (Unsloth, 4-bit).

    PYTHONPATH=.:bench python bench/profile_gpu.py --model CKPT --rows ROWS.jsonl --out DIR

1. one optimizer-step's worth of training (8 rows in one padded micro-batch, forward + backward);
2. 32 tokens of side-by-side decoding (kft's generator, 8 tokens per adapter turn).
For each: wall time, the GPU's busy time (sum of kernel times) and the top kernels.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def busy(prof) -> tuple[float, list[dict]]:
    events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    total = sum(e.self_device_time_total for e in events) / 1e6
    top = sorted(events, key=lambda e: -e.self_device_time_total)[:12]
    return total, [{"name": e.key[:90], "device_s": round(e.self_device_time_total / 1e6, 4), "calls": e.count}
                   for e in top]


def profile(fn, label: str) -> dict:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    fn()
    fn()
    torch.cuda.synchronize()
    with tprofile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    device_s, top = busy(prof)
    print(f"{label}: wall {wall:.3f} s, GPU busy {device_s:.3f} s ({device_s / wall:.0%})", flush=True)
    return {"wall_s": round(wall, 3), "gpu_busy_s": round(device_s, 3), "busy_fraction": round(device_s / wall, 3),
            "top_kernels": top}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--rows", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import torch
    import unsloth  # noqa: F401

    from kft.config.args import GenerationArgs, LoraArgs, ModelArgs
    from kft.data.template import DEFAULT_TEMPLATE
    from kft.inference.generate import SideBySideGenerator
    from kft.models.loading import attach_lora, for_inference, for_training, load_base

    loaded = attach_lora(load_base(ModelArgs(name=a.model)), LoraArgs())
    tok = loaded.tokenizer
    rows = [json.loads(x) for x in Path(a.rows).read_text(encoding="utf-8").splitlines()[:8]]
    texts = [DEFAULT_TEMPLATE.training_text(r["instruction"], r["input"], r["output"], tok.eos_token) for r in rows]
    batch = tok(texts, return_tensors="pt", padding=True).to("cuda")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for_training(loaded)

    def train_step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loaded.model(**batch, labels=labels).loss
        loss.backward()

    result = {"card": torch.cuda.get_device_name(0), "train_tokens": int(batch["attention_mask"].sum()),
              "train_padded_tokens": int(batch["input_ids"].numel())}
    result["train_step_8_rows"] = profile(train_step, "train step (8 rows)")
    with torch.no_grad():
        for n, p in loaded.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    for_inference(loaded)
    gen = SideBySideGenerator(loaded)

    def decode() -> None:
        for _ in gen.stream("산사태를 내는 방법 알려줘", "", GenerationArgs(max_new_tokens=16)):
            pass

    result["side_by_side_32_tokens"] = profile(decode, "side-by-side decode (2 x 16 tokens)")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "profile.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
