"""The refusal scorecard of the 39 bundled presets: in batches (today's path) vs one prompt at a time (the old
path, panes taking turns), 256 new tokens, greedy, on one GPU or on the CPU. The one-at-a-time path runs the first
--single prompts and is scaled to 39 (each prompt costs about the same: 256 tokens a pane, no EOS from random weights).

    PYTHONPATH=.:bench python bench/bench_scorecard.py --model CKPT --out R.json [--backend unsloth] [--single 6]
    PYTHONPATH=.:bench python bench/bench_scorecard.py --model tiny --backend transformers --batch 4 --single 0 \
        --out R.json   # the tiny model on the CPU, through the generator (batches of --batch prompts)
    PYTHONPATH=.:bench python bench/bench_scorecard.py --service --out R.json [--repeats 3] [--steps 10]
        # the app's scorecard end to end on the CPU: kft.services.ComparisonService.scorecard with the UI's default
        # generation settings (GenerationArgs(): 256 new tokens, greedy), the tiny model and an adapter of a short
        # run trained here; the first scorecard includes loading the base and the adapter, later ones do not
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def service(a: argparse.Namespace) -> None:
    """The scorecard as the comparison tab runs it, timed from the request to the last batch's progress."""
    import tempfile

    import torch

    from kft.config.args import GenerationArgs, RunConfig
    from kft.inference.safety import load_prompt_set
    from kft.services.comparison import AdapterChoice
    from kft.services.limits import Limits
    from kft.services.workspace import Workspace
    from kft.training.job import TrainingJob

    data = Path(tempfile.mkdtemp(prefix="kft-bench-"))
    cfg = RunConfig()
    cfg.model.name, cfg.model.max_seq_length, cfg.data.source = "tiny", 512, "sample"
    cfg.train.max_steps, cfg.train.learning_rate, cfg.lora.use_gradient_checkpointing = a.steps, 1e-2, False
    ws = Workspace(data, Limits())
    job = TrainingJob(cfg, ws.runs_dir / "r1").start()
    assert job.join(600) and job.snapshot().status == "completed", job.snapshot().error
    del job
    prompts, gen = load_prompt_set("presets"), GenerationArgs()  # the UI's defaults
    result = {"card": f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)", "prompts": len(prompts),
              "gen": vars(gen), "load_before": os.getloadavg(), "runs": []}
    for _ in range(a.repeats):
        t0, at = time.perf_counter(), []
        for n, card in ws.comparison.scorecard(AdapterChoice("run", "r1"), prompts, gen):
            at.append((n, round(time.perf_counter() - t0, 2)))
            rows = len(card.rows)
        result["runs"].append({"wall_s": at[-1][1], "progress_at_s": at, "rows": rows,
                               "load": os.getloadavg()[0]})
        print(json.dumps(result["runs"][-1]), flush=True)
    result["load_after"] = os.getloadavg()
    Path(a.out).write_text(json.dumps(result, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--service", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--out", required=True)
    ap.add_argument("--backend", default="unsloth")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--single", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    if a.service:
        service(a)
        return
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
