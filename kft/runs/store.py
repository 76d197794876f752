"""Runs on disk: ``RunDir`` alone names a run directory's files; the rest lists runs, resumes interrupted ones.

A run directory (``DATA_DIR/runs/<name>``) holds run.json, metrics.jsonl, adapter/, checkpoints/checkpoint-N/ and,
once downloaded, <name>-adapter.zip. A run in a live state that no live process trains (its pid dead, this process,
or reused after the run started) is ``interrupted`` and resumes from its last *complete* checkpoint. Only checkpoints
inside the run's own ``checkpoints/`` are used; a run is chosen by name, never by a client path. No gradio, no model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .integrity import (
    DAMAGED,
    MANIFEST,
    Rows,
    manifest_problems,
    os_reason,
    read_rows,
    safetensors_ok,
    sha256,
    torch_file_ok,
)

logger = logging.getLogger(__name__)

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
LIVE_STATES = ("pending", "loading", "running", "stopping")
CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")
CHECKPOINT_FILES = ("adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt",
                    "trainer_state.json")
TORCH_FILES = (".pt", ".pth", ".bin")  # torch.save's zip archives (optimizer, scheduler, rng state, training args)
STATE_FILES = ("optimizer.pt", "scheduler.pt")  # opened with torch.load(weights_only=True) before a resume
RESUMABLE_FAILURES = ("disk_full", "damaged_checkpoint")  # a run that failed so resumes once the cause is gone
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
PID_SLACK_S = 2.0  # run.json times have one-second resolution


class RunDir:
    """One run directory: the only place that knows what its files are called."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and self.path.resolve() == other.path.resolve()

    name = property(lambda self: self.path.name)
    adapter = property(lambda self: self.path / "adapter", doc="the saved adapter (PEFT format + template.json)")
    run_json = property(lambda self: self.path / "run.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    watch_file = property(lambda self: self.path / "refusals.jsonl", doc="the watch prompts' answers during training")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    zip_file = property(lambda self: self.path / f"{self.path.name}-adapter.zip")

    @property
    def has_adapter(self) -> bool:
        return (self.adapter / "adapter_config.json").is_file()

    def read_json(self) -> dict[str, Any] | None:
        """run.json as a dict, or None when missing or unreadable (a run killed before writing it)."""
        return self.load_json()[0]

    def load_json(self) -> tuple[dict[str, Any] | None, str | None]:
        """(run.json as a dict or None, why it could not be read: None when it is fine or simply not written yet)."""
        try:
            data = json.loads(self.run_json.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"run.json cannot be read ({os_reason(exc)})"
        except (ValueError, RecursionError):  # cut short by a kill or a full disk, bad bytes, not JSON
            return None, "run.json cannot be read (cut short, or not written by kft): its settings and status are unknown"
        if not isinstance(data, dict):
            return None, "run.json holds no settings object (not written by kft)"
        return data, None

    def write_json(self, data: dict[str, Any]) -> None:
        """Atomic rewrite of run.json (tmp file, then rename)."""
        tmp = self.path / "run.json.tmp"
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        tmp.replace(self.run_json)

    def append_metrics(self, row: dict[str, Any]) -> None:
        _append(self.metrics_file, row)

    def append_watch(self, row: dict[str, Any]) -> None:
        _append(self.watch_file, row)

    def read_metrics(self) -> Rows:
        """Rows of metrics.jsonl (unreadable lines, such as one cut by a kill, are left out and counted)."""
        return read_rows(self.metrics_file)

    def read_watch(self) -> Rows:
        """Rows of refusals.jsonl: {step, kind, prompt, answer, refusal}."""
        return read_rows(self.watch_file)

    def truncate_metrics(self, step: int) -> list[dict[str, Any]]:
        """Keep metrics.jsonl rows up to ``step`` (a resumed run logs the later steps again); return them."""
        return _truncate(self.metrics_file, step)

    def truncate_watch(self, step: int) -> list[dict[str, Any]]:
        """Keep refusals.jsonl rows up to ``step`` (a resumed run answers the later steps again); return them."""
        return _truncate(self.watch_file, step) if self.watch_file.is_file() else []


    def checkpoints(self) -> list[Path]:
        """checkpoint-N directories of the run, by step."""
        folder = self.checkpoints_dir
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT_DIR.fullmatch(p.name)]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def checkpoint_problems(self, ckpt: Path, deep: bool = False) -> list[str]:
        """Why a checkpoint directory cannot be resumed from (empty list: complete). The quick checks (the files'
        sizes, the safetensors header, the torch archives' directories, the manifest's sizes) run on every listing;
        ``deep`` (before a resume) also compares the manifest's sha256 and opens the optimizer and scheduler."""
        match = CHECKPOINT_DIR.fullmatch(ckpt.name)
        if match is None:
            return [f"{ckpt.name} is not named checkpoint-N"]
        if ckpt.is_symlink() or not ckpt.resolve().is_relative_to(self.checkpoints_dir.resolve()):
            return [f"{ckpt.name} lies outside the run's checkpoints folder"]
        if (ckpt / DAMAGED).is_file():
            return [f"{ckpt.name} could not be read back by a resume"]
        problems = [f"{name} missing or empty" for name in CHECKPOINT_FILES
                    if not (ckpt / name).is_file() or (ckpt / name).is_symlink() or (ckpt / name).stat().st_size == 0]
        if problems:
            return problems
        if not safetensors_ok(ckpt / "adapter_model.safetensors"):
            problems.append("adapter_model.safetensors is cut short")
        problems += [f"{f.name} is cut short" for f in sorted(ckpt.iterdir())
                     if f.suffix in TORCH_FILES and not torch_file_ok(f, deep and f.name in STATE_FILES)]
        problems += manifest_problems(ckpt, deep)
        if not problems:
            try:
                step = json.loads((ckpt / "trainer_state.json").read_bytes().decode("utf-8")).get("global_step")
            except (OSError, ValueError, AttributeError, RecursionError):
                step = None
            if step != int(match.group(1)):
                problems.append(f"trainer_state.json says step {step}, not {match.group(1)}")
        return problems

    def last_complete_checkpoint(self, deep: bool = False) -> Path | None:
        """The newest complete checkpoint; incomplete ones (a kill while saving, a full disk) are skipped and logged."""
        for ckpt in reversed(self.checkpoints()):
            problems = self.checkpoint_problems(ckpt, deep)
            if not problems:
                return ckpt
            (logger.warning if deep else logger.debug)("skipping incomplete %s/%s: %s", self.name, ckpt.name,
                                                       "; ".join(problems))
        return None

    def write_manifest(self, ckpt: Path) -> None:
        """Record each file of a checkpoint just saved (size, sha256); written last, atomically: its presence says
        the save finished, its contents let a resume find a file changed or cut since."""
        files = {f.name: [f.stat().st_size, sha256(f)] for f in sorted(ckpt.iterdir())
                 if f.is_file() and not f.is_symlink() and f.name not in (MANIFEST, DAMAGED)}
        tmp = ckpt / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(files, indent=1), encoding="utf-8")
        tmp.replace(ckpt / MANIFEST)

    def mark_damaged(self, ckpt: Path, reason: str) -> None:
        """A resume could not read ``ckpt`` back: it is never offered again (the previous checkpoint is)."""
        try:
            (ckpt / DAMAGED).write_text(reason + "\n", encoding="utf-8")
        except OSError as exc:
            logger.warning("could not mark %s/%s damaged: %s", self.name, ckpt.name, os_reason(exc))


