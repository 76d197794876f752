"""ExportFolder: the one temporary folder for files this app hands out (settings exports, scorecards, copies of
adapter zips). It lies in the system temp folder, never in the data directory (which the file routes never
serve); it is emptied when the app starts and keeps at most ``keep`` folders of each kind, oldest removed first."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

KEEP_PER_KIND = 20


def export_root(data_dir: Path) -> Path:
    """One folder per data directory, so two apps on one machine never empty each other's."""
    key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"kft-exports-{key}"


def download_key(zip_path: Path) -> str:
    """The ``downloads`` folder's key for a run's adapter zip (the same run name in another data dir differs)."""
    return hashlib.sha256(str(zip_path.resolve()).encode()).hexdigest()[:12]


class ExportFolder:
    def __init__(self, root: Path, keep: int = KEEP_PER_KIND) -> None:
        self.root, self.keep = root, keep
        shutil.rmtree(root, ignore_errors=True)  # what a previous process handed out is not needed again

    def new(self, kind: str, key: str | None = None) -> Path:
        """A folder for one export of ``kind``: a fresh one, or the one named ``key`` (made again if it was removed);
        the oldest folders of the kind beyond ``keep`` are removed."""
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        if key is None:
            out = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=folder))
        else:
            out = folder / key
            out.mkdir(exist_ok=True)
            out.touch()  # used again: the newest
        old = sorted((p for p in folder.iterdir() if p.is_dir() and p != out), key=lambda p: p.stat().st_mtime)
        for p in old[: max(0, len(old) - self.keep + 1)]:
            shutil.rmtree(p, ignore_errors=True)
        return out

    def remove(self, kind: str, key: str) -> None:
        """The export folder ``key`` of ``kind`` goes (what it handed out is no longer wanted: its run was deleted)."""
        shutil.rmtree(self.root / kind / key, ignore_errors=True)
