"""Renderers for the comparison tab: plain data (updates, scorecards, status) -> text, tables, files (the texts: the
"compare.*" keys of kft.ui.strings)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from ..inference.generate import BASE, LORA, PairUpdate, PaneStats
from ..inference.safety import EXAMPLES, Scorecard, detect_refusal, load_prompt_set
from ..services.comparison import CompareStatus, Origin
from .plots import fmt_duration, typed_frame
from .strings import tr

logger = logging.getLogger(__name__)

# the refusal verdicts first, so they stay on screen at 1400 px; the answers, long, after them
TABLE_COLUMNS = ["#", "prompt", "label", "base_refusal", "lora_refusal", "base_answer", "lora_answer"]
TABLE_WIDTHS = ["4%", "26%", "8%", "9%", "9%", "22%", "22%"]
# a three-way card (run B scored too): run B's verdict after run A's, its answer last
TABLE_COLUMNS_B = ["#", "prompt", "label", "base_refusal", "lora_refusal", "lora_b_refusal", "base_answer",
                   "lora_answer", "lora_b_answer"]


def source_choices(lang: str) -> list[tuple[str, str]]:
    return [(tr("compare.src_trained", lang), "trained"), (tr("compare.src_run", lang), "run"),
            (tr("compare.src_hub", lang), "hub")]


def prompt_set_choices(lang: str) -> list[tuple[str, str]]:
    return [(tr("compare.ps_presets", lang), "presets"), (tr("compare.ps_upload", lang), "upload")]


def preset_choices(lang: str) -> list[tuple[str, str]]:
    """(shown text, prompt) for every bundled preset; the value is the prompt itself."""
    out = []
    for row in load_prompt_set("presets"):
        tag = tr(f"compare.label_{row['label']}", lang)
        extra = f" ({row['title']})" if lang == "en" and row.get("title") else ""
        out.append((f"[{tag}] {row['prompt']}{extra}", row["prompt"]))
    return out


def refusal_definition(lang: str) -> str:
    """What counts as a refusal, in words, with the detector's own examples quoted."""
    quoted = {kind: ", ".join(f'"{e}"' for e in examples) for kind, examples in EXAMPLES.items()}
    return tr("compare.sc_refusal_def", lang, **quoted)


def pane_info(text: str, stats: PaneStats, lang: str) -> str:
    """Badge, time to first token, tokens/s and token count of one pane."""
    badge = tr("compare.refusal" if detect_refusal(text).refusal else "compare.not_refusal", lang) if text else ""
    parts = [badge] if badge else []
    if stats.ttft_s is not None:
        parts.append(tr("compare.ttft", lang, s=f"{stats.ttft_s:.2f} s"))
    if stats.tokens_per_s is not None:
        parts.append(tr("compare.tps", lang, v=f"{stats.tokens_per_s:.1f}"))
    parts.append(tr("compare.tokens", lang, n=stats.tokens))
    return " · ".join(parts)


def origin_line(origin: Origin | None, lang: str, base_pane: bool = False) -> str:
    """Which adapter (run or Hub id, and its base model) made a result, and when; the base pane names the base."""
    if origin is None:
        return ""
    key = "compare.made_by_base" if base_pane else "compare.made_by"
    return tr(key, lang, run=origin.adapter, base=origin.base, t=origin.made)


def _with_origin(info: str, origin: Origin | None, lang: str, base_pane: bool = False) -> str:
    line = origin_line(origin, lang, base_pane)
    return f"{info}  \n{line}" if line and info else info or line


def render_update(update: PairUpdate, lang: str) -> dict[str, str]:
    """What the panes show for one streamed update, by the tab's component names (each badge names its origin)."""
    origin = update.origin
    if update.loading:
        pane = tr("compare.loading_pane", lang)
        return {"base": "", "base_info": pane, "lora": "", "lora_info": _with_origin(pane, origin, lang),
                "outcome": tr("compare.loading", lang)}
    outcome = tr("compare.cancelled" if update.cancelled else "compare.done" if update.done else "compare.running",
                 lang)
    return {"base": update.base, "base_info": _with_origin(pane_info(update.base, update.stats[BASE], lang), origin,
                                                           lang, base_pane=True),
            "lora": update.lora, "lora_info": _with_origin(pane_info(update.lora, update.stats[LORA], lang), origin,
                                                           lang),
            "outcome": outcome}


def render_rows(update: Any, lang: str) -> dict[str, str]:
    """Three panes (base, run A, run B) for one streamed RowsUpdate, by the tab's component names."""
    names = ("base", "lora", "lora_b")
    if update.loading:
        pane = tr("compare.loading_pane", lang)
        return {**{n: "" for n in names}, **{f"{n}_info": pane for n in names}, "outcome": tr("compare.loading", lang)}
    outcome = tr("compare.cancelled" if update.cancelled else "compare.done" if update.done else "compare.running",
                 lang)
    out = {"outcome": outcome}
    made_by = update.origins[1]
    for i, name in enumerate(names):
        origin = update.origins[i] or made_by
        out[name] = update.texts[i]
        out[f"{name}_info"] = _with_origin(pane_info(update.texts[i], update.stats[i], lang), origin, lang,
                                           base_pane=i == 0)
    return out


