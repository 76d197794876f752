"""Where a whole training step goes: kft's TrainingJob and TRL's SFTTrainer, step by step.

    PYTHONPATH=.:bench python bench/profile_train.py --paths seed,fast,fast+gc=16 --model CKPT --data ROWS.jsonl --out DIR

For each path (bench_train.config_for; one process, one backend) runs ``--steps`` optimizer steps through kft's own
TrainingJob and names each part of the step with a range put around the Trainer's pieces here (kft's own pieces
carry ``record_function`` marks in the code: ``kft.collate``, ``kft.on_step_end``, ``kft.on_log``):

    step.data       fetching the micro-batches (collator, num_items_in_batch)
    step.forward    compute_loss: the model's forward, the loss and TRL's per-step metrics
    step.backward   accelerator.backward
    step.clip       gradient norm and clipping
    step.optimizer  optimizer.step + scheduler + zero_grad
    step.log        _maybe_log_save_evaluate: logging (the loss read back), checkpoints, callbacks' on_log

Each range's CPU wall and GPU wall (CUDA events at its start and end: no sync) per steady step (after the first
two, which compile); ``fwd_bwd_share_gpu`` = the GPU's forward + backward time / the step's wall time.
Then the model alone: forward + backward of one step's worth of collated micro-batches (no metrics, no optimizer),
timed with the GPU synchronised; ``outside_share`` = 1 - (model-alone time / step time) per token.
Writes ``<tag>_<path>.json`` into DIR; run it on an older kft (PYTHONPATH) for a same-run "before".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WAIT = 4  # with --trace: steps before the traced one (after one warm-up step)

RANGES = ("step.data", "step.forward", "step.backward", "step.clip", "step.optimizer", "step.log")


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _Ranges:
    """Per-step timing of the marked ranges: CPU wall (perf_counter) and GPU wall (CUDA events recorded on the
    stream when the CPU enters and leaves the range, so no sync: the GPU time between the two points, idle gaps
    inside included). Also counts the Python-visible read-backs (.item(), bool(), .tolist()) per step."""

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        self.on = False
        self.cpu: dict[str, float] = {}
        self.events: list[tuple[str, Any, Any]] = []
        self.reads = 0
        self.steps = 0

    def mark(self, obj: Any, attr: str, label: str) -> None:
        """Wrap ``obj.attr`` (in this process only) in a record_function range and, while on, in timers."""
        import torch
        from torch.profiler import record_function

        inner = getattr(obj, attr)

        def wrapped(*a, **kw):
            if not self.on:
                with record_function(label):
                    return inner(*a, **kw)
            start = end = None
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            t0 = time.perf_counter()
            try:
                with record_function(label):
                    return inner(*a, **kw)
            finally:
                self.cpu[label] = self.cpu.get(label, 0.0) + time.perf_counter() - t0
                if end is not None:
                    end.record()
                    self.events.append((label, start, end))

        setattr(obj, attr, wrapped)

    def count_reads(self) -> None:
        import torch

        for name in ("item", "__bool__", "tolist"):
            original = getattr(torch.Tensor, name)

            def counting(t, *a, _original=original):
                if self.on:
                    self.reads += 1
                return _original(t, *a)

            setattr(torch.Tensor, name, counting)

    def result(self) -> dict[str, Any]:
        _sync()
        gpu: dict[str, float] = {}
        for label, start, end in self.events:
            gpu[label] = gpu.get(label, 0.0) + start.elapsed_time(end) / 1e3
        n = max(self.steps, 1)
        return {"timed_steps": self.steps, "reads_per_step": round(self.reads / n, 1),
                "ranges": {k: {"cpu_ms": round(self.cpu.get(k, 0.0) / n * 1e3, 2),
                               "gpu_ms": round(gpu.get(k, 0.0) / n * 1e3, 2)} for k in RANGES}}


class _Profiler:
    """A TrainerCallback: marks the trainer's pieces, times every step, and times the ranges of the steady steps
    (after the first two, which compile). With ``trace`` (CPU runs; on a GPU the trace of an 8B step takes
    minutes to digest) a torch.profiler trace of one step adds the host syncs and the top kernels."""

    def __init__(self, trace: bool) -> None:
        self.step_times: list[float] = []
        self._t = 0.0
        self.trainer = None
        self.ranges = _Ranges()
        self.prof = None
        if trace:
            from torch.profiler import ProfilerActivity, profile, schedule

            self.prof = profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=WAIT, warmup=1, active=1,
                                                                                      repeat=1))

    # transformers' TrainerCallback protocol, duck-typed (the job adds it after its own recorder)
    def __getattr__(self, name: str):
        if name.startswith("on_"):
            return lambda *a, **kw: None
        raise AttributeError(name)

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):  # noqa: ANN001
        t, r = self.trainer, self.ranges
        r.mark(t, "get_batch_samples", "step.data")
        r.mark(t, "compute_loss", "step.forward")
        r.mark(t.accelerator, "backward", "step.backward")
        r.mark(t.accelerator, "clip_grad_norm_", "step.clip")
        r.mark(optimizer, "step", "step.optimizer")
        r.mark(lr_scheduler, "step", "step.optimizer")
        r.mark(t.model, "zero_grad", "step.optimizer")
        r.mark(t, "_maybe_log_save_evaluate", "step.log")
        r.count_reads()
        if self.prof is not None:
            self.prof.start()
        _sync()
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
        self.step_times.append(time.perf_counter() - self._t)
        if self.ranges.on:
            self.ranges.steps += 1
        traced = self.prof is not None and WAIT < len(self.step_times) <= WAIT + 2
        self.ranges.on = len(self.step_times) >= 2 and not traced  # the trace's steps are not timed
        if self.prof is not None:
            self.prof.step()
        self._t = time.perf_counter()

    def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
        if self.prof is not None:
            self.prof.stop()


def trace_summary(prof) -> dict[str, Any]:
    """Host syncs and kft's own marks in the one traced step (CPU only)."""
    avg = {e.key: e for e in prof.key_averages()}
    out: dict[str, Any] = {"kft_marks_cpu_ms": {k: round(avg[k].cpu_time_total / 1e3, 3) for k in
                                                ("kft.collate", "kft.on_step_end", "kft.on_log", "kft.on_substep_end")
                                                if k in avg}}
    out["host_syncs"] = {k: avg[k].count for k in ("aten::_local_scalar_dense", "aten::nonzero") if k in avg}
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
    import kft.training.job as train

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


