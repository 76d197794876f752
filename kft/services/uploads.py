"""Uploaded data files, kept under DATA_DIR/uploads so a run's config points at a file that outlives the
browser session (Gradio's own copy lives in its cache)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from ..data import FILE_SUFFIXES
from .limits import Limits


class UploadStore:
    def __init__(self, folder: Path, limits: Limits) -> None:
        self.folder, self.limits = folder, limits

    def store(self, path: str | Path) -> Path:
        """Copy an uploaded data file here (name prefixed by its content hash) and return the copy."""
        self.limits.refuse_if_read_only()
        src = Path(path)
        if not src.is_file():
            raise ValueError(f"The uploaded file could not be read: {src.name}")
        if src.suffix.lower() not in FILE_SUFFIXES:
            raise ValueError(f"{src.name}: only {', '.join(FILE_SUFFIXES)} files are accepted")
        if src.stat().st_size > self.limits.max_upload_bytes:
            raise ValueError(f"{src.name} is {src.stat().st_size / 1024**2:,.1f} MB; the limit is "
                             f"{self.limits.max_upload_bytes / 1024**2:,.0f} MB")
        digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
        target = self.folder / f"{digest}-{src.name}"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        return target
