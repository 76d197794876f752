"""Workspace: composes the services of one process (one per app; every tab and API caller shares it)."""

from __future__ import annotations

from pathlib import Path

from ..runs import store as runs
from .comparison import ComparisonService
from .exports import ExportFolder, export_root
from .limits import Limits
from .login import LoginThrottle
from .model_slot import ModelSlot
from .training import TrainingService
from .uploads import UploadStore


class Workspace:
    def __init__(self, data_dir: str | Path, limits: Limits | None = None, upload_scratch: Path | None = None) -> None:
        """``upload_scratch``: the folder the web server puts uploads in (a refused upload is removed from it)."""
        self.data_dir = Path(data_dir).resolve()
        self.runs_dir = self.data_dir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.limits = limits or Limits()
        self.slot = ModelSlot()
        self.training = TrainingService(self.runs_dir, self.slot, self.limits)
        self.comparison = ComparisonService(self.runs_dir, self.slot, self.training, self.limits)
        self.uploads = UploadStore(self.data_dir / "uploads", self.limits, self.runs_dir, upload_scratch)
        runs.mark_interrupted(self.runs_dir)  # runs a previous process left unfinished
        self.uploads.prune()
        self.exports = ExportFolder(export_root(self.data_dir))  # emptied: a new process hands out new files
        self.logins = LoginThrottle()  # failed logins per client address