def _ddp_settings(mods: list[str]) -> None:
    """DDP variants (under torchrun): ddp_static = static_graph; ddp_bucket=N = bucket_cap_mb N (this process only)."""
    import kft.training.sft as sft

    extra: dict[str, Any] = {}
    for mod in mods:
        key, _, value = mod.partition("=")
        if key == "ddp_static":
            extra["ddp_static_graph"] = True
        elif key == "ddp_bucket":
            extra["ddp_bucket_cap_mb"] = int(value)
        else:
            raise SystemExit(f"unknown DDP modifier {mod!r}")
    original = getattr(sft, "_bench_original", sft.sft_kwargs)
    sft._bench_original = original
    sft.sft_kwargs = (lambda *a, **kw: {**original(*a, **kw), **extra}) if extra else original


def profile_path(path: str, a: argparse.Namespace) -> dict[str, Any]:
    """One run of ``path``: step times, the ranges of the steady steps, the model alone."""
    import gc

    from bench_train import config_for

    from kft.config.validation import validate
    from kft.runs.store import RunDir
    from kft.training import memory
    from kft.training.job import TrainingJob

    out = Path(a.out)
    run = RunDir(out / f"profile-{path.replace('+', '_').replace('=', '')}-{os.environ.get('KFT_RUN_ID', int(time.time()))}")
    config = config_for("+".join(m for m in path.split("+") if not m.startswith("ddp_")), a.model, a.data, a.steps)
    _ddp_settings([m for m in path.split("+") if m.startswith("ddp_")])
    config.train.save_steps = 0  # no checkpoints: the marks wrap the optimizer and scheduler, which pickle
    config = validate(config)
    prof = _Profiler(trace=a.trace)
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
    # steady steps: after the first two (compilation), outside a trace's warm-up and traced steps
    steady = [t for i, t in enumerate(prof.step_times, 1) if i > 2 and not (a.trace and WAIT < i <= WAIT + 2)]
    step_s = statistics.median(steady)
    tokens = [b["tokens_seen"] - a_["tokens_seen"] for a_, b in zip(rows, rows[1:], strict=False)]
    step_tokens = statistics.mean(tokens[1:]) if len(tokens) > 1 else float("nan")
    result.update(step_s=round(step_s, 4), tokens_per_step=round(step_tokens, 1),
                  tokens_per_s=round(step_tokens / step_s, 1), first_step_s=rows[0]["time"] if rows else None,
                  peak_reserved_gb=(info.get("memory") or {}).get("peak_reserved_gb"),
                  losses=[round(r["loss"], 4) for r in rows], step_times=[round(t, 4) for t in prof.step_times],
                  log=[line for line in snap.log_tail if "checkpointing" in line])
    result.update(prof.ranges.result())
    if prof.prof is not None:
        result.update(trace_summary(prof.prof))
    trainer = holder["trainer"]
    loader = trainer.get_train_dataloader()
    it = iter(loader)
    batches = [next(it) for _ in range(config.train.gradient_accumulation_steps)]
    alone_tokens = sum(int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["input_ids"].numel())
                       for b in batches)
    alone = model_alone(trainer, batches)
    per_token_alone, per_token_step = alone / alone_tokens, step_s / step_tokens
    timed = statistics.mean(steady) if steady else step_s  # the ranges' steps: mean, as their sums are
    fb = result["ranges"]["step.forward"]["gpu_ms"] + result["ranges"]["step.backward"]["gpu_ms"]
    result["fwd_bwd_share_gpu"] = round(fb / 1e3 / timed, 3) if fb else None
    result.update(model_alone_s=round(alone, 4), model_alone_tokens=alone_tokens,
                  model_alone_tokens_per_s=round(1 / per_token_alone, 1),
                  outside_share=round(max(0.0, 1 - per_token_alone / per_token_step), 3), wall_s=round(time.time() - t0, 1))
    r = result["ranges"]
    print(f"{path}: {result['tokens_per_s']:,.0f} tok/s, step {step_s * 1e3:.0f} ms, peak {result['peak_reserved_gb']} GB, "
          f"model alone {1 / per_token_alone:,.0f} tok/s, outside {result['outside_share']:.0%}; cpu/gpu ms "
          + ", ".join(f"{k.split('.')[1]} {v['cpu_ms']:.0f}/{v.get('gpu_ms', 0):.0f}" for k, v in r.items()
                      if k.startswith("step.")) + f"; reads/step {result['reads_per_step']}", flush=True)
    del trainer, holder, loader, it, batches
    prof.trainer = prof.ranges = None  # the next path's peak must not include this one's model
    job.take_model()
    gc.collect()
    memory.free_unused()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", required=True, help="comma-separated bench_train paths, all of one backend")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--trace", action="store_true", help="torch.profiler trace of one step (CPU runs)")
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
        rank = os.environ.get("RANK")
        result["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))
        name = (f"{a.tag + '_' if a.tag else ''}{path.replace('+', '_').replace('=', '')}"
                f"{'_rank' + rank if rank and result['world_size'] > 1 else ''}.json")
        (out / name).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
