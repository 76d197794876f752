"""TrainingJob: TRL's SFTTrainer in a background thread, with a stop Event and a snapshot().

The trainer callback only records into a lock-protected buffer; nothing here knows about a UI.
Each run writes RUN_DIR/adapter/ (PEFT format + template.json), RUN_DIR/metrics.jsonl and
RUN_DIR/run.json (config, backend, status, timings, memory report).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from . import memory
from .config import RunConfig, cuda_capability, resolve_dtype
from .distributed import is_distributed, is_main, sum_across_ranks
from .persistence import TIME_FORMAT, write_run_json
from .prompts import DEFAULT_TEMPLATE, PromptTemplate

logger = logging.getLogger(__name__)

FINAL_STATES = ("completed", "stopped", "failed", "interrupted")
FAULT_ENV = "KFT_INJECT_FAULT_AT_STEP"  # test hook: raise inside the run at this step


@dataclass
class JobSnapshot:
    """Plain data describing a job at one moment (what the UI and CLI render)."""

    status: str
    run_dir: str
    step: int = 0
    total_steps: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    learning_rates: list[tuple[int, float]] = field(default_factory=list)
    memory: list[tuple[float, float, float]] = field(default_factory=list)
    memory_label: str = ""
    tokens_per_s: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    log_tail: list[str] = field(default_factory=list)
    log_count: int = 0
    """Lines logged since the start (log_tail keeps only the last ones): new lines = log_count - lines seen."""
    error: str | None = None
    backend: str | None = None
    backend_reason: str | None = None
    memory_report: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATES


def sft_kwargs(config: RunConfig, out_dir: Path, capability: tuple[int, int] | None) -> dict[str, Any]:
    """SFTConfig keyword arguments for this run (pure: no SFTConfig built, testable for any GPU).

    padding_free: TRL concatenates each micro-batch's rows into one row with position_ids restarting
    at every row boundary; the attention is block-diagonal (transformers builds it from the positions)."""
    t = config.train
    dtype = resolve_dtype(config.model.dtype, capability)
    optim = t.optim
    if capability is None and "8bit" in optim:
        logger.info("optimizer %s needs a GPU; using adamw_torch on the CPU", optim)
        optim = "adamw_torch"
    kwargs: dict[str, Any] = dict(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        warmup_steps=t.warmup_steps,
        max_steps=t.max_steps if t.max_steps > 0 else -1,
        num_train_epochs=t.num_train_epochs,
        learning_rate=t.learning_rate,
        logging_steps=t.logging_steps,
        optim=optim,
        weight_decay=t.weight_decay,
        lr_scheduler_type=t.lr_scheduler_type,
        seed=t.seed,
        fp16=dtype == "float16",
        bf16=dtype == "bfloat16",
        report_to="none",
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        dataset_text_field="text",
        max_length=config.model.max_seq_length,
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=capability is not None,
    )
    if is_distributed():
        # DDP through torchrun / accelerate launch: LoRA leaves no unused parameters
        kwargs.update(ddp_find_unused_parameters=False)
    if t.padding_free:
        # rows longer than max_seq_length were already dropped (or refused) by kft.data
        kwargs.update(padding_free=True, max_length=None)
    return kwargs


def to_sft_config(config: RunConfig, out_dir: Path, capability: tuple[int, int] | None):
    """TRL SFTConfig for this run."""
    from trl import SFTConfig

    return SFTConfig(**sft_kwargs(config, out_dir, capability))


def _classify(exc: BaseException) -> str:
    """A failure in plain words."""
    from .data import DataError
    from .model import ModelLoadError

    text = f"{type(exc).__name__}: {exc}"
    if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return ("out of memory: the GPU ran out of memory. Lower the batch size or max_seq_length, "
                f"or use 4-bit loading. ({str(exc)[:200]})")
    if isinstance(exc, DataError):
        return f"bad data: {exc}"
    if isinstance(exc, ModelLoadError):
        return f"missing model: {exc}"
    return text[:1000]


class TrainingJob:
    """One SFT run in a background thread. Start returns at once; poll ``snapshot()``."""

    def __init__(self, config: RunConfig, run_dir: str | Path, loaded: Any | None = None,
                 template: PromptTemplate = DEFAULT_TEMPLATE, callbacks: list[Any] | None = None,
                 sample_every_s: float = 1.0, resume_from: str | Path | None = None,
                 on_done: Callable[[TrainingJob], None] | None = None) -> None:
        self.config = config.validate()
        self.on_done = on_done  # runs in the job's thread after the clean-up, before ``done`` turns true
        self.run_dir = Path(run_dir)
        self.template = template
        self.loaded = loaded
        self._extra_callbacks = callbacks or []
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._sample_every = sample_every_s
        self._snap = JobSnapshot(status="pending", run_dir=str(self.run_dir), memory_label=memory.memory_label())
        self._log: deque[str] = deque(maxlen=200)
        self._log_count = 0
        self._t0 = 0.0
        self._last_log: tuple[float, int] | None = None
        self._first_log: tuple[float, int] | None = None  # for the whole run's average at the end
        self._pace: tuple[float, int] | None = None  # (time, step) when the trainer began, for the ETA
        self.data_summary: dict[str, Any] | None = None
        self.tokens_seen = 0  # real (non-pad) tokens trained on so far (credited by _Recorder)
        self._collated: collections.deque[int] = collections.deque()  # counts of batches not yet trained
        self.resume_from = Path(resume_from) if resume_from else None  # a complete checkpoint of this run_dir
        self.meta: dict[str, Any] = {}  # extra run.json keys (kft.persistence: resumed_from, resumes)

    # ---- public API ----------------------------------------------------------------------------
    def start(self) -> TrainingJob:
        if self._thread is not None:
            raise RuntimeError("this job was already started")
        if is_main() and self.resume_from is None and self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise ValueError(f"Run directory {self.run_dir} already holds files; each run needs a new directory")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._t0 = time.time()
        self._thread = threading.Thread(target=self._run, name=f"kft-train-{self.run_dir.name}", daemon=True)
        self._thread.start()
        threading.Thread(target=self._sampler, name="kft-mem", daemon=True).start()
        return self

    def stop(self) -> None:
        """Ask the run to end after the current step; the adapter reached so far is saved."""
        if not self._done.is_set():
            self._stop.set()
            with self._lock:  # the run may have ended already (its thread still frees memory): keep its status
                if self._snap.finished:
                    return
                self._snap.status = "stopping"
            self._note("stop requested: ending after the current step")

    def join(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            s = self._snap
            elapsed = (s.elapsed_s if s.finished else time.time() - self._t0) if self._t0 else 0.0
            eta = None
            if self._pace is not None and s.total_steps and not s.finished and s.step > self._pace[1]:
                # the pace of this session's steps only: not the model load, not a resumed run's earlier steps
                per_step = (time.time() - self._pace[0]) / (s.step - self._pace[1])
                eta = per_step * (s.total_steps - s.step)
            return JobSnapshot(status=s.status, run_dir=s.run_dir, step=s.step, total_steps=s.total_steps,
                               losses=list(s.losses), learning_rates=list(s.learning_rates), memory=list(s.memory),
                               memory_label=s.memory_label, tokens_per_s=s.tokens_per_s, elapsed_s=elapsed, eta_s=eta,
                               log_tail=list(self._log), log_count=self._log_count, error=s.error, backend=s.backend,
                               backend_reason=s.backend_reason, memory_report=s.memory_report)

    # ---- recording (called from the trainer's thread) -------------------------------------------
    def _set(self, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self._snap, k, v)

    def _note(self, msg: str) -> None:
        logger.info(msg)
        with self._lock:
            self._log.append(f"[{time.strftime('%H:%M:%S')}] {msg}")
            self._log_count += 1

    def _record_log(self, step: int, logs: dict[str, Any], tokens_seen: int) -> None:
        now = time.time()
        tps = None
        if self._last_log is not None and now > self._last_log[0] and tokens_seen > self._last_log[1]:
            tps = (tokens_seen - self._last_log[1]) / (now - self._last_log[0])
        self._last_log = (now, tokens_seen)
        if self._first_log is None:
            self._first_log = (now, tokens_seen)
        row = {"step": step, "time": round(now - self._t0, 3), "tokens_seen": tokens_seen,
               "tokens_per_s": round(tps, 1) if tps else None,
               **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
        with self._lock:
            if "loss" in logs:
                self._snap.losses.append((step, float(logs["loss"])))
            if "learning_rate" in logs:
                self._snap.learning_rates.append((step, float(logs["learning_rate"])))
            if tps:
                self._snap.tokens_per_s = tps
        if is_main():
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        if "loss" in logs:
            self._note(f"step {step}: loss {logs['loss']:.4f}, lr {logs.get('learning_rate', 0):.2e}"
                       + (f", {tps:,.0f} tokens/s" if tps else ""))

    def _sampler(self) -> None:
        while not self._done.is_set():
            m = memory.sample()
            with self._lock:
                self._snap.memory.append((round(m.t - self._t0, 2), round(m.allocated_gb, 3), round(m.reserved_gb, 3)))
                if len(self._snap.memory) > 3600:
                    del self._snap.memory[: len(self._snap.memory) - 3600]
            self._done.wait(self._sample_every)

    # ---- the run --------------------------------------------------------------------------------
    def _write_run_json(self, **extra: Any) -> None:
        if not is_main():
            return
        s = self.snapshot()
        lm = self.loaded
        info = {"status": s.status, "config": self.config.to_dict(), "run_dir": str(self.run_dir),
                "backend": lm.backend if lm else None, "backend_reason": lm.reason if lm else None,
                "dtype": lm.dtype if lm else None, "model_path": lm.path if lm else None,
                "started_at": time.strftime(TIME_FORMAT, time.localtime(self._t0)),
                "elapsed_s": round(s.elapsed_s, 2), "steps_done": s.step, "total_steps": s.total_steps,
                "final_loss": s.losses[-1][1] if s.losses else None, "error": s.error, "pid": os.getpid(),
                "data": self.data_summary, "memory": s.memory_report, **self.meta, **extra}
        write_run_json(self.run_dir, info)

    def _run(self) -> None:
        trainer = None
        start_mem: dict[str, Any] = {}
        t_train = time.time()
        try:
            self._set(status="loading")
            self._write_run_json()
            trainer, start_mem = self._prepare()
            if self._stop.is_set():
                raise _StoppedBeforeStart
            self._set(status="running")
            self._write_run_json()
            t_train = time.time()
            trainer.train(resume_from_checkpoint=str(self.resume_from) if self.resume_from else None)
            self._save_adapter()
            status = "stopped" if self._stop.is_set() else "completed"
            self._finish(status, None, start_mem, time.time() - t_train)
        except _StoppedBeforeStart:
            self._finish("stopped", None, start_mem, 0.0)
            self.loaded = None  # no step ran and no adapter was saved: nothing in memory to keep
        except BaseException as exc:  # noqa: BLE001 - the app must keep serving whatever happened
            logger.error("training failed: %s", traceback.format_exc())
            try:
                self._finish("failed", _classify(exc), start_mem, time.time() - t_train)
            finally:
                self.loaded = None  # even if the report could not be written: the model must be let go
        finally:
            del trainer
            memory.free_unused()
            if self.on_done is not None:
                try:
                    self.on_done(self)
                except Exception:  # noqa: BLE001 - the job must end whatever its listener does
                    logger.exception("on_done of %s failed", self.run_dir)
            self._done.set()

    def _prepare(self) -> tuple[Any, dict[str, Any]]:
        from .data import load_rows, to_text_dataset
        from .model import attach_lora, for_training, load_base

        cfg = self.config
        if self.loaded is None:
            self._note(f"loading {cfg.model.name} ...")
            self.loaded = load_base(cfg.model)
            self._note(f"backend: {self.loaded.backend} ({self.loaded.reason}); dtype {self.loaded.dtype}")
            self.loaded = attach_lora(self.loaded, cfg.lora)
        start_mem = memory.start_report()  # with the model loaded, as the seed measures it
        self._set(backend=self.loaded.backend, backend_reason=self.loaded.reason)
        for_training(self.loaded)
        tok = self.loaded.tokenizer
        report = load_rows(cfg.data, tok, self.template, cfg.model.max_seq_length)
        self.data_summary = report.summary()
        self._note(f"data: {len(report.rows)} rows; tokens {report.summary()['tokens']}")
        for line in report.problem_lines(5):
            self._note(line)
        dataset = to_text_dataset(report, self.template, tok.eos_token)
        from trl import SFTTrainer

        from .compat import ensure_trl_cpu_kernel

        ensure_trl_cpu_kernel()
        args = to_sft_config(cfg, self.run_dir, cuda_capability())
        trainer = SFTTrainer(model=self.loaded.model, args=args, train_dataset=dataset, processing_class=tok,
                             callbacks=[_Recorder(self), *self._extra_callbacks])
        trainer.data_collator = _CountingCollator(trainer.data_collator, self)
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # progress goes through the job's log, not stdout
        return trainer, start_mem

    def _save_adapter(self) -> None:
        if not is_main():
            return
        out = self.run_dir / "adapter"
        self.loaded.model.save_pretrained(str(out))
        self.loaded.tokenizer.save_pretrained(str(out))
        self.template.save(out)
        self._note(f"adapter saved to {out}")

    def _finish(self, status: str, error: str | None, start_mem: dict[str, Any], seconds: float) -> None:
        report = memory.final_report(start_mem, seconds) if start_mem else None
        with self._lock:
            self._snap.elapsed_s = time.time() - self._t0
            first, last = self._first_log, self._last_log
            if first and last and last[0] > first[0] and last[1] > first[1]:
                # a finished run shows its average, not its last step's rate (a stopped run's last
                # step, cut short and saving, showed a twentieth of the real rate)
                self._snap.tokens_per_s = (last[1] - first[1]) / (last[0] - first[0])
        self._set(status=status, error=error, memory_report=report)
        self._note(f"run {status}" + (f": {error}" if error else ""))
        if report:
            for line in memory.format_report(report).splitlines():
                self._note(line)
        try:
            self._write_run_json(finished_at=time.strftime(TIME_FORMAT))
        except OSError as exc:  # disk full, say: the status above still tells the app and the CLI
            logger.error("could not write run.json: %s", exc)
            self._note(f"could not write run.json: {exc}")


class _CountingCollator:
    """Wraps the trainer's collator and counts real (non-pad) tokens: works on every backend,
    including Unsloth's patched training loop, which does not update num_input_tokens_seen."""

    def __init__(self, inner: Callable[..., Any], job: TrainingJob) -> None:
        self.inner, self.job = inner, job

    def __call__(self, features: Any) -> Any:
        batch = self.inner(features)
        mask = batch.get("attention_mask") if hasattr(batch, "get") else None
        # queued, not added: the data loader collates one batch ahead of training, so a count taken here
        # would credit a batch before it is trained (and a resume would count it twice)
        self.job._collated.append(int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()))
        return batch


