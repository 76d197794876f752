"""Workspace: composes the services of one process (one per app; every tab and API caller shares it)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..runs import store as runs
from .comparison import ComparisonService
from .exports import ExportFolder, download_key, export_root
from .limits import READ_ONLY, Limits
from .login import LoginThrottle
from .model_slot import BusyError, ModelSlot
from .training import TrainingService
from .uploads import UploadStore

logger = logging.getLogger(__name__)


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

    def delete_run(self, name: str) -> str:
        """Delete run ``name`` for good: its directory (adapter, checkpoints, metrics, its zip) and the zip's copy
        handed out for download; its adapter leaves memory. Refused in read-only mode (ValueError), and while the run
        trains or its adapter is being compared (BusyError: deleting it then would pull the files or the adapter from
        under them). Returns the name deleted. The only operation that spans the services: hence here."""
        if self.limits.read_only:
            raise ValueError(READ_ONLY)
        run = runs.find(self.runs_dir, name)
        live = self.training.live_run()
        if live is not None and live.path.resolve() == run.path.resolve():
            raise BusyError(f"run {run.name} is training: stop it in the training tab, then delete it once it has "
                            "ended")
        try:
            self.slot.forget(str(run.path))
        except BusyError:
            raise BusyError(f"the adapter of run {run.name} is in use on the model right now (a comparison or a "
                            "scorecard); delete it when that has finished") from None
        zip_key = download_key(run.zip_file)
        try:
            shutil.rmtree(run.path)
        except OSError as exc:  # a read-only data directory: kft's words, and what is left stays listed
            raise ValueError(f"run {run.name} could not be deleted: {runs.os_reason(exc)}") from None
        self.exports.remove("downloads", zip_key)
        self.uploads.prune()  # an upload only this run pointed to now follows the retention rules
        logger.info("run %s deleted", run.name)
        return run.name