def series(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) of every metrics row holding a number under ``key`` (loss, eval_loss, learning_rate)."""
    return [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float)) and not
            isinstance(r.get(key), bool) and math.isfinite(r[key])]


def _append(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _truncate(path: Path, step: int) -> list[dict[str, Any]]:
    rows = [r for r in read_rows(path) if r["step"] <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    return rows


@dataclass
class RunInfo:
    """One run as the runs list shows it (plain data)."""

    name: str
    status: str
    run_dir: Path
    model: str | None = None
    data: str | None = None
    steps_done: int = 0
    total_steps: int = 0
    final_loss: float | None = None
    settings: str = ""
    started_at: str | None = None
    has_adapter: bool = False
    checkpoint: str | None = None  # name of the last complete checkpoint (``checkpoint-N``), if any
    error: str | None = None
    resumed_from: str | None = None
    damage: list[str] = field(default_factory=list)  # files of the run that are torn or unreadable, and how
    failure: str | None = None  # why a failed run failed, when the cause can go away (RESUMABLE_FAILURES)

    @property
    def resumable(self) -> bool:
        """Interrupted, or failed on a full disk or a damaged checkpoint, with a complete checkpoint to go on from."""
        cause_gone = self.status == "failed" and self.failure in RESUMABLE_FAILURES
        return (self.status == "interrupted" or cause_gone) and self.checkpoint is not None


@dataclass
class ResumePlan:
    """What resuming a run needs: its config, the checkpoint, and the history up to that step."""

    run: RunDir
    config: dict[str, Any]
    checkpoint: Path
    step: int
    resumes: int = 1
    first_started_at: str | None = None

    def meta(self) -> dict[str, Any]:
        """The run.json keys a resumed run carries over."""
        return {"resumed_from": self.checkpoint.name, "resumes": self.resumes, "first_started_at": self.first_started_at}


def _epoch(stamp: Any) -> float | None:
    try:
        return time.mktime(time.strptime(str(stamp), TIME_FORMAT))
    except (TypeError, ValueError, OverflowError):
        return None


def owner_alive(raw: dict[str, Any]) -> bool:
    """Whether the process that wrote run.json (``pid``, ``started_at``) still exists and is another one."""
    import psutil

    pid = raw.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = proc.create_time()
    except (psutil.Error, OSError):
        return False
    started = _epoch(raw.get("started_at"))
    return started is None or created <= started + PID_SLACK_S  # created later: the pid was reused


def effective_status(raw: dict[str, Any] | None, live: bool) -> str:
    """The status to show: run.json's, except ``interrupted`` for a live state that nobody runs."""
    if raw is None:  # no readable run.json: killed before it was written, or the live run's first moment
        return "pending" if live else "interrupted"
    status = str(raw.get("status") or "interrupted")
    if status in LIVE_STATES and not live and not owner_alive(raw):
        return "interrupted"
    return status