class _StoppedBeforeStart(Exception):
    pass


class _Recorder(TrainerCallback):
    """Records logs into the job and honours stop requests; never touches a UI."""

    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        fault = os.environ.get(FAULT_ENV, "").strip()
        self.fault_at = int(fault) if fault.isdigit() else None
        self._substeps = 0  # micro-batches of the current optimizer step already credited

    def _credit(self, batches: int) -> None:
        """Count the tokens of ``batches`` trained micro-batches (oldest collated first)."""
        for _ in range(batches):
            if self.job._collated:
                self.job.tokens_seen += self.job._collated.popleft()

    def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
        self.job._set(total_steps=state.max_steps)
        with self.job._lock:
            self.job._pace = (time.time(), state.global_step)  # global_step > 0 when resuming
        self.job._write_run_json()  # the total is known now: a run killed later still shows step / total

    def on_save(self, args, state, control, **kw):  # noqa: ANN001
        self.job._write_run_json()  # steps done, as far as the checkpoint just written
        return control

    def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
        # transformers' loop calls on_substep_end for every micro-batch but the step's last; a loop that
        # does not (a patched one) gets the whole accumulation credited here
        self._credit(1 if self._substeps else args.gradient_accumulation_steps)
        self._substeps = 0
        self.job._set(step=state.global_step)
        if self.fault_at is not None and state.global_step >= self.fault_at:
            raise RuntimeError(f"injected fault at step {state.global_step} ({FAULT_ENV})")
        if self.job._stop.is_set():
            control.should_training_stop = True
        return control

    def on_substep_end(self, args, state, control, **kw):  # noqa: ANN001
        self._credit(1)
        self._substeps += 1
        if self.job._stop.is_set():
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
        if logs:
            self.job._record_log(state.global_step, logs, sum_across_ranks(self.job.tokens_seen))


