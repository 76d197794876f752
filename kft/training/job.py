"""TrainingJob: TRL's SFTTrainer in a background thread, with a stop Event and a snapshot(); no UI here.

Each run writes its RunDir (kft.runs.store). The config was validated upstream; the model is the job's until take_model().
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from transformers import PrinterCallback

from ..config.args import RunConfig
from ..data.template import DEFAULT_TEMPLATE, PromptTemplate
from ..models.compat import ensure_trl_cpu_kernel
from ..runs.export import unpath_adapter
from ..runs.store import DAMAGED, TIME_FORMAT, ResumePlan, RunDir, series
from ..system.distributed import is_main, world_size
from ..system.hardware import cuda_capability
from . import memory
from .pace import Pace
from .recorder import FAULT_ENV, CountingCollator, Recorder
from .sft import sft_kwargs, to_sft_config
from .snapshot import DamagedCheckpoint, JobSnapshot, TrainingDiverged, classify, disk_full, failure_kind

__all__ = ["FAULT_ENV", "JobSnapshot", "TrainingDiverged", "TrainingJob", "sft_kwargs", "to_sft_config"]

logger = logging.getLogger(__name__)
# the Trainer's methods that read a checkpoint back: a failure inside them is a damaged checkpoint
CHECKPOINT_LOADERS = frozenset({"_load_from_checkpoint", "_load_optimizer_and_scheduler", "_load_rng_state",
                                "_load_scaler", "_load_callback_state"})


def rows_needed(cfg: RunConfig) -> int | None:
    """The most rows a run of ``max_steps`` steps can train on (steps x batch x accumulation x processes), with its
    held-out share on top; None for a run of epochs, which trains on every row. A steps run keeps only that many rows,
    drawn at random with the run's seed from every usable row (a 2-step run on a 1,000,000-row file held and tokenized
    all of them: +5 GB and 16 minutes on a 2-core CPU)."""
    t = cfg.train
    if t.max_steps <= 0:
        return None
    trained = t.max_steps * t.per_device_train_batch_size * t.gradient_accumulation_steps * world_size()
    return math.ceil(trained / (1 - t.eval_share)) + (1 if t.eval_share > 0 else 0)


class TrainingJob:
    """One SFT run in a background thread. Start returns at once; poll ``snapshot()``."""

    def __init__(self, config: RunConfig, run_dir: str | Path, loaded: Any | None = None,
                 template: PromptTemplate = DEFAULT_TEMPLATE, callbacks: list[Any] | None = None,
                 sample_every_s: float = 1.0, resume: ResumePlan | None = None,
                 on_done: Callable[[TrainingJob], None] | None = None) -> None:
        self.config = config
        self.on_done = on_done  # runs in the job's thread after the clean-up, before ``done`` turns true
        self.run = resume.run if resume else RunDir(run_dir)
        self.template = template
        self._loaded = loaded
        self._extra_callbacks = callbacks or []
        self._stop = threading.Event()
        self._saves_on_stop: bool | None = None  # Stop came once training had begun: the adapter will be saved
        self._diverged: str | None = None  # what stopped being finite, set by the recorder
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
        self._window = Pace()  # tokens/s and the ETA over the last logged steps
        self.data_summary: dict[str, Any] | None = None
        self.tokens_seen = 0  # real (non-pad) tokens trained on so far (credited by _Recorder)
        self._collated: deque[int] = deque()  # counts of batches not yet trained
        self.resume = resume
        self.meta: dict[str, Any] = resume.meta() if resume else {}  # extra run.json keys

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def resume_from(self) -> Path | None:
        """The complete checkpoint this job resumes from, if any."""
        return self.resume.checkpoint if self.resume else None

    @property
    def loaded(self) -> Any | None:
        """The job's model (with its LoRA) while the job holds it."""
        return self._loaded

    def take_model(self) -> Any | None:
        """Hand the model over (to kft.services.model_slot): the job keeps no reference after this."""
        loaded, self._loaded = self._loaded, None
        return loaded

    def _restore(self, plan: ResumePlan) -> None:
        """Continue ``plan``: metrics cut back to the checkpoint, loss/lr history and token count carried over."""
        rows = plan.run.truncate_metrics(plan.step)
        seen = [r["tokens_seen"] for r in rows if isinstance(r.get("tokens_seen"), int)]
        self.tokens_seen = seen[-1] if seen else 0
        self._set(step=plan.step, losses=series(rows, "loss"), learning_rates=series(rows, "learning_rate"),
                  eval_losses=series(rows, "eval_loss"), watch=plan.run.truncate_watch(plan.step))
        self._note(f"resuming {plan.run.name} from {plan.checkpoint.name} (step {plan.step})")

    def start(self) -> TrainingJob:
        if self._thread is not None:
            raise RuntimeError("this job was already started")
        if is_main() and self.resume is None and self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise ValueError(f"Run directory {self.run_dir} already holds files; each run needs a new directory")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume is not None:
            self._restore(self.resume)
        self._t0 = time.time()
        self._thread = threading.Thread(target=self._run, name=f"kft-train-{self.run_dir.name}", daemon=True)
        self._thread.start()
        threading.Thread(target=self._sampler, name="kft-mem", daemon=True).start()
        return self

    def stop(self) -> bool:
        """Ask the run to end after the current step; the adapter reached so far is saved. Returns whether an adapter
        will be saved: not for a run stopped before training began (still loading), which ends with none."""
        if self._done.is_set():
            return False
        with self._lock:  # the run may have ended already (its thread still frees memory): keep its status
            if self._snap.finished:
                self._stop.set()
                return False
            if self._saves_on_stop is None:  # the first Stop decides; a second one gets the same answer
                self._saves_on_stop = self._snap.status not in ("pending", "loading")
            saves = self._saves_on_stop
            self._stop.set()  # under the lock: _run reads the status and this flag together
            self._snap.status = "stopping"
        self._note("stop requested: " + ("ending after the current step" if saves else "ending before the first step"))
        return saves

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
                # the pace of this session's steps only: not the model load, not a resumed run's earlier steps;
                # over the last logged steps once there are some (one slow or fast step made the ETA swing)
                per_step = self._window.per_step() or (time.time() - self._pace[0]) / (s.step - self._pace[1])
                eta = max(per_step * (s.total_steps - s.step), 0.0)
            return replace(s, losses=list(s.losses), learning_rates=list(s.learning_rates), memory=list(s.memory),
                           eval_losses=list(s.eval_losses), watch=list(s.watch),
                           elapsed_s=elapsed, eta_s=eta, log_tail=list(self._log), log_count=self._log_count)

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
        with self._lock:
            smooth = self._window.log(now, step, tokens_seen)
        self._first_log = self._first_log or (now, tokens_seen)
        row = {"step": step, "time": round(now - self._t0, 3), "tokens_seen": tokens_seen,
               "tokens_per_s": round(tps, 1) if tps else None,
               **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
        with self._lock:
            if "loss" in logs:
                self._snap.losses.append((step, float(logs["loss"])))
            if "learning_rate" in logs:
                self._snap.learning_rates.append((step, float(logs["learning_rate"])))
            if "eval_loss" in logs:
                self._snap.eval_losses.append((step, float(logs["eval_loss"])))
            if smooth:
                self._snap.tokens_per_s = smooth
        if is_main():
            self.run.append_metrics(row)
        if "eval_loss" in logs:
            self._note(f"step {step}: evaluation loss {logs['eval_loss']:.4f}")
        if "loss" in logs:
            self._note(f"step {step}: loss {logs['loss']:.4f}, lr {logs.get('learning_rate', 0):.2e}"
                       + (f", {smooth:,.0f} tokens/s" if smooth else ""))


    def _sampler(self) -> None:
        while not self._done.is_set():
            m = memory.sample()
            with self._lock:
                self._snap.memory.append((round(m.t - self._t0, 2), round(m.allocated_gb, 3), round(m.reserved_gb, 3)))
                del self._snap.memory[:-3600]  # keep the last 3600 samples
            self._done.wait(self._sample_every)

    def _write_run_json(self, **extra: Any) -> None:
        if not is_main():
            return
        s = self.snapshot()
        lm = self._loaded
        info = {"status": s.status, "config": self.config.to_dict(), "run_dir": str(self.run_dir),
                "backend": lm.backend if lm else None, "backend_reason": lm.reason if lm else None,
                "dtype": lm.dtype if lm else None, "model_path": lm.path if lm else None,
                "started_at": time.strftime(TIME_FORMAT, time.localtime(self._t0)),
                "elapsed_s": round(s.elapsed_s, 2), "steps_done": s.step, "total_steps": s.total_steps,
                "final_loss": s.losses[-1][1] if s.losses else None, "error": s.error, "pid": os.getpid(),
                "data": self.data_summary, "memory": s.memory_report, **self.meta, **extra}
        self.run.write_json(info)

    def _run(self) -> None:
        trainer = None
        start_mem: dict[str, Any] = {}
        t_train = time.time()
        try:
            self._set(status="loading")
            self._write_run_json()
            trainer, start_mem = self._prepare()
            with self._lock:  # with stop()'s lock: a Stop is either before training (no adapter) or during it
                if self._stop.is_set():
                    raise _StoppedBeforeStart
                self._snap.status = "running"
            self._write_run_json()
            t_train = time.time()
            trainer = self._train(trainer)
            self._refuse_if_diverged()
            self._save_adapter()
            self._finish("stopped" if self._stop.is_set() else "completed", None, start_mem, time.time() - t_train)
        except _StoppedBeforeStart:
            self._finish("stopped", None, start_mem, 0.0)
            self._loaded = None  # no step ran and no adapter was saved: nothing in memory to keep
        except BaseException as exc:  # noqa: BLE001 - the app must keep serving whatever happened
            logger.error("training failed: %s", traceback.format_exc())
            try:
                self._finish("failed", classify(exc), start_mem, time.time() - t_train, failure=failure_kind(exc))
            finally:
                self._loaded = None  # even if the report could not be written: the model must be let go
        finally:
            del trainer
            memory.free_unused()
            if self.on_done is not None:
                try:
                    self.on_done(self)
                except Exception:  # noqa: BLE001 - the job must end whatever its listener does
                    logger.exception("on_done of %s failed", self.run_dir)
            self._done.set()

    def _train(self, trainer: Any) -> Any:
        """trainer.train(), resuming if asked; a checkpoint the trainer cannot read back is marked damaged and the
        previous complete one is tried (with a new trainer). Returns the trainer that trained."""
        while True:
            try:
                trainer.train(resume_from_checkpoint=str(self.resume_from) if self.resume_from else None)
                return trainer
            except Exception as exc:
                if self.resume is None or disk_full(exc) or not _raised_in(exc, CHECKPOINT_LOADERS):
                    raise
                bad = self.resume.checkpoint
                logger.error("%s could not be read back: %s", bad, traceback.format_exc())
                self.run.mark_damaged(bad, f"{type(exc).__name__}: {exc}"[:2000])  # the detail for the log only
                previous = self.run.last_complete_checkpoint(deep=True)
                if previous is None:
                    raise DamagedCheckpoint(f"{bad.name} is damaged (it could not be read back) and no earlier "
                                            "complete checkpoint is left: start a new run") from exc
                self._note(f"{bad.name} is damaged (it could not be read back): resuming from {previous.name}")
                self.resume = replace(self.resume, checkpoint=previous, step=int(previous.name.split("-")[1]))
                self.meta = self.resume.meta()
                self._restore(self.resume)
                del trainer
                trainer, _ = self._prepare()

    def checkpoint_saved(self, step: int) -> None:
        """The trainer has written checkpoint-``step`` whole: its manifest goes last, then run.json's step count."""
        ckpt = self.run.checkpoints_dir / f"checkpoint-{step}"
        if is_main() and ckpt.is_dir():
            (ckpt / DAMAGED).unlink(missing_ok=True)  # saved anew over a checkpoint a resume could not read
            self.run.write_manifest(ckpt)
        self._write_run_json()

    def _prepare(self) -> tuple[Any, dict[str, Any]]:
        from ..data.rows import load_rows, to_text_dataset
        from ..models.loading import attach_lora, for_training, load_base

        cfg = self.config
        if self._loaded is None:
            self._note(f"loading {cfg.model.name} ...")
            self._loaded = load_base(cfg.model)
            self._note(f"backend: {self._loaded.backend} ({self._loaded.reason}); dtype {self._loaded.dtype}")
            self._loaded = attach_lora(self._loaded, cfg.lora)
        start_mem = memory.start_report()  # with the model loaded, as the seed measures it
        self._set(backend=self.loaded.backend, backend_reason=self.loaded.reason)
        for_training(self.loaded)
        tok = self.loaded.tokenizer
        needed = rows_needed(cfg)
        report = load_rows(cfg.data, tok, self.template, cfg.model.max_seq_length, sample=needed, seed=cfg.train.seed)
        self.data_summary = report.summary()
        self._note(f"data: {len(report.rows)} rows; tokens {report.summary()['tokens']}")
        if needed is not None and report.used > len(report.rows):
            self._note(f"{cfg.train.max_steps} steps use at most {needed} rows: {len(report.rows)} drawn at random "
                       f"(seed {cfg.train.seed}) from the {report.used} usable rows, every one of which was checked")
        for line in report.problem_lines(5):
            self._note(line)
        dataset, held_out = self._split(to_text_dataset(report, self.template, tok.eos_token))
        from .trainer import lean_trainer_class

        ensure_trl_cpu_kernel()
        args = to_sft_config(cfg, self.run_dir, cuda_capability())
        trainer = lean_trainer_class()(model=self.loaded.model, args=args, train_dataset=dataset,
                                       eval_dataset=held_out, processing_class=tok,
                                       callbacks=[Recorder(self), *self._extra_callbacks])
        trainer.data_collator = CountingCollator(trainer.data_collator, self)
        trainer.remove_callback(PrinterCallback)  # progress goes through the job's log, not stdout
        return trainer, start_mem

    def _split(self, dataset: Any) -> tuple[Any, Any | None]:
        """(training rows, held-out rows or None): train.eval_share of the rows, drawn with the run's seed."""
        share = self.config.train.eval_share
        if share <= 0:
            return dataset, None
        parts = dataset.train_test_split(test_size=max(share, 1 / len(dataset)), seed=self.config.train.seed)
        self._note(f"evaluation: {len(parts['test'])} rows held out, {len(parts['train'])} trained on")
        return parts["train"], parts["test"]

    def _checkpoint_layers(self, model: Any) -> None:
        """lora.checkpoint_layers: only that many decoder layers recompute their activations (the rest keep them)."""
        from ..models.loading import limit_checkpointing

        on, total = limit_checkpointing(model, self.config.lora.checkpoint_layers)
        if on or self.config.lora.use_gradient_checkpointing:
            self._note(f"gradient checkpointing in {on} of {total} decoder layers")

    def _watch(self, step: int) -> None:
        """The watch prompts answered by the model as it is at this step (kft.training.watch); recorded and written."""
        from . import watch

        rows = watch.at_step(self.loaded, self.template, self.config.train, step) if is_main() else []
        if not rows:
            return
        with self._lock:
            self._snap.watch.extend(rows)
        for row in rows:
            self.run.append_watch(row)
        self._note(f"step {step}: watch: " + ", ".join(f"{r['kind']} {'refused' if r['refusal'] else 'answered'}"
                                                       for r in rows))

    def _refuse_if_diverged(self) -> None:
        """TrainingDiverged if a logged loss or a trained weight is NaN or inf (nothing broken is saved as trained)."""
        import torch

        what = self._diverged
        if what is None:
            bad = [n for n, p in self.loaded.model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
            what = f"the adapter's weights ({len(bad)} tensors, e.g. {bad[0]})" if bad else None
        if what:
            raise TrainingDiverged(f"training diverged: {what} stopped being finite (NaN or inf), so no adapter is "
                                   "saved. Lower the learning rate or the weight decay, or clip gradients "
                                   "(max_grad_norm)")

    def _save_adapter(self) -> None:
        if not is_main():
            return
        out = self.run.adapter
        self.loaded.model.save_pretrained(str(out))
        self.loaded.tokenizer.save_pretrained(str(out))
        self.template.save(out, pad=self.loaded.pad.to_json() if self.loaded.pad else None)
        unpath_adapter(out, self.loaded.path, self.config.model.name)  # the Hub id or 'tiny', not a cache folder
        self._note(f"adapter saved to {out}")

    def _finish(self, status: str, error: str | None, start_mem: dict[str, Any], seconds: float,
                failure: str | None = None) -> None:
        report = memory.final_report(start_mem, seconds) if start_mem else None
        with self._lock:
            self._snap.elapsed_s = time.time() - self._t0
            first, last = self._first_log, self._last_log
            if first and last and last[0] > first[0] and last[1] > first[1]:
                # a finished run shows its average: a stopped run's last step (cut short) showed 1/20 of the rate
                self._snap.tokens_per_s = (last[1] - first[1]) / (last[0] - first[0])
        self._set(status=status, error=error, memory_report=report)
        self._note(f"run {status}" + (f": {error}" if error else ""))
        if report:
            for line in memory.format_report(report).splitlines():
                self._note(line)
        try:
            self._write_run_json(finished_at=time.strftime(TIME_FORMAT), failure=failure)
        except OSError as exc:  # disk full, say: the status above still tells the app and the CLI
            logger.error("could not write run.json: %s", exc)
            self._note(f"could not write run.json: {exc}")


class _StoppedBeforeStart(Exception):
    pass


def _raised_in(exc: BaseException, functions: frozenset[str]) -> bool:
    """Whether one of ``functions`` is on the traceback of ``exc``."""
    return any(frame.name in functions for frame in traceback.extract_tb(exc.__traceback__))
