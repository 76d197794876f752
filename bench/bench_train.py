"""Training throughput of one path, through kft's own TrainingJob, in its own process.

    PYTHONPATH=.:bench python bench/bench_train.py --path unsloth|baseline|fast --model CKPT --data ROWS.jsonl --steps N --out R.json

unsloth  = the project's default path (Unsloth 4-bit, seed configuration)
baseline = plain transformers + PEFT + bitsandbytes nf4 QLoRA (this process never imports unsloth); tf_seed is the same
tf_fast  = the "fast" preset on that backend
fast     = the project's "fast" preset on Unsloth (8 rows in one padding-free micro-batch)
fast_padded = the same 8 rows in one padded micro-batch
fast_gc  = fast with gradient checkpointing kept on the GPU (no offload of activations to CPU memory)
fast_nogc = fast without gradient checkpointing (no recomputation; more memory)
Modifiers after '+' (bench_train.config_for): padded, gpu_gc, nogc, gc=N, optim=NAME, fused, pad=N.
Steady-state figures are taken between step WARM and the last step (compilation excluded); the time to
the first finished step is measured from Start (load + compile included).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

WARM = 5


ALIASES = {"fast_padded": "fast+padded", "fast_gc": "fast+gpu_gc", "fast_nogc": "fast+nogc", "baseline": "tf_seed"}


def config_for(path: str, model: str, data: str, steps: int):
    """The RunConfig of ``path``: a base (unsloth = seed, fast, tf_seed, tf_fast) and modifiers joined by '+':
    padded (no padding-free), gpu_gc (checkpointing on the GPU, not offloaded), nogc, gc=N (only N layers
    checkpoint, on the GPU), optim=NAME, fused (optim adamw_torch_fused), pad=N (pad_to_multiple_of)."""
    from kft.config.args import RunConfig
    from kft.config.presets import apply_preset

    base, *mods = ALIASES.get(path, path).split("+")
    cfg = RunConfig()
    cfg.model.name, cfg.data.source, cfg.train.max_steps = model, data, steps
    cfg.model.backend = cfg_backend(path)
    if cfg.model.backend == "transformers":
        cfg.lora.use_gradient_checkpointing = True
    if base in ("fast", "tf_fast"):
        apply_preset(cfg, "fast")
    elif base not in ("unsloth", "tf_seed", "seed"):
        raise SystemExit(f"unknown path {path!r}")
    for mod in mods:
        key, _, value = mod.partition("=")
        if key == "padded":
            cfg.train.padding_free = False
        elif key == "gpu_gc":
            cfg.lora.use_gradient_checkpointing = True
        elif key == "nogc":
            cfg.lora.use_gradient_checkpointing = False
        elif key == "gc":
            cfg.lora.use_gradient_checkpointing, cfg.lora.checkpoint_layers = True, int(value)
        elif key == "optim":
            cfg.train.optim = value
        elif key == "pad":
            cfg.train.pad_to_multiple_of = int(value)
        elif key == "fused":
            cfg.train.optim = "adamw_torch_fused"
        else:
            raise SystemExit(f"unknown modifier {mod!r} in {path!r}")
    return cfg


def cfg_backend(path: str) -> str:
    return "transformers" if ALIASES.get(path, path).startswith("tf_") else "unsloth"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if cfg_backend(a.path) == "unsloth":
        import unsloth  # noqa: F401  (before trl/transformers/peft)
    from kft.config.validation import validate
    from kft.runs.store import RunDir
    from kft.training.job import TrainingJob

    run = RunDir(Path(a.out).with_suffix("") / f"run-{int(time.time())}")
    t0 = time.time()
    config = validate(config_for(a.path, a.model, a.data, a.steps))  # the job trusts its config: check it here
    job = TrainingJob(config, run.path).start()
    job.join()
    snap = job.snapshot()
    rows = [r for r in run.read_metrics() if "loss" in r]
    info = run.read_json() or {}
    result = {"path": a.path, "status": snap.status, "error": snap.error, "backend": info.get("backend"),
              "steps": len(rows), "first_step_s": round(rows[0]["time"], 1) if rows else None,
              "peak_reserved_gb": (info.get("memory") or {}).get("peak_reserved_gb"),
              "losses": [round(r["loss"], 4) for r in rows], "wall_s": round(time.time() - t0, 1)}
    if len(rows) > WARM + 1:
        w, z = rows[WARM - 1], rows[-1]
        dt = z["time"] - w["time"]
        result.update(s_per_step=round(dt / (z["step"] - w["step"]), 3),
                      tokens_per_s=round((z["tokens_seen"] - w["tokens_seen"]) / dt, 1),
                      rows_per_step=config_for(a.path, a.model, a.data, 1).train.per_device_train_batch_size
                      * config_for(a.path, a.model, a.data, 1).train.gradient_accumulation_steps)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "losses"}), flush=True)


if __name__ == "__main__":
    main()
