"""Integrity of the files a run directory holds, read back without ever raising: JSON-lines files whose torn or
foreign lines are left out and counted (Rows), checkpoint files checked for being whole (the safetensors header and
the size it implies, torch.save's zip archives, the manifest of sizes and sha256 written last). No gradio, no model."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import struct
import zipfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
MANIFEST = "kft-manifest.json"  # {file: [size, sha256]}, written last when a checkpoint is saved
DAMAGED = "kft-damaged.txt"  # written into a checkpoint a resume could not read back: the reason


class Rows(list):
    """The rows of a JSON-lines run file, and what reading it left out: ``dropped`` lines (bad bytes, not JSON, no
    step), ``torn`` when the last of them was cut short (a write stopped by a kill or a full disk), ``error`` when the
    file could not be read at all. A list, so callers that only want the rows use it as one."""

    def __init__(self, name: str, rows: list[dict[str, Any]] | None = None, dropped: int = 0, torn: bool = False,
                 error: str | None = None) -> None:
        super().__init__(rows or [])
        self.name, self.dropped, self.torn, self.error = name, dropped, torn, error

    @property
    def damage(self) -> str | None:
        """What is wrong with the file, in a sentence for the runs tab (None: nothing)."""
        if self.error:
            return f"{self.name} cannot be read ({self.error})"
        if not self.dropped:
            return None
        if self.torn and self.dropped == 1:
            return f"{self.name}: its last line was cut short (a write stopped by a kill or a full disk) and is left out"
        return f"{self.name}: {self.dropped} unreadable line{'s' if self.dropped > 1 else ''} left out" + (
            ", the last one cut short" if self.torn else "")


_LOGGED: set[tuple[str, int]] = set()  # (file, size) already logged as damaged: the list is read every few seconds


def os_reason(exc: OSError) -> str:
    """An OSError in kft's words (no library text)."""
    if isinstance(exc, IsADirectoryError):
        return "it is a folder, not a file"
    if isinstance(exc, PermissionError):
        return "this process may not read it"
    if isinstance(exc, NotADirectoryError):
        return "a part of the path is a file, not a folder"
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno == errno.EROFS:
        return "the disk is read-only"
    return "the disk refused it"


def read_rows(path: Path) -> Rows:
    """The JSON-lines rows of a run file that carry an integer step. Never raises: lines with bad bytes, or cut by a
    kill, are left out and counted; a file that cannot be read gives no rows and says why."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Rows(path.name)
    except OSError as exc:
        return Rows(path.name, error=os_reason(exc))
    rows, dropped, torn = [], 0, False
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):  # bad bytes (UnicodeDecodeError is one), cut short, not JSON
            row = None
        if isinstance(row, dict) and isinstance(row.get("step"), int) and not isinstance(row["step"], bool):
            rows.append(row)
        else:
            dropped += 1
            torn = torn or i == len(lines) - 1  # no newline after it: the write stopped inside this line
    found = Rows(path.name, rows, dropped, torn)
    if dropped and (str(path), len(data)) not in _LOGGED:
        if len(_LOGGED) > 10_000:
            _LOGGED.clear()
        _LOGGED.add((str(path), len(data)))
        logger.warning("%s/%s", path.parent.name, found.damage)
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_problems(ckpt: Path, deep: bool) -> list[str]:
    """What differs from the checkpoint's manifest (none: no manifest, a checkpoint of an older kft)."""
    try:
        manifest = json.loads((ckpt / MANIFEST).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError, RecursionError):
        return [f"{MANIFEST} cannot be read"]
    if not isinstance(manifest, dict):
        return [f"{MANIFEST} is not kft's"]
    problems = []
    for name, entry in manifest.items():
        f = ckpt / str(name)
        if not isinstance(entry, list) or len(entry) != 2 or "/" in str(name) or not f.is_file():
            problems.append(f"{name} is missing")
        elif f.stat().st_size != entry[0]:
            problems.append(f"{name} has {f.stat().st_size} bytes, not the {entry[0]} saved")
        elif deep and sha256(f) != entry[1]:
            problems.append(f"{name} changed since it was saved")
    return problems


def torch_file_ok(path: Path, load: bool = False) -> bool:
    """A torch.save archive whose zip directory reads and whose members lie inside the file (a cut one's does not);
    ``load``: it also opens with torch.load(weights_only=True), as the trainer will open it."""
    try:
        with zipfile.ZipFile(path) as archive:
            size = path.stat().st_size
            if any(i.header_offset + i.compress_size > size for i in archive.infolist()):
                return False
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return False
    if load:
        import torch

        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any failure to read it back means the file cannot be resumed from
            return False
    return True


def safetensors_ok(path: Path) -> bool:
    """The header of a safetensors file parses and the file is as long as its header says (a cut one is not)."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            total = path.stat().st_size
            if size <= 0 or 8 + size > total:
                return False
            header = json.loads(f.read(size))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (OSError, ValueError, struct.error, RecursionError, TypeError, KeyError, IndexError, AttributeError):
        return False
    return 8 + size + max(ends, default=0) == total
