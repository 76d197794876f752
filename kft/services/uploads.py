"""Uploaded data files, kept under DATA_DIR/uploads so a run's config points at a file that outlives the
browser session (Gradio's own copy lives in its cache).

Retention: a file is stored once per content (named by its hash). A refused upload is never stored, and its copy
in Gradio's upload folder (``scratch``) is removed. Stored files a run's config does not point to are removed
once older than ``Limits.uploads_keep_days``, and oldest first while the folder holds more than
``Limits.uploads_keep_bytes``; a file stored in the last ``GRACE_S`` seconds is kept (a run may be starting from it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

from ..data.rows import FILE_SUFFIXES
from ..runs import store as runs
from .limits import Limits

logger = logging.getLogger(__name__)

GRACE_S = 600


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:12]


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.resolve().is_relative_to(folder.resolve())


class UploadStore:
    def __init__(self, folder: Path, limits: Limits, runs_dir: Path | None = None,
                 scratch: Path | None = None) -> None:
        self.folder, self.limits, self.runs_dir, self.scratch = folder, limits, runs_dir, scratch

    def store(self, path: str | Path) -> Path:
        """Copy an uploaded data file here (name prefixed by its content hash) and return the copy."""
        src = Path(path)
        try:
            self._check(src)
        except ValueError:
            self._discard(src)
            raise
        target = self.folder / f"{_digest(src)}-{src.name}"
        if target.is_file():
            os.utime(target)  # used again: counts as new for the retention rules
        else:
            tmp = target.with_name(target.name + ".part")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, tmp)
                tmp.replace(target)
            except OSError as exc:  # a full or read-only disk: said in kft's words, no half copy left
                tmp.unlink(missing_ok=True)
                self._discard(src)
                raise ValueError(f"the upload could not be stored: {runs.os_reason(exc)}; free space and upload "
                                 "it again") from None
        self.prune(keep=target)
        return target

    def _check(self, src: Path) -> None:
        self.limits.refuse_if_read_only()
        if not src.is_file():
            raise ValueError(f"The uploaded file could not be read: {src.name}")
        if src.suffix.lower() not in FILE_SUFFIXES:
            raise ValueError(f"{src.name}: only {', '.join(FILE_SUFFIXES)} files are accepted")
        if src.stat().st_size > self.limits.max_upload_bytes:
            raise ValueError(f"{src.name} is {src.stat().st_size / 1024**2:,.1f} MB; the limit is "
                             f"{self.limits.max_upload_bytes / 1024**2:,.0f} MB")

    def _discard(self, src: Path) -> None:
        """Remove a refused upload's copy in Gradio's upload folder (never a file anywhere else)."""
        if src.is_file() and _inside(src, self.scratch):
            src.unlink(missing_ok=True)
            logger.info("refused upload %s removed from the upload folder", src.name)

    def release(self, source: str | Path | None) -> None:
        """A stored upload whose preview or run was refused: removed unless a run's config points to it."""
        if not source or not _inside(Path(source), self.folder):
            return
        path = Path(source).resolve()
        if path.is_file() and path not in self._referenced():
            path.unlink(missing_ok=True)

    def _referenced(self) -> set[Path]:
        """Uploads that a run's config (run.json) points to."""
        found: set[Path] = set()
        for run in runs.run_dirs(self.runs_dir) if self.runs_dir else []:
            config = (run.read_json() or {}).get("config")
            data = config.get("data") if isinstance(config, dict) else None
            if isinstance(data, dict) and isinstance(data.get("source"), str):
                found.add(Path(data["source"]).resolve())
        return found

    def prune(self, keep: Path | None = None) -> list[str]:
        """Apply the retention rules; returns the names removed."""
        if not self.folder.is_dir():
            return []
        now = time.time()
        files = sorted((p for p in self.folder.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        protected = self._referenced() | ({keep.resolve()} if keep else set())
        removed = []
        for p in files:
            age = now - p.stat().st_mtime
            if p.resolve() in protected or age < GRACE_S:
                continue
            if age > self.limits.uploads_keep_days * 86400 or total > self.limits.uploads_keep_bytes:
                total -= p.stat().st_size
                p.unlink(missing_ok=True)
                removed.append(p.name)
        if removed:
            logger.info("uploads removed by the retention rules: %s", ", ".join(removed))
        return removed