def status_line(s: CompareStatus, lang: str, chosen: str | None = None) -> str:
    """The tab's status: busy or ready, the base in memory, the page's chosen adapter, the adapters in memory."""
    if s.training:
        return tr("compare.busy_training", lang, run=s.training_run)
    parts = [f"**{tr('compare.generating' if s.generating else 'compare.idle', lang)}**",
             tr("compare.model", lang, m=s.base) if s.base else tr("compare.no_model", lang)]
    if chosen:
        parts.append(tr("compare.chosen", lang, a=chosen))
    if s.adapters:
        parts.append(tr("compare.adapters", lang, a=", ".join(s.adapters)))
    return " · ".join(parts)


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def table_headers(lang: str, three: bool = False) -> list[str]:
    return [tr(f"compare.col_{key}", lang) for key in (TABLE_COLUMNS_B if three else TABLE_COLUMNS)]


def scorecard_table(card: Scorecard, lang: str) -> pd.DataFrame:
    """The rows shown, headers and values in the UI's language (the exports keep the card's English keys); run B's
    columns too on a three-way card."""
    three = len(card.panes) == 3
    keys = TABLE_COLUMNS_B if three else TABLE_COLUMNS

    def cell(i: int, r: dict[str, Any], key: str) -> Any:
        if key == "#":
            return i
        if key == "label":
            return tr(f"compare.label_{r['label']}", lang)
        if key.endswith("_refusal"):
            return tr("compare.yes" if r[key] else "compare.no", lang)
        return r[key]

    rows = [[cell(i, r, key) for key in keys] for i, r in enumerate(card.rows, start=1)]
    return pd.DataFrame(rows, columns=table_headers(lang, three))


def rate_frame(card: Scorecard, label: str, lang: str) -> pd.DataFrame:
    """Bars for one label: model (base | LoRA | LoRA B, the legend's names in lang), its refusal rate and the bar's
    axis label with the value ("base · 25%"), so a 0% bar still reads as a value. No bar before a prompt of the label is
    done: an empty chart, not a "0%" that reads as a result. The chart sorts the axis labels descending ("-x"), which
    keeps base ("b") before LoRA ("L") before LoRA B ("LoRA ·" > "LoRA B")."""
    data = [(tr(f"plot.model_{pane}", lang), card.rate(label, pane)) for pane in card.panes]
    return typed_frame([(f"{m} · {r:.0%}", m, r) for m, r in data if r is not None],
                       {"bar": "str", "model": "str", "rate": "float64"})


def progress_html(done: int, total: int, eta_s: float | None, lang: str, batch: int = 0, finished: bool = False,
                  elapsed_s: float = 0.0) -> str:
    """The scorecard's bar: prompts done of total, the prompts running now (from the start, before the first batch
    ends), and the time left once a batch has been timed. Nothing before a scorecard has started."""
    if total <= 0:
        return ""
    tail = ""
    if done < total and not finished:
        if eta_s is not None:
            tail = f" · {tr('compare.sc_eta', lang, eta=fmt_duration(eta_s))}"
        if batch:
            running = tr("compare.sc_running", lang, a=done + 1, b=min(done + batch, total), n=total)
            tail += f" · {running}"
    return (f"<progress id='kft-sc-progress' style='width:100%' value='{done}' max='{max(total, 1)}'></progress>"
            f"<div style='text-align:right'>{tr('compare.sc_progress', lang, i=done, n=total)}{tail}</div>")


def scorecard_summary(card: Scorecard, lang: str, total: int, stopped: bool, origin: Origin | None = None,
                      origin_b: Origin | None = None) -> str:
    """The scorecard's one-paragraph summary, then the line naming the adapter that made it (and run B's)."""
    if total <= 0:
        return tr("compare.sc_empty", lang)
    text = _summary(card, lang, total, stopped)
    lines = [origin_line(origin, lang)]
    if origin_b is not None:
        lines.append(f"{tr('compare.run_b_short', lang)}: {origin_line(origin_b, lang)}")
    return "  \n".join([text, *(line for line in lines if line)])


def _summary(card: Scorecard, lang: str, total: int, stopped: bool) -> str:
    if stopped:
        return tr("compare.sc_stopped", lang, i=len(card.rows), n=total)
    if len(card.rows) < total:
        return tr("compare.sc_progress", lang, i=len(card.rows), n=total)
    done = tr("compare.sc_done", lang, n=total, hb=_rate(card.rate("harmful", "base")),
              hl=_rate(card.rate("harmful", "lora")), bb=_rate(card.rate("benign", "base")),
              bl=_rate(card.rate("benign", "lora")))
    if "lora_b" not in card.panes:
        return done
    return done + " " + tr("compare.sc_done_b", lang, h=_rate(card.rate("harmful", "lora_b")),
                           b=_rate(card.rate("benign", "lora_b")))


def write_exports(card: Scorecard, meta: dict[str, Any], out: Path) -> list[str]:
    """Write scorecard.csv (UTF-8 with BOM, so spreadsheet apps read the Korean) and scorecard.json into ``out``
    (a folder of the app's ExportFolder)."""
    csv_path, json_path = out / "scorecard.csv", out / "scorecard.json"
    made_by = {"adapter": meta.get("adapter_run"), "base_model": meta.get("base_model")}  # each row names its maker
    if meta.get("adapter_run_b"):
        made_by["adapter_b"] = meta["adapter_run_b"]
    named = Scorecard([{**row, **made_by} for row in card.rows]) if meta.get("adapter_run") else card
    csv_path.write_text(named.to_csv(), encoding="utf-8-sig")
    json_path.write_text(json.dumps({**card.to_dict(), "meta": meta}, ensure_ascii=False, indent=2), encoding="utf-8")
    logger.info("scorecard exported to %s", out)
    return [str(csv_path), str(json_path)]
