"""Process-wide state shared by every browser tab and every API caller.

One Workspace per process holds: the one training job (guarded by a lock), the loaded model used by
the comparison (base weights loaded once; adapters put on top), and the GPU lock that keeps training
and generation from competing. The UI polls it; nothing here imports gradio.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import export, memory, persistence, preflight
from .config import SAMPLE_DATA, RunConfig, invalid_settings
from .data import FILE_SUFFIXES
from .train import JobSnapshot, TrainingJob

logger = logging.getLogger(__name__)


class BusyError(RuntimeError):
    """The GPU/CPU is busy with another run or generation; the message says with what, ``by`` says it
    in a word ("training", "finishing": a run that ended and frees memory, or "generation") for a UI
    that words its own message."""

    def __init__(self, message: str, by: str = "training") -> None:
        super().__init__(message)
        self.by = by


@dataclass
class Limits:
    """Upper limits enforced on the server (public deployments lower them)."""

    max_steps: int = 10_000
    max_new_tokens: int = 1024
    read_only: bool = False
    allowed_models: tuple[str, ...] | None = None  # None = any
    max_upload_bytes: int = 200 * 1024**2


READ_ONLY = "this app is read-only (comparison only): training, resuming, uploads and Hub pushes are switched off"
# Bounds every request must keep, whatever the deployment: each event is callable directly through the API.
UPPER_BOUNDS: dict[tuple[str, str], float] = {
    ("model", "max_seq_length"): 32_768, ("lora", "r"): 1024, ("lora", "lora_alpha"): 65_536,
    ("train", "per_device_train_batch_size"): 1024, ("train", "gradient_accumulation_steps"): 1024,
    ("train", "num_train_epochs"): 1000, ("train", "warmup_steps"): 1_000_000, ("train", "logging_steps"): 1_000_000,
    ("train", "save_steps"): 1_000_000, ("data", "max_rows"): 100_000_000,
}
TEXT_LIMITS: dict[tuple[str, str], int] = {
    ("model", "name"): 256, ("data", "source"): 1024, ("data", "split"): 64, ("train", "optim"): 64,
    ("train", "lr_scheduler_type"): 64,
}


def _step_cap(limit: int) -> Any:
    """A callback that fails a run whose Trainer plans more than ``limit`` steps (epoch runs on Hub data,
    whose length is known only once the data is loaded)."""
    from transformers import TrainerCallback

    class StepCap(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
            if state.max_steps > limit:
                raise ValueError(f"this run would take {state.max_steps} steps; this server's limit is {limit}")

    return StepCap()


class Workspace:
    def __init__(self, data_dir: str | Path, limits: Limits | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.runs_dir = self.data_dir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.limits = limits or Limits()
        self._start_lock = threading.Lock()
        self.gpu_lock = threading.Lock()  # held by generation; training refuses to start while held
        self.job: TrainingJob | None = None
        self.loaded: Any | None = None  # LoadedModel used by the comparison tab
        self.loaded_adapters: dict[str, str] = {}  # adapter name -> source (run dir / hub id)
        persistence.mark_interrupted(self.runs_dir)  # runs a previous process left unfinished

    # ---- training -------------------------------------------------------------------------------
    @property
    def training(self) -> bool:
        return self.job is not None and not self.job.done

    def check_model_allowed(self, name: str) -> None:
        allowed = self.limits.allowed_models
        if allowed is not None and (name or "").strip() not in allowed:
            raise ValueError(f"model {str(name)[:100]!r} is not allowed here; allowed: {list(allowed)}")

    def refuse_if_read_only(self) -> None:
        if self.limits.read_only:
            raise ValueError(READ_ONLY)

    def check_limits(self, config: RunConfig) -> None:
        """This server's limits (steps, sizes, text lengths, allowed models): one ValueError listing all."""
        problems = []
        if self.limits.read_only:
            problems.append(READ_ONLY)
        for (section, name), limit in TEXT_LIMITS.items():
            value = str(getattr(getattr(config, section), name) or "")
            if len(value) > limit:
                problems.append(f"{section}.{name} is {len(value):,} characters long; the limit is {limit}")
        for (section, name), limit in UPPER_BOUNDS.items():
            value = getattr(getattr(config, section), name)
            if value is not None and value > limit:
                problems.append(f"{section}.{name} {value} is above this server's limit of {limit:g}")
        steps = self._planned_steps(config)
        if steps is not None and steps > self.limits.max_steps:
            what = "max_steps" if config.train.max_steps > 0 else "the epochs asked for make about"
            problems.append(f"{what} {steps} is above this server's limit of {self.limits.max_steps} steps")
        try:
            self.check_model_allowed(config.model.name)
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise invalid_settings(problems)

    @staticmethod
    def _planned_steps(config: RunConfig) -> int | None:
        """Optimizer steps of the run: max_steps, or for epochs over local data an upper estimate
        (None for epochs over a Hub dataset: the step cap callback checks those once the data is loaded)."""
        t, d = config.train, config.data
        if t.max_steps > 0:
            return t.max_steps
        if d.source != SAMPLE_DATA and Path(d.source).suffix.lower() not in FILE_SUFFIXES:
            return None
        from .data import read_records

        rows = len(read_records(d.source))
        rows = min(rows, d.max_rows) if d.max_rows else rows
        per_epoch = math.ceil(math.ceil(rows / max(t.per_device_train_batch_size, 1))
                              / max(t.gradient_accumulation_steps, 1))
        return math.ceil(per_epoch * t.num_train_epochs)

    def start_training(self, config: RunConfig) -> TrainingJob:
        """Validate, then start the one background run. Raises ValueError or BusyError, never blocks.

        Before anything is loaded: the settings are valid and within this server's limits, the model can
        be found from here (local directory, HF cache, or the Hub when online), and local data reads
        without bad rows."""
        self.refuse_if_read_only()
        self._check_run(config)
        return self._launch(config)

    def resume_training(self, name: str) -> TrainingJob:
        """Resume the interrupted run called ``name`` from its last complete checkpoint, in its own directory."""
        self.refuse_if_read_only()
        run_dir = persistence.run_dir_of(self.runs_dir, name)
        plan = persistence.resume_plan(run_dir, self.live_run())
        config = RunConfig.from_dict(plan.config)
        self._check_run(config)
        return self._launch(config, plan)

    def _check_run(self, config: RunConfig) -> None:
        config.validate()
        self.check_limits(config)
        self._refuse_if_busy()
        preflight.check_model_available(config.model.name)
        preflight.check_data(config.data)

    def _launch(self, config: RunConfig, plan: persistence.ResumePlan | None = None) -> TrainingJob:
        if not self._start_lock.acquire(blocking=False):
            raise BusyError("a training run is being started right now; only one run at a time")
        try:
            self._refuse_if_busy()
            try:
                run_dir = plan.run_dir if plan else persistence.claim_run_dir(self.runs_dir)
            except OSError as exc:  # a read-only or full data directory
                raise ValueError(f"the run could not start: {exc}") from exc
            job = TrainingJob(config, run_dir,
                              callbacks=[_step_cap(self.limits.max_steps)],
                              resume_from=plan.checkpoint if plan else None, on_done=self._adopt)
            if plan is not None:
                persistence.restore(job, plan)
            # a fresh LoRA needs a fresh base: the job loads its own model, so free the others first
            if self.job is not None:
                self.job.loaded = None  # the finished run's reference too, or its weights stay in memory
            self.release_model()  # free the comparison model before loading another copy
            previous, self.job = self.job, job  # visible as the live run before its thread writes run.json
            try:
                job.start()
            except OSError as exc:  # disk full, read-only data dir: a never-started job would count as
                self.job = previous  # training forever and refuse every later Start and generation
                raise ValueError(f"the run could not start: {exc}") from exc
            return job
        finally:
            self._start_lock.release()

    def live_run(self) -> Path | None:
        """Run directory of the run this process is training now, if any."""
        return self.job.run_dir if self.training else None

    def runs(self) -> list[persistence.RunInfo]:
        """Every run under runs/, newest first, with its status (``interrupted`` when nobody runs it)."""
        return persistence.list_runs(self.runs_dir, self.live_run())

    def _refuse_if_busy(self) -> None:
        if self.training:
            if self.job.snapshot().finished:  # ended; its thread is freeing memory (a second or so)
                raise BusyError(f"the last run ({self.job.run_dir.name}) has ended and is still freeing its "
                                "memory; start again in a moment", by="finishing")
            raise BusyError(f"a training run is already in progress ({self.job.run_dir.name}); "
                            "stop it or wait for it to finish")
        if self.gpu_lock.locked():
            raise BusyError("a generation is running on the model; try again when it has finished", by="generation")

    def _adopt(self, job: TrainingJob) -> None:
        """A finished run's model (with its adapter) becomes the comparison model: no second load.
        Called by the job's own thread before it counts as done, so no comparison request can slip in
        between the end of training and the adoption (and load a second copy of the base)."""
        snap = job.snapshot()
        saved = (Path(job.run_dir) / persistence.ADAPTER_CONFIG).is_file()
        if snap.status in ("completed", "stopped") and saved and job.loaded is not None:  # stopped while
            # loading: no adapter was saved, and the untrained LoRA in memory must not pose as one
            self.loaded = job.loaded
            self.loaded_adapters = {"default": str(job.run_dir)}
            logger.info("comparison model is now the trained model of %s", job.run_dir)

    def stop_training(self) -> bool:
        if self.training:
            self.job.stop()
            return True
        return False

    def snapshot(self) -> JobSnapshot | None:
        return self.job.snapshot() if self.job else None

    # ---- data uploads and the finished run's adapter ----------------------------------------------
    def store_upload(self, path: str | Path) -> Path:
        """Copy an uploaded data file into DATA_DIR/uploads (name prefixed by its content hash), so a
        run's config points at a file that outlives the browser session."""
        self.refuse_if_read_only()
        src = Path(path)
        if not src.is_file():
            raise ValueError(f"The uploaded file could not be read: {src.name}")
        if src.suffix.lower() not in FILE_SUFFIXES:
            raise ValueError(f"{src.name}: only {', '.join(FILE_SUFFIXES)} files are accepted")
        if src.stat().st_size > self.limits.max_upload_bytes:
            raise ValueError(f"{src.name} is {src.stat().st_size / 1024**2:,.1f} MB; the limit is "
                             f"{self.limits.max_upload_bytes / 1024**2:,.0f} MB")
        digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
        target = self.data_dir / "uploads" / f"{digest}-{src.name}"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        return target

    def finished_run_dir(self) -> Path:
        """Run directory of the last run, once it has ended (ValueError otherwise)."""
        if self.job is None:
            raise ValueError("no run yet: train an adapter first")
        # The snapshot's final status is set once the adapter is saved; the thread's memory clean-up may
        # still be going on (job.done). Waiting for that would race the UI: the tick that first shows
        # "completed" would find no zip, and later ticks send nothing because nothing else changed.
        if not self.job.snapshot().finished:
            raise ValueError("the run is still going: wait until it has finished")
        return self.job.run_dir

    def adapter_zip(self) -> Path:
        """Zip of the last finished run's adapter, written inside its run directory."""
        return export.zip_adapter(self.finished_run_dir())

    def push_adapter(self, repo_id: str, private: bool = True) -> str:
        """Push the last finished run's adapter to the Hub (token from HF_TOKEN only); returns the URL."""
        self.refuse_if_read_only()
        return export.push_adapter(self.finished_run_dir(), repo_id, private)

    # ---- comparison model -----------------------------------------------------------------------
    def acquire_gpu(self, cancel: threading.Event | None = None, timeout_s: float = 600.0) -> bool:
        """Take ``gpu_lock`` for a generation (used by kft/compare.py); release it with ``gpu_lock.release()``.

        Raises BusyError while a training run is going (checked under the same lock that
        ``start_training`` holds, so the two cannot both start) or when the lock stays taken past
        ``timeout_s``. Returns False, without the lock, when ``cancel`` is set while waiting.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with self._start_lock:
                if self.training:
                    raise BusyError(f"the GPU is busy training ({self.job.run_dir.name}); "
                                    "generation is refused until the run ends")
                if self.gpu_lock.acquire(blocking=False):
                    return True
            if cancel is not None and cancel.is_set():
                return False
            if time.monotonic() > deadline:
                raise BusyError("another generation is still running on the model; try again in a moment",
                                by="generation")
            time.sleep(0.02)

    def release_model(self) -> None:
        self.loaded = None
        self.loaded_adapters = {}
        memory.free_unused()
