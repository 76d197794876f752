"""Uploaded data files, kept under DATA_DIR/uploads so a run's config points at a file that outlives the
browser session.

One copy on disk: the stored file is a second name (a hard link) of Gradio's copy in its upload folder (``scratch``,
kft's own folder in the data directory, so on the same file system), so the page's file box still names the file
(a second Preview, then Start, send the same path) and the bytes lie on disk once. A file is stored once per content
(named by its hash).

Retention: a refused upload is never stored, and its copy in Gradio's upload folder is removed. A stored upload whose
preview or run is refused leaves the store; its name in Gradio's folder stays until Gradio's rules or kft's stop
remove it (kft empties that folder at start and at stop). Stored files a run's
config does not point to are removed once older than ``Limits.uploads_keep_days``, and oldest first while the folder
holds more than ``Limits.uploads_keep_bytes``; a file stored in the last ``GRACE_S`` seconds is kept (a run may be
starting from it).

Quota: kft's stored uploads and Gradio's upload folder together hold at most ``Limits.uploads_quota_bytes``; an upload
past it is refused (``room``: asked by the upload route's middleware before Gradio writes anything, and by ``store``),
after the retention rules have removed what they may, oldest first.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..data.rows import FILE_SUFFIXES
from ..runs import store as runs
from .limits import Limits

logger = logging.getLogger(__name__)

GRACE_S = 600


SCRATCH_NAME = "gradio-uploads"  # kft's own Gradio upload folder, in the data directory


def scratch_folder(data_dir: Path) -> Path:
    """kft's own Gradio upload folder for one data directory: ``DATA_DIR/gradio-uploads``, on the data directory's file
    system so a stored upload can be a hard link of Gradio's copy. kft empties it at start and at stop, so what a
    killed process left is removed by the next one. (Gradio's file routes serve it; the data directory's other
    entries are their blocked paths: ``kft.ui.server.blocked_paths``.)"""
    return data_dir.resolve() / SCRATCH_NAME


ALIAS_PREFIX = "kft-gradio-"


def scratch_alias(folder: Path) -> Path:
    """``<system temp>/kft-gradio-<hash>``: a link to ``folder``, the name Gradio is given for it (its file URLs show
    this path, not the data directory's)."""
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:10]
    alias = Path(tempfile.gettempdir()) / f"{ALIAS_PREFIX}{key}"
    if not (alias.is_symlink() and alias.resolve() == folder.resolve()):
        if alias.is_symlink() or alias.is_file():
            alias.unlink()
        elif alias.is_dir():
            shutil.rmtree(alias, ignore_errors=True)
        alias.symlink_to(folder.resolve(), target_is_directory=True)
    return alias


def empty_scratch(folder: Path) -> None:
    """Remove everything in kft's own upload folder (never a folder kft did not name). The folder itself stays: the
    alias Gradio was given points at it, and a link to a removed folder makes every later upload fail (Gradio's
    ``mkdir(exist_ok=True)`` on a dangling link raises)."""
    if folder.name == SCRATCH_NAME and folder.is_dir():
        for entry in list(folder.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        logger.info("gradio's upload folder emptied: %s", folder)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:12]


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.resolve().is_relative_to(folder.resolve())


def _link_or_copy(src: Path, dst: Path, link: bool) -> None:
    """``dst`` as a second name of ``src`` where allowed and possible (same file system), else a copy."""
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def _size(*folders: Path | None) -> int:
    """Bytes on disk of the files under ``folders``, a file with two names (a stored upload) counted once."""
    seen: dict[tuple[int, int], int] = {}
    for folder in folders:
        for p in folder.rglob("*") if folder is not None and folder.is_dir() else []:
            try:
                st = p.lstat()
            except OSError:  # removed while counting
                continue
            if p.is_file() and not p.is_symlink():
                seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


