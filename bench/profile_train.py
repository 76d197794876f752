"""Where a whole training step goes: kft's TrainingJob and TRL's SFTTrainer under torch.profiler.

    PYTHONPATH=.:bench python bench/profile_train.py --paths seed,fast,fast+gc=16 --model CKPT --data ROWS.jsonl --out DIR

For each path (bench_train.config_for; one process, one backend), runs ``--steps`` optimizer steps through kft's
own TrainingJob, times the steps outside the profiled window, records steps WAIT+2 .. WAIT+1+ACTIVE with
torch.profiler, and names each part of the step with a ``record_function`` range put around the Trainer's
pieces here (kft's own pieces carry their marks in the code: ``kft.collate``, ``kft.on_step_end``, ``kft.on_log``):

    step.data       fetching the micro-batches (collator, num_items_in_batch)
    step.forward    compute_loss: the model's forward, the loss and TRL's per-step metrics
    step.backward   accelerator.backward (the kernels run on autograd's thread: counted as backward)
    step.clip       gradient norm and clipping
    step.optimizer  optimizer.step + scheduler + zero_grad
    step.log        _maybe_log_save_evaluate: logging (the loss .item()), checkpoints, callbacks' on_log

Then the model alone: forward + backward of the same collated micro-batches (no metrics, no optimizer), timed
with the GPU synchronised before and after. ``outside_share`` = 1 - model-alone time / step time: the part of
the step that is not the model's forward and backward (per token: the batches differ). Writes ``<tag>_<path>.json``
into DIR; run it on an older kft (PYTHONPATH) for a same-run "before".
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WAIT = 4  # steps before the profiler records (the first steps compile)
ACTIVE = 3  # steps recorded (after one warm-up step); the steps after them are timed without the profiler

RANGES = ("step.data", "step.forward", "step.backward", "step.clip", "step.optimizer", "step.log")


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _mark(obj: Any, attr: str, label: str) -> None:
    """Wrap ``obj.attr`` in a record_function range named ``label`` (in this process only)."""
    from torch.profiler import record_function

    inner = getattr(obj, attr)

    def wrapped(*a, **kw):
        with record_function(label):
            return inner(*a, **kw)

    setattr(obj, attr, wrapped)


class _Profiler:
    """A TrainerCallback that marks the trainer's pieces and steps the profiler at each optimizer step."""

    def __init__(self, wait: int, active: int) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile, schedule

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        self.prof = profile(activities=acts, schedule=schedule(wait=wait, warmup=1, active=active, repeat=1))
        self.step_times: list[float] = []
        self._t = 0.0
        self.trainer = None

    # transformers' TrainerCallback protocol, duck-typed (the job adds it after its own recorder)
    def __getattr__(self, name: str):
        if name.startswith("on_"):
            return lambda *a, **kw: None
        raise AttributeError(name)

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):  # noqa: ANN001
        t = self.trainer
        _mark(t, "get_batch_samples", "step.data")
        _mark(t, "compute_loss", "step.forward")
        _mark(t.accelerator, "backward", "step.backward")
        _mark(t.accelerator, "clip_grad_norm_", "step.clip")
        _mark(optimizer, "step", "step.optimizer")
        _mark(lr_scheduler, "step", "step.optimizer")
        _mark(t.model, "zero_grad", "step.optimizer")
        _mark(t, "_maybe_log_save_evaluate", "step.log")
        self.prof.start()
        _sync()
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
        self.step_times.append(time.perf_counter() - self._t)
        self.prof.step()  # when the active steps end this collects the trace: not counted in any step
        self._t = time.perf_counter()

    def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
        self.prof.stop()


