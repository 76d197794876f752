"""Where a whole training step goes: kft's TrainingJob and TRL's SFTTrainer under torch.profiler.

    PYTHONPATH=.:bench python bench/profile_train.py --path fast --model CKPT --data ROWS.jsonl --out DIR

Runs ``--steps`` optimizer steps through kft's own TrainingJob, records steps WAIT+1 .. WAIT+ACTIVE with
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
the step that is not the model's forward and backward. Writes ``profile_train_<path>.json`` into DIR.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WAIT = 6  # steps before the profiler records (the first steps compile)
ACTIVE = 4  # steps recorded

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
        from torch.profiler import ProfilerActivity, profile, schedule

        import torch

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
        now = time.perf_counter()
        self.step_times.append(now - self._t)
        self._t = now
        self.prof.step()

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=WAIT + ACTIVE + 2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from bench_train import cfg_backend, config_for

    if cfg_backend(a.path) == "unsloth":
        import unsloth  # noqa: F401  (before trl/transformers/peft)

    from kft.runs import RunDir
    from kft.train import TrainingJob

    out = Path(a.out)
    run = RunDir(out / f"profile-{a.path}-{int(time.time())}")
    config = config_for(a.path, a.model, a.data, a.steps)
    config.train.save_steps = 0  # no checkpoints: the marks wrap the optimizer and scheduler, which pickle
    config = config.validate()
    prof = _Profiler(WAIT, ACTIVE)
    holder: dict[str, Any] = {}
    with _keep_trainer(holder):
        job = TrainingJob(config, run.path, callbacks=[prof]).start()
        job.join()
    snap = job.snapshot()
    if snap.status != "completed":
        raise SystemExit(f"run {snap.status}: {snap.error}")
    trainer = holder["trainer"]
    steady = prof.step_times[WAIT + 1: WAIT + 1 + ACTIVE]
    step_s = statistics.median(steady)
    result: dict[str, Any] = {"path": a.path, "backend": snap.backend, "step_s": round(step_s, 4),
                              "step_times": [round(t, 4) for t in prof.step_times]}
    result.update(breakdown(prof.prof, ACTIVE))
    loader = trainer.get_train_dataloader()
    accum = config.train.gradient_accumulation_steps
    it = iter(loader)
    batches = [next(it) for _ in range(accum)]
    tokens = sum(int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["input_ids"].numel())
                 for b in batches)
    alone = model_alone(trainer, batches)
    result.update(model_alone_s=round(alone, 4), tokens_per_step=tokens,
                  outside_share=round(max(0.0, 1 - alone / step_s), 3),
                  model_alone_tokens_per_s=round(tokens / alone, 1), step_tokens_per_s=round(tokens / step_s, 1))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile_train_{a.path}.json").write_text(json.dumps(result, indent=2))
    r = result["ranges"]
    print(f"{a.path}: step {step_s * 1e3:.0f} ms, model alone {alone * 1e3:.0f} ms, outside {result['outside_share']:.0%}; "
          + ", ".join(f"{k.split('.')[1]} {v['cpu_ms']:.0f}/{v.get('gpu_ms', 0):.0f}" for k, v in r.items()
                      if k.startswith("step.")) + f"; syncs {result['host_syncs_per_step']}", flush=True)


if __name__ == "__main__":
    main()
