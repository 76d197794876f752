"""A training job as others see it: JobSnapshot (plain data the UI and the CLI render) and its failures in plain words."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

FINAL_STATES = ("completed", "stopped", "failed", "interrupted")


@dataclass
class JobSnapshot:
    """Plain data describing a job at one moment (what the UI and CLI render)."""

    status: str
    run_dir: str
    step: int = 0
    total_steps: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)  # on the held-out share, if any
    watch: list[dict[str, Any]] = field(default_factory=list)  # the watch prompts' answers (kft.training.watch)
    learning_rates: list[tuple[int, float]] = field(default_factory=list)
    memory: list[tuple[float, float, float]] = field(default_factory=list)
    memory_label: str = ""
    tokens_per_s: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    log_tail: list[str] = field(default_factory=list)
    log_count: int = 0  # lines logged since the start (log_tail keeps only the last ones)
    error: str | None = None
    backend: str | None = None
    backend_reason: str | None = None
    memory_report: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATES


DISK_FULL = "the disk is full: free space and press Resume"


class DamagedCheckpoint(RuntimeError):
    """A resume could not read its checkpoint back and no earlier complete one is left (the message says so)."""


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the disk running out of space: OSError ENOSPC, or a library's text."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        text = str(exc).lower()
        if "no space left on device" in text or "os error 28" in text or "errno 28" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def failure_kind(exc: BaseException) -> str | None:
    """Why a run failed when the cause can go away and the run resume (kft.runs.store.RESUMABLE_FAILURES)."""
    if disk_full(exc):
        return "disk_full"
    return "damaged_checkpoint" if isinstance(exc, DamagedCheckpoint) else None


class TrainingDiverged(RuntimeError):
    """The loss or the adapter's weights stopped being finite: the run fails and its adapter is not saved."""


def classify(exc: BaseException) -> str:
    """A failure in plain words."""
    from ..data.rows import DataError
    from ..models.loading import ModelLoadError

    text = f"{type(exc).__name__}: {exc}"  # matched below; the page gets the message, the log the traceback
    if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return ("out of memory: the GPU ran out of memory. Lower the batch size or max_seq_length, "
                f"or use 4-bit loading. ({str(exc)[:200]})")
    if disk_full(exc):
        return DISK_FULL
    if isinstance(exc, (TrainingDiverged, DamagedCheckpoint)):
        return str(exc)
    if isinstance(exc, DataError):
        return f"bad data: {exc}"
    if isinstance(exc, ModelLoadError):
        return f"missing model: {exc}"
    return f"the run stopped on an unexpected problem: {str(exc)[:1000] or type(exc).__name__}"
