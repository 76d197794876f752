"""A JobSnapshot as the training tab shows it (plot data, status text, progress bar): plain functions of plain data."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from ..training.memory import REPORT_LINES, format_report
from ..training.snapshot import JobSnapshot
from .strings import tr

LOG_LINES = 12  # what the log box shows without scrolling
WATCH_CHARS = 80  # of each watch answer shown in the timeline (the whole answer is its tooltip)


def typed_frame(rows: list[Any], columns: dict[str, str]) -> pd.DataFrame:
    """A chart's data with its columns' types ({name: dtype}) even when empty: an empty frame's columns are objects,
    which the chart reads as categories (vega-lite then warns: "zero is dropped ... point scale", "fit-y")."""
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def chart(frame: pd.DataFrame) -> pd.DataFrame | None:
    """What a chart is sent: its data, or no value while there is none (the chart's empty state; an empty data set
    made vega-lite warn in the browser's console: 'Infinite extent for field ...')."""
    return frame if len(frame) else None


def loss_frame(snap: JobSnapshot | None, lang: str, name: str = "") -> pd.DataFrame:
    """Long format (step, loss, series): the training loss and, with a held-out share, the evaluation loss (a run's
    ``name`` before each series name, to tell overlaid runs apart). Losses to 4 decimals: a one-point chart printed
    its axis as "8.3259382248"."""
    prefix = f"{name} · " if name else ""
    train, held_out = (prefix + tr(f"plot.series_{kind}", lang) for kind in ("training", "eval"))
    rows = [(step, round(loss, 4), train) for step, loss in (snap.losses if snap else [])]
    rows += [(step, round(loss, 4), held_out) for step, loss in (snap.eval_losses if snap else [])]
    return typed_frame(rows, {"step": "int64", "loss": "float64", "series": "str"})


def watch_html(snap: JobSnapshot | None, lang: str) -> str:
    """The watch prompts' answers as a timeline: one row per watched step, a refusal badge and the answer's start."""
    rows = snap.watch if snap else []
    if not rows:
        return f"<div id='kft-watch-empty' style='opacity:.7'>{html.escape(tr('train.watch_none', lang))}</div>"
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    head = "".join(f"<th>{html.escape(tr(f'train.watch_{k}', lang))}: {html.escape(_prompt_of(rows, k))}</th>"
                   for k in kinds)
    body = []
    for step in dict.fromkeys(r["step"] for r in rows):
        cells = {r["kind"]: r for r in rows if r["step"] == step}
        body.append(f"<tr><td>{step}</td>" + "".join(_watch_cell(cells.get(k), lang) for k in kinds) + "</tr>")
    return (f"<table id='kft-watch-table' style='width:100%;table-layout:fixed'><thead><tr>"
            f"<th style='width:5em'>{html.escape(tr('train.step', lang))}</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _prompt_of(rows: list[dict[str, Any]], kind: str) -> str:
    return next((str(r.get("prompt", "")) for r in reversed(rows) if r["kind"] == kind), "")


def _watch_cell(row: dict[str, Any] | None, lang: str) -> str:
    if row is None:
        return "<td></td>"
    refused = bool(row.get("refusal"))
    empty = not str(row.get("answer", "")).strip()  # an empty answer is neither a refusal nor an answer
    badge = tr("train.watch_refused" if refused else "train.watch_empty" if empty else "train.watch_answered", lang)
    colour = "#1a7f37" if refused else "#6e7781"
    answer = str(row.get("answer", ""))
    short = answer[:WATCH_CHARS] + ("…" if len(answer) > WATCH_CHARS else "")
    return (f"<td class='kft-watch-{'refusal' if refused else 'answer'}'><span style='color:white;background:{colour};"
            f"border-radius:4px;padding:0 .4em;font-size:.85em'>{html.escape(badge)}</span> "
            f"<span title='{html.escape(answer)}'>{html.escape(short)}</span></td>")


def lr_frame(snap: JobSnapshot | None) -> pd.DataFrame:
    return typed_frame(snap.learning_rates if snap else [], {"step": "int64", "learning_rate": "float64"})


def on_gpu(snap: JobSnapshot | None) -> bool:
    return bool(snap and snap.memory_label.startswith("GPU"))


def memory_frame(snap: JobSnapshot | None, lang: str) -> pd.DataFrame:
    """Long format (seconds, GB, series): allocated and reserved on a GPU, one RSS series on the CPU."""
    rows: list[tuple[float, float, str]] = []
    allocated_s, reserved_s, rss_s = (tr(f"plot.series_{kind}", lang) for kind in ("allocated", "reserved", "rss"))
    for t_s, allocated, reserved in snap.memory if snap else []:
        if on_gpu(snap):
            rows += [(t_s, allocated, allocated_s), (t_s, reserved, reserved_s)]
        else:
            rows.append((t_s, allocated, rss_s))
    return typed_frame(rows, {"seconds": "float64", "GB": "float64", "series": "str"})


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def status_text(status: str, lang: str) -> str:
    """A run's status in lang; the status itself (the English word run.json holds) where the table has none."""
    text = tr(f"status.{status}", lang)
    return status if text == f"status.{status}" else text


def _status_word(status: str, lang: str) -> str:
    """The translated status, with the English word that logs and run.json use when it differs."""
    text = status_text(status, lang)
    return text if text == status else f"{text} (`{status}`)"


def status_markdown(snap: JobSnapshot | None, lang: str) -> str:
    """Status word (also in English, for logs and tests), step/total, elapsed, ETA, tokens/s, reason."""
    if snap is None:
        return f"**{tr('train.status', lang)}:** {_status_word('idle', lang)} · {tr('train.no_run', lang)}"
    total = snap.total_steps or "?"
    tps = f"{snap.tokens_per_s:,.0f}" if snap.tokens_per_s else "-"
    parts = [f"**{tr('train.status', lang)}:** {_status_word(snap.status, lang)}",
             f"**{tr('train.step', lang)}:** {snap.step} / {total}",
             f"**{tr('train.elapsed', lang)}:** {fmt_duration(snap.elapsed_s)}",
             f"**{tr('train.eta', lang)}:** {fmt_duration(snap.eta_s)}",
             f"**{tr('train.tps', lang)}:** {tps}"]
    text = " · ".join(parts)
    if snap.backend:
        text += f"\n\n**{tr('train.backend', lang)}:** {snap.backend} ({snap.backend_reason or ''})"
    if snap.error:
        text += f"\n\n**{tr('train.reason', lang)}:** {snap.error}"
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


def report_text(snap: JobSnapshot | None, lang: str) -> str:
    """The memory report's figures in lines from the string table (the CLI prints kft.training.memory's own)."""
    if not (snap and snap.memory_report):
        return ""
    return format_report(snap.memory_report, {key: tr(f"memory.{key}", lang) for key in REPORT_LINES})


def summary(snap: JobSnapshot | None) -> dict[str, Any]:
    """Plain numbers for API clients and browser tests."""
    if snap is None:
        return {"status": "idle", "run_dir": None, "step": 0, "total_steps": 0, "loss_points": 0}
    return {"status": snap.status, "run_dir": snap.run_dir, "run": Path(snap.run_dir).name,
            "step": snap.step, "total_steps": snap.total_steps, "loss_points": len(snap.losses),
            "last_loss": snap.losses[-1][1] if snap.losses else None, "eval_points": len(snap.eval_losses),
            "watch_points": len(snap.watch), "lr_points": len(snap.learning_rates),
            "memory_points": len(snap.memory), "memory_label": snap.memory_label,
            "tokens_per_s": snap.tokens_per_s, "elapsed_s": round(snap.elapsed_s, 2), "eta_s": snap.eta_s,
            "error": snap.error, "backend": snap.backend, "finished": snap.finished,
            "memory_report": snap.memory_report}


def signature(snap: JobSnapshot | None, lang: str) -> str:
    """Changes whenever what the tab shows would change (the timer skips identical updates)."""
    if snap is None:
        return f"idle|{lang}"
    return "|".join(map(str, (snap.run_dir, snap.status, snap.step, len(snap.losses), len(snap.memory),
                              len(snap.eval_losses), len(snap.watch),
                              len(snap.log_tail), snap.log_tail[-1:] if snap.log_tail else "", lang)))


def parts(snap: JobSnapshot | None, lang: str) -> dict[str, str]:
    """One signature per shown box: a page gets a box again only when its own signature changed (a new step sends
    the plots it grew, not the unchanged log, report or zip)."""
    if snap is None:
        idle = f"idle|{lang}"
        return dict.fromkeys(("summary", "status", "progress", "loss", "lr", "memory", "log", "report", "run_dir",
                              "zip", "watch"), idle)
    run = str(snap.run_dir)

    def sig(*values: Any) -> str:
        return "|".join(map(str, (run, *values)))

    return {"summary": signature(snap, lang), "status": sig(snap.status, snap.step, lang),
            "progress": sig(snap.status, snap.step), "loss": sig(len(snap.losses), len(snap.eval_losses), lang),
            "lr": sig(len(snap.losses)), "memory": sig(len(snap.memory), lang),
            "log": sig(len(snap.log_tail), snap.log_tail[-1:] if snap.log_tail else ""),
            "report": sig(repr(snap.memory_report), lang), "run_dir": run, "zip": sig(snap.status),
            "watch": sig(len(snap.watch), lang)}
