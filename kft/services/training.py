"""TrainingService: the one training job of this process: start, resume, stop, its snapshot, its adapter.

Every request is checked here, once, before anything loads (settings, this server's limits, the model, local data);
the job it starts trusts its config.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..config.args import RunConfig
from ..config.files import config_from_dict
from ..config.validation import Problem, SettingsError, check
from ..runs import export
from ..runs import store as runs
from ..training import preflight
from ..training.job import TrainingJob
from ..training.snapshot import JobSnapshot
from .limits import Limits, step_cap
from .model_slot import BusyError, ModelSlot

logger = logging.getLogger(__name__)
DISK_CACHE = 32  # runs whose snapshot read from disk is kept


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class TrainingService:
    def __init__(self, runs_dir: Path, slot: ModelSlot, limits: Limits) -> None:
        self.runs_dir, self.slot, self.limits = runs_dir, slot, limits
        self._start_lock = threading.Lock()
        self.job: TrainingJob | None = None  # the current or last run of this process (written here only)
        self._disk_cache: dict[Path, tuple[tuple, JobSnapshot]] = {}  # run -> (its files' times, snapshot)
        self._info_cache: dict[Path, tuple[tuple, runs.RunInfo]] = {}  # run -> (its files' key, what it says)
        self._info_lock = threading.Lock()

    @property
    def active(self) -> bool:
        """A run is going (or its thread is still freeing memory)."""
        return self.job is not None and not self.job.done

    def start(self, config: RunConfig) -> TrainingJob:
        """Check, then start the one background run. Raises ValueError or BusyError, never blocks."""
        self.limits.refuse_if_read_only()
        self._check(config)
        return self._launch(config)

    def resume(self, name: str) -> TrainingJob:
        """Resume the interrupted run called ``name`` from its last complete checkpoint, in its own directory."""
        self.limits.refuse_if_read_only()
        plan = runs.resume_plan(runs.find(self.runs_dir, name), self.live_run())
        config = config_from_dict(plan.config)
        self._check(config)
        return self._launch(config, plan)

    def problems(self, config: RunConfig) -> list[Problem]:
        """Everything wrong with these settings for a run here: their own rules and this server's limits."""
        return check(config, "model", "lora", "data", "train") + self.limits.run_problems(config)

    def _check(self, config: RunConfig) -> None:
        problems = self.problems(config)
        if problems:
            raise SettingsError(problems)
        self._refuse_if_busy()
        preflight.check_model_available(config.model.name)
        preflight.check_data(config.data)

    def _launch(self, config: RunConfig, plan: runs.ResumePlan | None = None) -> TrainingJob:
        if not self._start_lock.acquire(blocking=False):
            raise BusyError("a training run is being started right now; only one run at a time")
        try:
            self._refuse_if_busy()
            try:
                run = plan.run if plan else runs.claim(self.runs_dir)
            except OSError as exc:  # a read-only or full data directory
                raise ValueError(f"the run could not start: {runs.os_reason(exc)}") from exc
            job = TrainingJob(config, run.path, callbacks=[step_cap(self.limits.max_steps)], resume=plan,
                              on_done=self.slot.end_training)
            try:
                self.slot.claim_for_training(run.name)  # lets the model in memory go: the run loads its own
            except BusyError:
                if plan is None:
                    run.path.rmdir()  # claimed a moment ago, still empty
                raise
            previous, self.job = self.job, job  # visible as the live run before its thread writes run.json
            try:
                job.start()
            except OSError as exc:  # disk full, read-only data dir: a never-started job would count as
                self.job = previous  # training forever and refuse every later Start and generation
                self.slot.end_training(None)
                raise ValueError(f"the run could not start: {runs.os_reason(exc)}") from exc
            return job
        finally:
            self._start_lock.release()

    def _refuse_if_busy(self) -> None:
        if self.active:
            if self.job.snapshot().finished:  # ended; its thread is freeing memory (a second or so)
                raise BusyError(f"the last run ({self.job.run_dir.name}) has ended and is still freeing its "
                                "memory; start again in a moment", by="finishing")
            raise BusyError(f"a training run is already in progress ({self.job.run_dir.name}); "
                            "stop it or wait for it to finish")
        if self.slot.generating:
            raise BusyError("a generation is running on the model; try again when it has finished", by="generation")

    def stop(self) -> str | None:
        """Stop the run: ``"adapter"`` (it ends after the current step and saves the adapter trained so far),
        ``"no_adapter"`` (stopped before its first step: it ends with none), None (no run to stop)."""
        if self.active:
            return "adapter" if self.job.stop() else "no_adapter"
        return None

    def snapshot(self) -> JobSnapshot | None:
        """The current or last run of this process; after a restart, the newest run on disk (None: no run at all)."""
        return self.job.snapshot() if self.job else self.disk_snapshot()

    def disk_snapshot(self, name: str | None = None) -> JobSnapshot | None:
        """A run as its files tell it (``name``, or the newest run): status, steps, curves, watch answers, report."""
        try:
            run = runs.find(self.runs_dir, name) if name else next(iter(runs.run_dirs(self.runs_dir)), None)
        except ValueError:
            return None
        if run is None:
            return None
        key = (run.path, *(_mtime(p) for p in (run.run_json, run.metrics_file, run.watch_file, run.checkpoints_dir)))
        cached = self._disk_cache.get(run.path)
        if cached is None or cached[0] != key:  # every page polls it: read the files once while they are unchanged
            if len(self._disk_cache) > DISK_CACHE:
                self._disk_cache.clear()
            cached = self._disk_cache[run.path] = (key, self._read_snapshot(run))
        return cached[1]

    def _read_snapshot(self, run: runs.RunDir) -> JobSnapshot:
        info, raw, rows = runs.run_info(run, self.live_run()), run.read_json() or {}, run.read_metrics()
        elapsed = raw.get("elapsed_s")
        return JobSnapshot(status=info.status, run_dir=str(run.path), step=info.steps_done,
                           total_steps=info.total_steps, losses=runs.series(rows, "loss"),
                           learning_rates=runs.series(rows, "learning_rate"), eval_losses=runs.series(rows, "eval_loss"),
                           watch=run.read_watch(), elapsed_s=float(elapsed) if isinstance(elapsed, (int, float)) else 0.0,
                           error=info.error, backend=raw.get("backend"), backend_reason=raw.get("backend_reason"),
                           memory_report=raw.get("memory") if isinstance(raw.get("memory"), dict) else None,
                           log_tail=[f"{run.name}: read from its run directory (run.json, metrics.jsonl)",
                                     *(f"{run.name}: {d}" for d in info.damage)])

    def live_run(self) -> runs.RunDir | None:
        """The run this process is training now, if any."""
        return self.job.run if self.active else None

    def runs(self) -> list[runs.RunInfo]:
        """Every run under runs/, newest first, with its status (``interrupted`` when nobody runs it). Every page's
        runs tab asks on each tick: a run whose files have not changed is not read again (checking a checkpoint
        opens its archives: 29 ms a poll for 6 runs), and the same RunInfo objects come back (read-only)."""
        live = self.live_run()
        out = []
        with self._info_lock:
            seen = set()
            for run in runs.run_dirs(self.runs_dir):
                key = (runs.files_key(run), run == live)
                hit = self._info_cache.get(run.path)
                if hit is None or hit[0] != key:
                    info = runs.run_info(run, live)
                    if info.status in runs.LIVE_STATES:  # its owner may die with no file changing: read each time
                        out.append(info)
                        continue
                    hit = self._info_cache[run.path] = (key, info)
                out.append(hit[1])
                seen.add(run.path)
            for gone in set(self._info_cache) - seen:
                del self._info_cache[gone]
        return out

    def finished_run_dir(self) -> Path:
        """Run directory of the last run, once it has ended (ValueError otherwise)."""
        if self.job is None:
            raise ValueError("no run yet: train an adapter first")
        # not job.done (memory may still be freeing): the tick first showing "completed" would find no zip, then never
        if not self.job.snapshot().finished:
            raise ValueError("the run is still going: wait until it has finished")
        return self.job.run_dir

    def adapter_zip(self) -> Path:
        """Zip of the last finished run's adapter, written inside its run directory."""
        return export.zip_adapter(self.finished_run_dir())

    def push_adapter(self, repo_id: str, private: bool = True) -> str:
        """Push the last finished run's adapter to the Hub (token from HF_TOKEN only); returns the URL."""
        self.limits.refuse_if_read_only()
        return export.push_adapter(self.finished_run_dir(), repo_id, private)