class UploadStore:
    def __init__(self, folder: Path, limits: Limits, runs_dir: Path | None = None,
                 scratch: Path | None = None) -> None:
        self.folder, self.limits, self.runs_dir, self.scratch = folder, limits, runs_dir, scratch

    def store(self, path: str | Path) -> Path:
        """Move an uploaded data file here (name prefixed by its content hash; a file outside Gradio's upload folder
        is copied) and return the stored file."""
        src = Path(path)
        try:
            self._check(src)
        except ValueError:
            self.discard(src)
            raise
        target = self.folder / f"{_digest(src)}-{src.name}"
        if target.is_file():
            os.utime(target)  # used again: counts as new for the retention rules
        else:
            self._fit(0 if _inside(src, self.scratch) else src.stat().st_size, src)
            tmp = target.with_name(target.name + ".part")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(src, tmp, _inside(src, self.scratch))
                tmp.replace(target)
            except OSError as exc:  # a full or read-only disk: said in kft's words, no half copy left
                tmp.unlink(missing_ok=True)
                self.discard(src)
                raise ValueError(f"the upload could not be stored: {runs.os_reason(exc)}; free space and upload "
                                 "it again") from None
        self._link_back(src, target)
        self.prune(keep=target)
        return target

    def _link_back(self, src: Path, target: Path) -> None:
        """Gradio's copy becomes a second name of the stored file (a hard link): one copy on disk, the same path on
        the page (a link across file systems cannot be made: then the two stay copies)."""
        if not _inside(src, self.scratch) or os.path.samefile(src, target):
            return
        tmp = src.with_name(src.name + ".link")
        try:
            os.link(target, tmp)
            tmp.replace(src)
        except OSError:
            tmp.unlink(missing_ok=True)

    def quota_problem(self, incoming: int) -> str | None:
        """Why ``incoming`` more bytes of uploads do not fit the quota (after the retention rules removed what they
        may), or None."""
        quota = self.limits.uploads_quota_bytes
        used = _size(self.folder, self.scratch)
        if used + incoming > quota:
            self.prune(need=used + incoming - quota)
            used = _size(self.folder, self.scratch)
        if used + incoming <= quota:
            return None
        mb = 1024**2
        return (f"uploads on this server take {used / mb:,.0f} MB of their {quota / mb:,.0f} MB quota "
                f"(--uploads-quota-mb, KFT_UPLOADS_QUOTA_MB), so {incoming / mb:,.1f} MB more do not fit: delete runs "
                "you no longer need in the runs tab (an upload no run points to is then removed), or ask the operator "
                "to raise the quota")

    def _fit(self, incoming: int, src: Path) -> None:
        problem = self.quota_problem(incoming)
        if problem:
            self.discard(src)
            raise ValueError(problem)

    def _check(self, src: Path) -> None:
        self.limits.refuse_if_read_only()
        if not src.is_file():
            raise ValueError(f"The uploaded file could not be read: {src.name}")
        if src.suffix.lower() not in FILE_SUFFIXES:
            raise ValueError(f"{src.name}: only {', '.join(FILE_SUFFIXES)} files are accepted")
        if src.stat().st_size > self.limits.max_upload_bytes:
            raise ValueError(f"{src.name} is {src.stat().st_size / 1024**2:,.1f} MB; the limit is "
                             f"{self.limits.max_upload_bytes / 1024**2:,.0f} MB")

    def discard(self, src: str | Path) -> None:
        """Remove a refused upload's copy in Gradio's upload folder (never a file anywhere else)."""
        src = Path(src)
        if src.is_file() and _inside(src, self.scratch):
            src.unlink(missing_ok=True)
            logger.info("refused upload %s removed from the upload folder", src.name)

    def release(self, source: str | Path | None) -> None:
        """A stored upload whose preview or run was refused: removed from the store unless a run's config points to
        it. Its name in Gradio's upload folder stays (Start can be pressed again once a setting is fixed), as one copy
        that kft's upload folder rules remove."""
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

    def _scratch_names(self) -> dict[tuple[int, int], list[Path]]:
        """The files in gradio's upload folder by inode: a stored upload's other names."""
        found: dict[tuple[int, int], list[Path]] = {}
        for p in self.scratch.rglob("*") if self.scratch is not None and self.scratch.is_dir() else []:
            if p.is_file() and not p.is_symlink():
                st = p.stat()
                found.setdefault((st.st_dev, st.st_ino), []).append(p)
        return found

    def prune(self, keep: Path | None = None, need: int = 0) -> list[str]:
        """Apply the retention rules (and, for the quota, remove ``need`` more bytes of files no run points to,
        oldest first); returns the names removed."""
        if not self.folder.is_dir():
            return []
        now = time.time()
        files = sorted((p for p in self.folder.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        protected = self._referenced() | ({keep.resolve()} if keep else set())
        names = self._scratch_names()
        removed = []
        for p in files:
            age = now - p.stat().st_mtime
            if p.resolve() in protected or age < GRACE_S:
                continue
            if age > self.limits.uploads_keep_days * 86400 or total > self.limits.uploads_keep_bytes or need > 0:
                st = p.stat()
                total, need = total - st.st_size, need - st.st_size
                for name in [p, *names.get((st.st_dev, st.st_ino), [])]:  # its names in gradio's folder too
                    name.unlink(missing_ok=True)
                removed.append(p.name)
        if removed:
            logger.info("uploads removed by the retention rules: %s", ", ".join(removed))
        return removed