def breakdown(prof, steps: int) -> dict[str, Any]:
    """Per recorded step: CPU wall in each range and the GPU kernel time launched from it (ms)."""
    avg = {e.key: e for e in prof.key_averages()}
    gpu_total = sum(e.self_device_time_total for e in prof.key_averages()) / 1e3 / steps
    out: dict[str, Any] = {"gpu_busy_ms": round(gpu_total, 2), "ranges": {}}
    main = 0.0
    for r in RANGES:
        e = avg.get(r)
        cpu = e.cpu_time_total / 1e3 / steps if e else 0.0
        gpu = e.device_time_total / 1e3 / steps if e else 0.0
        if r != "step.backward":
            main += gpu
        out["ranges"][r] = {"cpu_ms": round(cpu, 2), "gpu_ms": round(gpu, 2), "calls": e.count // steps if e else 0}
    out["ranges"]["step.backward"]["gpu_ms"] = round(max(gpu_total - main, 0.0), 2)  # autograd's thread
    for key in ("kft.collate", "kft.on_step_end", "kft.on_log", "kft.on_substep_end"):
        e = avg.get(key)
        if e:
            out["ranges"][key] = {"cpu_ms": round(e.cpu_time_total / 1e3 / steps, 3), "calls": e.count // steps}
    syncs = [e for e in prof.key_averages() if e.key in ("aten::item", "aten::_local_scalar_dense", "aten::nonzero",
                                                         "cudaStreamSynchronize", "cudaDeviceSynchronize")]
    out["host_syncs_per_step"] = {e.key: e.count // steps for e in syncs}
    top = sorted((e for e in prof.key_averages() if e.self_device_time_total > 0),
                 key=lambda e: -e.self_device_time_total)[:10]
    out["top_kernels"] = [{"name": e.key[:80], "ms_per_step": round(e.self_device_time_total / 1e3 / steps, 2)}
                          for e in top]
    return out


def model_alone(trainer, micro_batches: list[dict], repeats: int = 3) -> float:
    """Seconds for forward + backward of ``micro_batches`` (one optimizer step's worth), nothing else."""
    model = trainer.model
    model.train()

    def once() -> None:
        for mb in micro_batches:
            inputs = trainer._prepare_inputs(dict(mb))
            inputs["use_cache"] = False
            with trainer.compute_loss_context_manager():
                out = model(**inputs, fused_lm_head=True) if _fused(trainer) else model(**inputs)
            trainer.accelerator.backward(out.loss)
        model.zero_grad(set_to_none=True)

    once()
    times = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        once()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fused(trainer) -> bool:
    import inspect

    base = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    try:
        return "fused_lm_head" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


@contextmanager
def _keep_trainer(holder: dict):
    """Capture the SFTTrainer the job builds (the job does not expose it)."""
    import kft.train as train

    original = train.TrainingJob._prepare

    def prepare(self):
        trainer, mem = original(self)
        holder["trainer"] = trainer
        for cb in trainer.callback_handler.callbacks:
            if isinstance(cb, _Profiler):
                cb.trainer = trainer
        return trainer, mem

    train.TrainingJob._prepare = prepare
    try:
        yield
    finally:
        train.TrainingJob._prepare = original


def profile_path(path: str, a: argparse.Namespace) -> dict[str, Any]:
    """One run of ``path``: step times outside the profiled window, the breakdown inside it, the model alone."""
    import gc

    from bench_train import config_for

    from kft import memory
    from kft.runs import RunDir
    from kft.train import TrainingJob

    out = Path(a.out)
    run = RunDir(out / f"profile-{path.replace('+', '_').replace('=', '')}-{int(time.time())}")
    config = config_for(path, a.model, a.data, a.steps)
    config.train.save_steps = 0  # no checkpoints: the marks wrap the optimizer and scheduler, which pickle
    config = config.validate()
    prof = _Profiler(WAIT, ACTIVE)
    holder: dict[str, Any] = {}
    t0 = time.time()
    with _keep_trainer(holder):
        job = TrainingJob(config, run.path, callbacks=[prof]).start()
        job.join()
    snap = job.snapshot()
    result: dict[str, Any] = {"path": path, "status": snap.status, "error": snap.error, "backend": snap.backend}
    if snap.status != "completed":
        print(f"{path}: run {snap.status}: {snap.error}", flush=True)
        return result
    rows = [r for r in run.read_metrics() if "loss" in r]
    info = run.read_json() or {}
    # steady steps: after the first two (compilation), outside the profiler's warm-up and active steps
    steady = [t for i, t in enumerate(prof.step_times, 1) if i > 2 and not WAIT < i <= WAIT + 1 + ACTIVE]
    step_s = statistics.median(steady)
    tokens = [b["tokens_seen"] - a_["tokens_seen"] for a_, b in zip(rows, rows[1:], strict=False)]
    step_tokens = statistics.mean(tokens[1:]) if len(tokens) > 1 else float("nan")
    result.update(step_s=round(step_s, 4), tokens_per_step=round(step_tokens, 1),
                  tokens_per_s=round(step_tokens / step_s, 1), first_step_s=rows[0]["time"] if rows else None,
                  peak_reserved_gb=(info.get("memory") or {}).get("peak_reserved_gb"),
                  losses=[round(r["loss"], 4) for r in rows], step_times=[round(t, 4) for t in prof.step_times],
                  log=[line for line in snap.log_tail if "checkpointing" in line])
    result.update(breakdown(prof.prof, ACTIVE))
    trainer = holder["trainer"]
    loader = trainer.get_train_dataloader()
    it = iter(loader)
    batches = [next(it) for _ in range(config.train.gradient_accumulation_steps)]
    alone_tokens = sum(int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["input_ids"].numel())
                       for b in batches)
    alone = model_alone(trainer, batches)
    per_token_alone, per_token_step = alone / alone_tokens, step_s / step_tokens
    result.update(model_alone_s=round(alone, 4), model_alone_tokens=alone_tokens,
                  model_alone_tokens_per_s=round(1 / per_token_alone, 1),
                  outside_share=round(max(0.0, 1 - per_token_alone / per_token_step), 3), wall_s=round(time.time() - t0, 1))
    r = result["ranges"]
    print(f"{path}: {result['tokens_per_s']:,.0f} tok/s, step {step_s * 1e3:.0f} ms, peak {result['peak_reserved_gb']} GB, "
          f"model alone {1 / per_token_alone:,.0f} tok/s, outside {result['outside_share']:.0%}; cpu/gpu ms "
          + ", ".join(f"{k.split('.')[1]} {v['cpu_ms']:.0f}/{v.get('gpu_ms', 0):.0f}" for k, v in r.items()
                      if k.startswith("step.")) + f"; syncs {result['host_syncs_per_step']}", flush=True)
    del trainer, holder, loader, it, batches
    job.take_model()
    gc.collect()
    memory.free_unused()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", required=True, help="comma-separated bench_train paths, all of one backend")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=WAIT + 1 + ACTIVE + 8)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tag", default="", help="prefix of the JSON file names (e.g. before / after)")
    a = ap.parse_args()
    from bench_train import cfg_backend

    paths = a.paths.split(",")
    if len({cfg_backend(p) for p in paths}) != 1:
        raise SystemExit("one backend per process: unsloth patches transformers for the whole process")
    if cfg_backend(paths[0]) == "unsloth":
        import unsloth  # noqa: F401  (before trl/transformers/peft)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        try:
            result = profile_path(path, a)
        except Exception as exc:  # noqa: BLE001 - one failing variant must not cost the others
            import traceback

            traceback.print_exc()
            result = {"path": path, "status": "crashed", "error": repr(exc)[:500]}
            print(f"{path}: crashed: {exc!r}"[:300], flush=True)
        name = f"{a.tag + '_' if a.tag else ''}{path.replace('+', '_').replace('=', '')}.json"
        (out / name).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
