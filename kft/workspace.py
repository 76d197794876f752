"""Process-wide state shared by every browser tab and every API caller.

One Workspace per process holds: the one training job (guarded by a lock), the loaded model used by
the comparison (base weights loaded once; adapters put on top), and the GPU lock that keeps training
and generation from competing. The UI polls it; nothing here imports gradio.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import export, preflight
from .config import RunConfig
from .train import JobSnapshot, TrainingJob

logger = logging.getLogger(__name__)


class BusyError(RuntimeError):
    """The GPU/CPU is busy with another run or generation; the message says with what."""


@dataclass
class Limits:
    """Upper limits enforced on the server (public deployments lower them)."""

    max_steps: int = 10_000
    max_new_tokens: int = 1024
    read_only: bool = False
    allowed_models: tuple[str, ...] | None = None  # None = any


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

    # ---- training -------------------------------------------------------------------------------
    @property
    def training(self) -> bool:
        return self.job is not None and not self.job.done

    def new_run_dir(self) -> Path:
        base = time.strftime("%Y%m%d-%H%M%S")
        path = self.runs_dir / base
        n = 1
        while path.exists():
            n += 1
            path = self.runs_dir / f"{base}-{n}"
        return path

    def check_limits(self, config: RunConfig) -> None:
        problems = []
        if self.limits.read_only:
            problems.append("this app is read-only (comparison only): training is switched off")
        if config.train.max_steps > self.limits.max_steps:
            problems.append(f"max_steps {config.train.max_steps} is above this server's limit of {self.limits.max_steps}")
        if self.limits.allowed_models is not None and config.model.name not in self.limits.allowed_models:
            problems.append(f"model {config.model.name!r} is not allowed here; allowed: {list(self.limits.allowed_models)}")
        if problems:
            raise ValueError("Invalid settings:\n- " + "\n- ".join(problems))

    def start_training(self, config: RunConfig) -> TrainingJob:
        """Validate, then start the one background run. Raises ValueError or BusyError, never blocks.

        Before anything is loaded: the settings are valid, the model can be found from here (local
        directory, HF cache, or the Hub when online), and local data reads without bad rows."""
        config.validate()
        self.check_limits(config)
        self._refuse_if_busy()
        preflight.check_model_available(config.model.name)
        preflight.check_data(config.data)
        if not self._start_lock.acquire(blocking=False):
            raise BusyError("a training run is being started right now; only one run at a time")
        try:
            self._refuse_if_busy()
            reuse = self._reusable_base(config)
            job = TrainingJob(config, self.new_run_dir(), loaded=reuse)
            self.job = job
            if reuse is None:
                self.release_model()  # free the comparison model before loading another copy
            job.start()
            threading.Thread(target=self._adopt_when_done, args=(job,), daemon=True).start()
            return job
        finally:
            self._start_lock.release()

    def _refuse_if_busy(self) -> None:
        if self.training:
            raise BusyError(f"a training run is already in progress ({self.job.run_dir.name}); "
                            "stop it or wait for it to finish")
        if self.gpu_lock.locked():
            raise BusyError("a generation is running on the model; try again when it has finished")

    def _reusable_base(self, config: RunConfig) -> None:
        """Fresh LoRA needs a fresh base: the trained model is not reused for a new run."""
        return None

    def _adopt_when_done(self, job: TrainingJob) -> None:
        """A finished run's model (with its adapter) becomes the comparison model: no second load."""
        job.join()
        snap = job.snapshot()
        if snap.status in ("completed", "stopped") and job.loaded is not None:
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
        src = Path(path)
        if not src.is_file():
            raise ValueError(f"The uploaded file could not be read: {src.name}")
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
        if not self.job.done:
            raise ValueError("the run is still going: wait until it has finished")
        return self.job.run_dir

    def adapter_zip(self) -> Path:
        """Zip of the last finished run's adapter, written inside its run directory."""
        return export.zip_adapter(self.finished_run_dir())

    def push_adapter(self, repo_id: str, private: bool = True) -> str:
        """Push the last finished run's adapter to the Hub (token from HF_TOKEN only); returns the URL."""
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
                raise BusyError("another generation is still running on the model; try again in a moment")
            time.sleep(0.02)

    def release_model(self) -> None:
        import gc

        self.loaded = None
        self.loaded_adapters = {}
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass
