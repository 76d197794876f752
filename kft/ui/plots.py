"""A JobSnapshot as the training tab shows it (plot data, status text, progress bar): plain functions of plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..memory import format_report
from ..train import JobSnapshot
from .train_strings import status_text, t

LOG_LINES = 12  # what the log box shows without scrolling


def loss_frame(snap: JobSnapshot | None) -> pd.DataFrame:
    return pd.DataFrame(snap.losses if snap else [], columns=["step", "loss"])


def lr_frame(snap: JobSnapshot | None) -> pd.DataFrame:
    return pd.DataFrame(snap.learning_rates if snap else [], columns=["step", "learning_rate"])


def on_gpu(snap: JobSnapshot | None) -> bool:
    return bool(snap and snap.memory_label.startswith("GPU"))


def memory_frame(snap: JobSnapshot | None) -> pd.DataFrame:
    """Long format (seconds, GB, series): allocated and reserved on a GPU, one RSS series on the CPU."""
    rows: list[tuple[float, float, str]] = []
    for t_s, allocated, reserved in snap.memory if snap else []:
        if on_gpu(snap):
            rows += [(t_s, allocated, "allocated"), (t_s, reserved, "reserved")]
        else:
            rows.append((t_s, allocated, "RSS (process)"))
    return pd.DataFrame(rows, columns=["seconds", "GB", "series"])


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _status_word(status: str, lang: str) -> str:
    """The translated status, with the English word that logs and run.json use when it differs."""
    text = status_text(status, lang)
    return text if text == status else f"{text} (`{status}`)"


def status_markdown(snap: JobSnapshot | None, lang: str) -> str:
    """Status word (also in English, for logs and tests), step/total, elapsed, ETA, tokens/s, reason."""
    if snap is None:
        return f"**{t('status', lang)}:** {_status_word('idle', lang)} · {t('no_run', lang)}"
    total = snap.total_steps or "?"
    tps = f"{snap.tokens_per_s:,.0f}" if snap.tokens_per_s else "-"
    parts = [f"**{t('status', lang)}:** {_status_word(snap.status, lang)}",
             f"**{t('step', lang)}:** {snap.step} / {total}",
             f"**{t('elapsed', lang)}:** {fmt_duration(snap.elapsed_s)}",
             f"**{t('eta', lang)}:** {fmt_duration(snap.eta_s)}",
             f"**{t('tps', lang)}:** {tps}"]
    text = " · ".join(parts)
    if snap.backend:
        text += f"\n\n**{t('backend', lang)}:** {snap.backend} ({snap.backend_reason or ''})"
    if snap.error:
        text += f"\n\n**{t('reason', lang)}:** {snap.error}"
    return text


def progress_html(snap: JobSnapshot | None) -> str:
    """A native <progress> bar with step / total (indeterminate while the total is unknown)."""
    if snap is None:
        return "<progress style='width:100%' value='0' max='1'></progress>"
    total = snap.total_steps
    if not total:
        bar = "<progress style='width:100%'></progress>"
        return bar if not snap.finished else "<progress style='width:100%' value='0' max='1'></progress>"
    pct = 100 * snap.step / total
    return (f"<progress id='kft-progress' style='width:100%' value='{snap.step}' max='{total}'></progress>"
            f"<div style='text-align:right'>{snap.step} / {total} ({pct:.0f}%)</div>")


def log_text(snap: JobSnapshot | None) -> str:
    return "\n".join(snap.log_tail[-LOG_LINES:]) if snap else ""


def report_text(snap: JobSnapshot | None) -> str:
    return format_report(snap.memory_report) if snap and snap.memory_report else ""


def summary(snap: JobSnapshot | None) -> dict[str, Any]:
    """Plain numbers for API clients and browser tests."""
    if snap is None:
        return {"status": "idle", "run_dir": None, "step": 0, "total_steps": 0, "loss_points": 0}
    return {"status": snap.status, "run_dir": snap.run_dir, "run": Path(snap.run_dir).name,
            "step": snap.step, "total_steps": snap.total_steps, "loss_points": len(snap.losses),
            "last_loss": snap.losses[-1][1] if snap.losses else None, "lr_points": len(snap.learning_rates),
            "memory_points": len(snap.memory), "memory_label": snap.memory_label,
            "tokens_per_s": snap.tokens_per_s, "elapsed_s": round(snap.elapsed_s, 2), "eta_s": snap.eta_s,
            "error": snap.error, "backend": snap.backend, "finished": snap.finished,
            "memory_report": snap.memory_report}


def signature(snap: JobSnapshot | None, lang: str) -> str:
    """Changes whenever what the tab shows would change (the timer skips identical updates)."""
    if snap is None:
        return f"idle|{lang}"
    return "|".join(map(str, (snap.run_dir, snap.status, snap.step, len(snap.losses), len(snap.memory),
                              len(snap.log_tail), snap.log_tail[-1:] if snap.log_tail else "", lang)))
