"""Runs on disk: listing, interrupted runs, complete checkpoints, and what a resume needs.

A run directory (``DATA_DIR/runs/<name>``) holds ``run.json`` (written by ``kft.train.TrainingJob``),
``metrics.jsonl``, ``adapter/`` and ``checkpoints/checkpoint-N/`` (every ``TrainArgs.save_steps`` steps).

A run whose run.json still says pending/loading/running/stopping but that no live process is training
is ``interrupted``: its pid is dead, is this very process (which does not run it), or belongs to a
process created after the run started (the pid was reused, as after a container restart). Such a run
resumes from its last *complete* checkpoint: adapter weights, optimizer and scheduler state present,
and ``trainer_state.json`` (the Trainer writes it last) naming the same step. Only checkpoints that
this app wrote inside the run's own ``checkpoints/`` folder are ever used; a run is chosen by its name,
never by a path from the client, and uploads never land under ``runs/``.
Nothing here imports gradio or loads a model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
LIVE_STATES = ("pending", "loading", "running", "stopping")
CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")
CHECKPOINT_FILES = ("adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt",
                    "trainer_state.json")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
ADAPTER_CONFIG = Path("adapter") / "adapter_config.json"  # inside a run directory: its saved adapter
PID_SLACK_S = 2.0  # run.json times have one-second resolution


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
    checkpoint: str | None = None
    """Name of the last complete checkpoint (``checkpoint-N``), if any."""
    error: str | None = None
    resumed_from: str | None = None

    @property
    def resumable(self) -> bool:
        return self.status == "interrupted" and self.checkpoint is not None


@dataclass
class ResumePlan:
    """What resuming a run needs: its config, the checkpoint, and the history up to that step."""

    run_dir: Path
    config: dict[str, Any]
    checkpoint: Path
    step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    resumes: int = 1


# ---- run.json --------------------------------------------------------------------------------------
def read_run_json(run_dir: Path) -> dict[str, Any] | None:
    """run.json as a dict, or None when missing or unreadable (a run killed before writing it)."""
    try:
        data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_run_json(run_dir: Path, data: dict[str, Any]) -> None:
    """Atomic rewrite of run.json (tmp file, then rename); TrainingJob writes through it too."""
    tmp = run_dir / "run.json.tmp"
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    tmp.replace(run_dir / "run.json")


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


# ---- checkpoints -----------------------------------------------------------------------------------
def _safetensors_ok(path: Path) -> bool:
    """The header of a safetensors file parses (a file cut short by a kill does not)."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size <= 0 or 8 + size > path.stat().st_size:
                return False
            json.loads(f.read(size))
    except (OSError, ValueError, struct.error):
        return False
    return True


def checkpoint_problems(ckpt: Path, run_dir: Path) -> list[str]:
    """Why a checkpoint directory cannot be resumed from (empty list: complete)."""
    match = CHECKPOINT_DIR.fullmatch(ckpt.name)
    if match is None:
        return [f"{ckpt.name} is not named checkpoint-N"]
    if ckpt.is_symlink() or not ckpt.resolve().is_relative_to((run_dir / "checkpoints").resolve()):
        return [f"{ckpt.name} lies outside the run's checkpoints folder"]
    problems = [f"{name} missing or empty" for name in CHECKPOINT_FILES
                if not (ckpt / name).is_file() or (ckpt / name).is_symlink() or (ckpt / name).stat().st_size == 0]
    if not problems and not _safetensors_ok(ckpt / "adapter_model.safetensors"):
        problems.append("adapter_model.safetensors is cut short")
    if not problems:
        try:
            step = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8")).get("global_step")
        except (OSError, ValueError, AttributeError):
            step = None
        if step != int(match.group(1)):
            problems.append(f"trainer_state.json says step {step}, not {match.group(1)}")
    return problems


def checkpoints(run_dir: Path) -> list[Path]:
    """checkpoint-N directories of a run, by step."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT_DIR.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def last_complete_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint; incomplete ones (a kill while saving) are skipped and logged."""
    for ckpt in reversed(checkpoints(run_dir)):
        problems = checkpoint_problems(ckpt, run_dir)
        if not problems:
            return ckpt
        logger.debug("skipping incomplete %s/%s: %s", run_dir.name, ckpt.name, "; ".join(problems))
    return None


# ---- listing ---------------------------------------------------------------------------------------
def run_dir_of(runs_dir: Path, name: str) -> Path:
    """The directory of the run called ``name`` directly under runs_dir; ValueError for anything else."""
    name = (name or "").strip()
    if not RUN_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{name[:80]!r} is not a run name: pick one from the runs list")
    path = runs_dir / name
    if path.is_symlink() or not path.is_dir() or path.resolve().parent != runs_dir.resolve():
        raise ValueError(f"run {name!r} was not found under {runs_dir.name}/")
    return path