def find(runs_dir: Path, name: str) -> RunDir:
    """The run called ``name`` directly under runs_dir; ValueError for anything else (no paths from clients)."""
    name = (name or "").strip()
    if not RUN_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{name[:80]!r} is not a run name: pick one from the runs list")
    path = runs_dir / name
    if path.is_symlink() or not path.is_dir() or path.resolve().parent != runs_dir.resolve():
        raise ValueError(f"run {name!r} was not found under {runs_dir.name}/")
    return RunDir(path)


def settings_summary(config: dict[str, Any]) -> str:
    """One line of the settings that tell runs apart (the fields marked ``summary`` in kft.config.args)."""
    from ..config.args import specs

    try:
        t = config["train"]
        def part(*sections: str) -> list[str]:
            return [f"{s.summary} {config[s.section][s.name]:g}" for s in specs(*sections) if s.summary]

        parts = [*part("lora", "train"), f"batch {t['per_device_train_batch_size']}×{t['gradient_accumulation_steps']}",
                 *part("model")]
        parts.append(f"{t['max_steps']} steps" if t["max_steps"] > 0 else f"{t['num_train_epochs']:g} epochs")
        return " · ".join(parts) + (f" · save every {t['save_steps']}" if t.get("save_steps") else "")
    except (KeyError, TypeError, ValueError):
        return ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def run_info(run: RunDir, live_run: RunDir | None = None) -> RunInfo:
    """What one run directory says about its run."""
    raw, problem = run.load_json()
    ckpt = run.last_complete_checkpoint()
    info = RunInfo(run.name, effective_status(raw, run == live_run), run.path, checkpoint=ckpt.name if ckpt else None,
                   has_adapter=run.has_adapter, damage=[problem] if problem else [])
    if raw is None:
        return info
    # read defensively: a hand-edited or other-version run.json must not stop the app (the list is read at start)
    config = _dict(raw.get("config"))
    loss = raw.get("final_loss")
    info.model = _text(_dict(config.get("model")).get("name"))
    info.data = _text(_dict(config.get("data")).get("source"))
    info.steps_done, info.total_steps = _count(raw.get("steps_done")), _count(raw.get("total_steps"))
    info.final_loss = float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else None
    info.settings = settings_summary(config)
    info.started_at = _text(raw.get("first_started_at") or raw.get("started_at"))
    info.error, info.resumed_from = _text(raw.get("error")), _text(raw.get("resumed_from"))
    info.failure = raw.get("failure") if raw.get("failure") in RESUMABLE_FAILURES else None
    if info.status != "completed":  # a run that did not end cleanly: metrics.jsonl knows how far it got
        rows = run.read_metrics()
        info.damage += [d for d in (rows.damage, run.read_watch().damage) if d]
        info.steps_done = max([info.steps_done, *(r["step"] for r in rows)])
        if info.final_loss is None:
            losses = [r["loss"] for r in rows if isinstance(r.get("loss"), (int, float))]
            info.final_loss = losses[-1] if losses else None
    return info


