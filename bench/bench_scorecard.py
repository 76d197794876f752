"""The refusal scorecard of the 39 bundled presets: in batches (today's path) vs one prompt at a time (the old
path, panes taking turns), 256 new tokens, greedy, on one GPU or on the CPU. The one-at-a-time path runs the first
--single prompts and is scaled to 39 (each prompt costs about the same: 256 tokens a pane, no EOS from random weights).

    PYTHONPATH=.:bench python bench/bench_scorecard.py --model CKPT --out R.json [--backend unsloth] [--single 6]
    PYTHONPATH=.:bench python bench/bench_scorecard.py --model tiny --backend transformers --batch 4 --single 0 \
        --out R.json   # the tiny model on the CPU, as the app's scorecard runs it there (batches of 4)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--backend", default="unsloth")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--single", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    from bench_generate import with_random_lora

    loaded = with_random_lora(a.model, a.backend)
    import torch

    from kft.config.args import GenerationArgs
    from kft.inference.generate import SideBySideGenerator, generate_pair
    from kft.inference.safety import iter_scorecard, load_prompt_set, run_scorecard

    prompts, gen = load_prompt_set("presets"), GenerationArgs(max_new_tokens=a.tokens)
    generator = SideBySideGenerator(loaded)
    cuda = torch.cuda.is_available()
    card_name = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    result = {"backend": a.backend, "card": card_name, "prompts": len(prompts), "tokens": a.tokens}
    run_scorecard(generator, prompts[:2], GenerationArgs(max_new_tokens=8), batch_size=2)  # warm-up
    generate_pair(generator, prompts[0]["prompt"], "", GenerationArgs(max_new_tokens=8))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0, batches = time.perf_counter(), []
    for part in iter_scorecard(generator, prompts, gen, batch_size=a.batch):
        batches.append(round(time.perf_counter() - t0, 2))  # when each batch's progress reaches the page
        card = part
    result["batched"] = {"wall_s": round(time.perf_counter() - t0, 2), "rows": len(card.rows), "batch": a.batch,
                         "first_batch_s": batches[0], "batch_done_at_s": batches,
                         "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1024**3, 2) if cuda else None}
    if not a.single:
        Path(a.out).write_text(json.dumps(result, indent=2))
        print(json.dumps(result), flush=True)
        return
    t0, singles = time.perf_counter(), []
    for p in prompts[: a.single]:
        r = generate_pair(generator, p["prompt"], "", gen)
        singles.append((r.base, r.lora))
    wall = time.perf_counter() - t0
    result["one_at_a_time"] = {"prompts_run": a.single, "wall_s": round(wall, 2),
                               "scaled_to_all_s": round(wall / a.single * len(prompts), 1)}
    same = sum(b == (r["base_answer"], r["lora_answer"]) for b, r in zip(singles, card.rows, strict=False))
    result["same_answers_as_one_at_a_time"] = f"{same}/{a.single}"
    result["speedup"] = round(result["one_at_a_time"]["scaled_to_all_s"] / result["batched"]["wall_s"], 2)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