def settings_summary(config: dict[str, Any]) -> str:
    """One line of the settings that tell runs apart."""
    try:
        m, lo, t = config["model"], config["lora"], config["train"]
        length = f"{t['max_steps']} steps" if t["max_steps"] > 0 else f"{t['num_train_epochs']:g} epochs"
        return (f"r {lo['r']} · alpha {lo['lora_alpha']} · lr {t['learning_rate']:g} · batch "
                f"{t['per_device_train_batch_size']}×{t['gradient_accumulation_steps']} · seq {m['max_seq_length']} · "
                f"{length}" + (f" · save every {t['save_steps']}" if t.get("save_steps") else ""))
    except (KeyError, TypeError, ValueError):
        return ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def run_info(run_dir: Path, live_run: Path | None = None) -> RunInfo:
    """What one run directory says about its run."""
    raw = read_run_json(run_dir)
    live = live_run is not None and Path(live_run).resolve() == run_dir.resolve()
    ckpt = last_complete_checkpoint(run_dir)
    info = RunInfo(run_dir.name, effective_status(raw, live), run_dir, checkpoint=ckpt.name if ckpt else None,
                   has_adapter=(run_dir / ADAPTER_CONFIG).is_file())
    if raw is None:
        return info
    # every field is read defensively: a hand-edited run.json or one from another version must not
    # stop the app from starting (the runs list is read when the workspace opens)
    config = _dict(raw.get("config"))
    loss = raw.get("final_loss")
    info.model = _text(_dict(config.get("model")).get("name"))
    info.data = _text(_dict(config.get("data")).get("source"))
    info.steps_done, info.total_steps = _count(raw.get("steps_done")), _count(raw.get("total_steps"))
    info.final_loss = float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else None
    info.settings = settings_summary(config)
    info.started_at = _text(raw.get("first_started_at") or raw.get("started_at"))
    info.error, info.resumed_from = _text(raw.get("error")), _text(raw.get("resumed_from"))
    if info.status != "completed":  # a run that did not end cleanly: metrics.jsonl knows how far it got
        rows = read_metrics(run_dir)
        info.steps_done = max([info.steps_done, *(r["step"] for r in rows)])
        if info.final_loss is None:
            losses = [r["loss"] for r in rows if isinstance(r.get("loss"), (int, float))]
            info.final_loss = losses[-1] if losses else None
    return info


def claim_run_dir(runs_dir: Path) -> Path:
    """Create and return a new, empty run directory named after the current second (``-2``, ``-3``, ...
    on a clash). ``mkdir`` without exist_ok makes the claim atomic, so runs started in the same second,
    even from separate processes (a headless sweep), never share a directory."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    base, n = time.strftime("%Y%m%d-%H%M%S"), 1
    while True:
        path = runs_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def list_runs(runs_dir: Path, live_run: Path | None = None) -> list[RunInfo]:
    """Every run directory under runs_dir, newest first."""
    if not runs_dir.is_dir():
        return []
    dirs = [p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink() and RUN_NAME.fullmatch(p.name)]
    dirs.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [run_info(p, live_run) for p in dirs]


def mark_interrupted(runs_dir: Path, live_run: Path | None = None) -> list[str]:
    """Rewrite run.json of every run left in a live state by a dead process as ``interrupted``."""
    marked = []
    for info in list_runs(runs_dir, live_run):
        raw = read_run_json(info.run_dir)
        if info.status != "interrupted" or raw is None or raw.get("status") == "interrupted":
            continue
        raw.update(status="interrupted", interrupted_at=time.strftime(TIME_FORMAT), last_checkpoint=info.checkpoint,
                   error=f"the app stopped while this run was {raw.get('status')}; "
                         + (f"resume it from {info.checkpoint}" if info.checkpoint else "no complete checkpoint to resume from"))
        write_run_json(info.run_dir, raw)
        marked.append(info.name)
        logger.info("run %s was interrupted (last complete checkpoint: %s)", info.name, info.checkpoint)
    return marked


# ---- metrics and resume ----------------------------------------------------------------------------
def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of metrics.jsonl (unreadable lines, such as one cut by a kill, are left out)."""
    rows = []
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def truncate_metrics(run_dir: Path, step: int) -> list[dict[str, Any]]:
    """Keep metrics.jsonl rows up to ``step`` (the resumed run logs the later steps again); return them."""
    rows = [r for r in read_metrics(run_dir) if r["step"] <= step]
    tmp = run_dir / "metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(run_dir / "metrics.jsonl")
    return rows


def resume_plan(run_dir: Path, live_run: Path | None = None) -> ResumePlan:
    """Everything needed to resume an interrupted run; ValueError says why it cannot be resumed."""
    info = run_info(run_dir, live_run)
    if info.status != "interrupted":
        raise ValueError(f"run {info.name} is {info.status}, not interrupted: only an interrupted run is resumed")
    raw = read_run_json(run_dir) or {}
    if not isinstance(raw.get("config"), dict):
        raise ValueError(f"run {info.name} has no readable run.json config; start a new run instead")
    ckpt = last_complete_checkpoint(run_dir)
    if ckpt is None:
        raise ValueError(f"run {info.name} has no complete checkpoint to resume from (set 'save_steps' to "
                         "checkpoint every N steps); start a new run instead")
    step = int(ckpt.name.split("-")[1])
    return ResumePlan(run_dir, raw["config"], ckpt, step, resumes=int(raw.get("resumes") or 0) + 1)


def restore(job: Any, plan: ResumePlan) -> None:
    """Prepare a new TrainingJob to continue ``plan``: metrics cut back to the checkpoint, history and
    run.json keys carried over (the job's loss and learning-rate plots continue where they were)."""
    raw = read_run_json(plan.run_dir) or {}
    rows = truncate_metrics(plan.run_dir, plan.step)
    job.meta.update(resumed_from=plan.checkpoint.name, resumes=plan.resumes,
                    first_started_at=raw.get("first_started_at") or raw.get("started_at"))
    seen = [r["tokens_seen"] for r in rows if isinstance(r.get("tokens_seen"), int)]
    job.tokens_seen = seen[-1] if seen else 0  # the token count goes on from the checkpoint, not from 0
    job._set(step=plan.step,
             losses=[(r["step"], float(r["loss"])) for r in rows if isinstance(r.get("loss"), (int, float))],
             learning_rates=[(r["step"], float(r["learning_rate"])) for r in rows
                             if isinstance(r.get("learning_rate"), (int, float))])
    job._note(f"resuming {plan.run_dir.name} from {plan.checkpoint.name} (step {plan.step})")