def claim(runs_dir: Path) -> RunDir:
    """A new, empty run directory named after the current second (``-2``, ``-3``, ... on a clash)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    base, n = time.strftime("%Y%m%d-%H%M%S"), 1
    while True:
        path = runs_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()  # no exist_ok: atomic, so runs of the same second (even other processes) never share one
            return RunDir(path)
        except FileExistsError:
            n += 1


def run_dirs(runs_dir: Path) -> list[RunDir]:
    """Every run directory under runs_dir, newest first."""
    if not runs_dir.is_dir():
        return []
    dirs = [p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink() and RUN_NAME.fullmatch(p.name)]
    dirs.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [RunDir(p) for p in dirs]


def files_key(run: RunDir) -> tuple:
    """Changes whenever a file that ``run_info`` reads changes (names, sizes and times of run.json, metrics.jsonl,
    the watch file, the adapter and every checkpoint's files): a few stats, where ``run_info`` opens each
    checkpoint's archives to check them."""
    def entries(path: Path) -> tuple:
        try:
            with os.scandir(path) as it:
                return tuple(sorted((e.name, *_stamp(e)) for e in it))
        except OSError:
            return ()

    ckpts = tuple((name, entries(run.checkpoints_dir / name)) for name, *_ in entries(run.checkpoints_dir))
    return (tuple(_stamp(p) for p in (run.run_json, run.metrics_file, run.watch_file)), entries(run.adapter), ckpts)


def _stamp(entry: Any) -> tuple[int, int]:
    try:
        st = entry.stat()
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)


def list_runs(runs_dir: Path, live_run: RunDir | None = None) -> list[RunInfo]:
    """Every run under runs_dir with its status, newest first."""
    return [run_info(r, live_run) for r in run_dirs(runs_dir)]


def with_adapter(runs_dir: Path) -> list[str]:
    """Names of the runs that hold a saved adapter, newest adapter first."""
    runs = [r for r in run_dirs(runs_dir) if r.has_adapter]
    runs.sort(key=lambda r: (r.adapter / "adapter_config.json").stat().st_mtime, reverse=True)
    return [r.name for r in runs]


def mark_interrupted(runs_dir: Path, live_run: RunDir | None = None) -> list[str]:
    """Rewrite run.json of every run left in a live state by a dead process as ``interrupted``."""
    marked = []
    for info in list_runs(runs_dir, live_run):
        run = RunDir(info.run_dir)
        raw = run.read_json()
        if info.status != "interrupted" or raw is None or raw.get("status") == "interrupted":
            continue
        raw.update(status="interrupted", interrupted_at=time.strftime(TIME_FORMAT), last_checkpoint=info.checkpoint,
                   error=f"the app stopped while this run was {raw.get('status')}; "
                         + (f"resume it from {info.checkpoint}" if info.checkpoint else "no complete checkpoint to resume from"))
        try:
            run.write_json(raw)
        except OSError as exc:  # a read-only or full data directory must not stop the app from starting
            logger.warning("run %s could not be marked interrupted: %s", info.name, os_reason(exc))
            continue
        marked.append(info.name)
        logger.info("run %s was interrupted (last complete checkpoint: %s)", info.name, info.checkpoint)
    return marked


def resume_plan(run: RunDir, live_run: RunDir | None = None) -> ResumePlan:
    """Everything needed to resume an interrupted run; ValueError says why it cannot be resumed."""
    info = run_info(run, live_run)
    if info.status != "interrupted" and not (info.status == "failed" and info.failure):
        raise ValueError(f"run {info.name} is {info.status}, not interrupted: only an interrupted run, or one that "
                         "failed on a full disk or a damaged checkpoint, is resumed")
    raw = run.read_json() or {}
    if not isinstance(raw.get("config"), dict):
        raise ValueError(f"run {info.name} has no readable run.json config; start a new run instead")
    ckpt = run.last_complete_checkpoint(deep=True)
    if ckpt is None:
        raise ValueError(f"run {info.name} has no complete checkpoint to resume from (set 'save_steps' to "
                         "checkpoint every N steps); start a new run instead")
    return ResumePlan(run, raw["config"], ckpt, int(ckpt.name.split("-")[1]), resumes=int(raw.get("resumes") or 0) + 1,
                      first_started_at=raw.get("first_started_at") or raw.get("started_at"))
