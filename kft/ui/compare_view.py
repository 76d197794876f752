"""Labels and renderers for the comparison tab: plain data (updates, scorecards, status) -> text, tables, files."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from ..inference.generate import BASE, LORA, PairUpdate, PaneStats
from ..inference.safety import Scorecard, detect_refusal, load_prompt_set
from ..services.comparison import CompareStatus
from .i18n import tr
from .plots import fmt_duration

logger = logging.getLogger(__name__)

STRINGS: dict[str, tuple[str, str]] = {
    "adapter_heading": ("#### 어댑터", "#### Adapter"),
    "source": ("어댑터 출처", "Adapter source"),
    "src_trained": ("방금 학습한 어댑터", "The adapter just trained"),
    "src_run": ("실행 디렉터리", "A run directory"),
    "src_hub": ("Hub 어댑터", "A Hub adapter"),
    "run": ("실행 디렉터리 (runs/)", "Run directory (runs/)"),
    "refresh": ("새로고침", "Refresh"),
    "hub": ("Hub 어댑터 id (소유자/이름)", "Hub adapter id (owner/name)"),
    "preset": ("예시 프롬프트 (고르면 지시문이 채워집니다)", "Preset prompts (picking one fills the instruction)"),
    "instruction": ("지시문 (instruction)", "Instruction"),
    "input": ("입력 (input, 선택)", "Input (optional)"),
    "gen_settings": ("생성 설정", "Generation settings"),
    "max_new_tokens": ("최대 새 토큰 수", "Max new tokens"),
    "do_sample": ("샘플링 (끄면 greedy)", "Sampling (off = greedy)"),
    "temperature": ("온도 (temperature)", "Temperature"),
    "top_p": ("top-p", "Top-p"),
    "repetition_penalty": ("반복 페널티", "Repetition penalty"),
    "generate": ("두 모델로 생성", "Generate with both"),
    "stop": ("중지", "Stop"),
    "base_pane": ("기본 모델 (base, 어댑터 끔)", "base (adapter off)"),
    "lora_pane": ("LoRA 모델", "LoRA"),
    "refusal": ("🛑 **거절**", "🛑 **refusal**"),
    "not_refusal": ("💬 **거절 아님**", "💬 **not a refusal**"),
    "ttft": ("요청 후 {s}에 첫 토큰", "first token {s} after the request"),
    "tps": ("{v} 토큰/초 (두 창을 함께 생성)", "{v} tokens/s (both panes decode together)"),
    "tokens": ("{n} 토큰", "{n} tokens"),
    "running": ("생성 중…", "Generating…"),
    "loading": ("⏳ 어댑터와 모델을 불러오는 중… (이 어댑터의 첫 생성)", "⏳ Loading the adapter / model… (this adapter's first use)"),
    "loading_pane": ("⏳ 불러오는 중…", "⏳ loading…"),
    "done": ("완료.", "Done."),
    "cancelled": ("중지됨 (새 요청 또는 중지 버튼).", "Stopped (a newer request or the Stop button)."),
    "stopped": ("실행 중인 생성을 중지했습니다.", "The running generation was stopped."),
    "nothing_to_stop": ("실행 중인 생성이 없습니다.", "Nothing is running."),
    "busy_training": ("⏳ GPU가 학습 중입니다 ({run}). 학습이 끝날 때까지 생성을 시작하지 않습니다.",
                      "⏳ The GPU is busy training ({run}). Generation is refused until the run ends."),
    "idle": ("준비됨", "Ready"),
    "generating": ("생성 중", "Generating"),
    "model": ("기본 모델: {m}", "Base model: {m}"),
    "no_model": ("모델: 아직 불러오지 않음 (첫 생성 때 불러옵니다)", "Model: not loaded yet (loaded on first use)"),
    "adapters": ("어댑터: {a}", "Adapters: {a}"),
    "bad_request": ("요청을 처리할 수 없습니다: {e}", "Cannot run this request: {e}"),
    "out_of_memory": ("생성 중 GPU 메모리가 부족했습니다. 최대 새 토큰 수나 프롬프트 길이를 줄여 다시 시도하세요. 모델은 그대로 "
                      "로드되어 있습니다.",
                      "The GPU ran out of memory while generating. Lower max new tokens or shorten the prompt and "
                      "try again; the model stays loaded."),
    "sc_heading": ("안전 점수표 (scorecard)", "Safety scorecard"),
    "sc_intro": ("프롬프트 묶음을 base와 LoRA로 모두 생성해 거절 여부를 셉니다. **유해 요청 거절률은 높을수록**, "
                 "**일반 요청 과잉 거절률은 낮을수록** 좋습니다. 거절의 정의는 `kft/inference/safety.py`에 있습니다.",
                 "Runs a prompt set through base and LoRA and counts refusals. **Refusal rate on harmful prompts: "
                 "higher is better**; **over-refusal rate on benign prompts: lower is better**. What counts as a "
                 "refusal is written in `kft/inference/safety.py`."),
    "prompt_set": ("프롬프트 묶음", "Prompt set"),
    "ps_presets": ("내장 예시 (kft/assets/prompts/presets.jsonl)", "Bundled presets (kft/assets/prompts/presets.jsonl)"),
    "ps_upload": ("업로드한 .jsonl", "Uploaded .jsonl"),
    "upload": (".jsonl 업로드 (한 줄에 prompt, label: harmful|benign)", "Upload .jsonl (prompt and label: harmful|benign per line)"),
    "run_scorecard": ("점수표 실행", "Run scorecard"),
    "need_upload": ("업로드한 .jsonl 파일이 없습니다.", "No .jsonl file was uploaded."),
    "sc_progress": ("{i}/{n} 프롬프트 완료", "{i}/{n} prompts done"),
    "sc_eta": ("남은 시간 약 {eta}", "about {eta} left"),
    "col_#": ("#", "#"),
    "col_prompt": ("프롬프트", "Prompt"),
    "col_label": ("유형", "Label"),
    "col_base_refusal": ("base 거절", "base refused"),
    "col_lora_refusal": ("LoRA 거절", "LoRA refused"),
    "col_base_answer": ("base 답변", "base answer"),
    "col_lora_answer": ("LoRA 답변", "LoRA answer"),
    "yes": ("예", "yes"),
    "no": ("아니오", "no"),
    "sc_stopped": ("중지됨: {i}/{n} 프롬프트까지의 결과입니다.", "Stopped: results of the first {i}/{n} prompts."),
    "sc_done": ("완료: {n} 프롬프트. 유해 요청 거절률 base {hb} → LoRA {hl} (높을수록 좋음); 일반 요청 과잉 거절률 "
                "base {bb} → LoRA {bl} (낮을수록 좋음).",
                "Done: {n} prompts. Harmful refused: base {hb} → LoRA {hl} (higher is better); benign over-refused: "
                "base {bb} → LoRA {bl} (lower is better)."),
    "plot_harmful": ("유해 요청 거절률 (높을수록 좋음)", "Refusal rate on harmful prompts (higher is better)"),
    "plot_benign": ("일반 요청 과잉 거절률 (낮을수록 좋음)", "Over-refusal rate on benign prompts (lower is better)"),
    "table": ("프롬프트별 결과", "Per-prompt results"),
    "exports": ("내보내기 (CSV, JSON)", "Export (CSV, JSON)"),
    "label_harmful": ("유해", "harmful"),
    "label_benign": ("일반", "benign"),
}
# the refusal verdicts first, so they stay on screen at 1400 px; the answers, long, after them
TABLE_COLUMNS = ["#", "prompt", "label", "base_refusal", "lora_refusal", "base_answer", "lora_answer"]
TABLE_WIDTHS = ["4%", "26%", "8%", "9%", "9%", "22%", "22%"]


def t(key: str, lang: str, **fmt: object) -> str:
    return tr(STRINGS, key, lang, **fmt)


def source_choices(lang: str) -> list[tuple[str, str]]:
    return [(t("src_trained", lang), "trained"), (t("src_run", lang), "run"), (t("src_hub", lang), "hub")]


def prompt_set_choices(lang: str) -> list[tuple[str, str]]:
    return [(t("ps_presets", lang), "presets"), (t("ps_upload", lang), "upload")]


def preset_choices(lang: str) -> list[tuple[str, str]]:
    """(shown text, prompt) for every bundled preset; the value is the prompt itself."""
    out = []
    for row in load_prompt_set("presets"):
        tag = t(f"label_{row['label']}", lang)
        extra = f" ({row['title']})" if lang == "en" and row.get("title") else ""
        out.append((f"[{tag}] {row['prompt']}{extra}", row["prompt"]))
    return out


def pane_info(text: str, stats: PaneStats, lang: str) -> str:
    """Badge, time to first token, tokens/s and token count of one pane."""
    badge = t("refusal" if detect_refusal(text).refusal else "not_refusal", lang) if text else ""
    parts = [badge] if badge else []
    if stats.ttft_s is not None:
        parts.append(t("ttft", lang, s=f"{stats.ttft_s:.2f} s"))
    if stats.tokens_per_s is not None:
        parts.append(t("tps", lang, v=f"{stats.tokens_per_s:.1f}"))
    parts.append(t("tokens", lang, n=stats.tokens))
    return " · ".join(parts)


def render_update(update: PairUpdate, lang: str) -> dict[str, str]:
    """What the panes show for one streamed update, by the tab's component names."""
    if update.loading:
        pane = t("loading_pane", lang)
        return {"base": "", "base_info": pane, "lora": "", "lora_info": pane, "outcome": t("loading", lang)}
    outcome = t("cancelled" if update.cancelled else "done" if update.done else "running", lang)
    return {"base": update.base, "base_info": pane_info(update.base, update.stats[BASE], lang),
            "lora": update.lora, "lora_info": pane_info(update.lora, update.stats[LORA], lang), "outcome": outcome}


def status_line(s: CompareStatus, lang: str) -> str:
    if s.training:
        return t("busy_training", lang, run=s.training_run)
    parts = [f"**{t('generating' if s.generating else 'idle', lang)}**",
             t("model", lang, m=s.base) if s.base else t("no_model", lang)]
    if s.adapters:
        parts.append(t("adapters", lang, a=", ".join(s.adapters)))
    return " · ".join(parts)


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def table_headers(lang: str) -> list[str]:
    return [t(f"col_{key}", lang) for key in TABLE_COLUMNS]


def scorecard_table(card: Scorecard, lang: str) -> pd.DataFrame:
    """The rows shown, headers and values in the UI's language (the exports keep the card's English keys)."""
    def verdict(refused: bool) -> str:
        return t("yes" if refused else "no", lang)

    rows = [[i, r["prompt"], t(f"label_{r['label']}", lang), verdict(r["base_refusal"]), verdict(r["lora_refusal"]),
             r["base_answer"], r["lora_answer"]] for i, r in enumerate(card.rows, start=1)]
    return pd.DataFrame(rows, columns=table_headers(lang))


def rate_frame(card: Scorecard, label: str) -> pd.DataFrame:
    """Bars for one label: model (base | LoRA), its refusal rate (0 before any prompt of the label is done) and
    the bar's axis label with the value ("base · 25%"), so a 0% bar still reads as a value, not a missing bar.
    The chart sorts the axis labels descending ("-x"), which keeps base before LoRA."""
    data = [(name, card.rate(label, pane) or 0.0) for name, pane in (("base", "base"), ("LoRA", "lora"))]
    return pd.DataFrame([(f"{m} · {r:.0%}", m, r) for m, r in data], columns=["bar", "model", "rate"])


def progress_html(done: int, total: int, eta_s: float | None, lang: str) -> str:
    """The scorecard's bar: prompts done of total, and the time left once a prompt has been timed."""
    eta = f" · {t('sc_eta', lang, eta=fmt_duration(eta_s))}" if eta_s is not None and done < total else ""
    return (f"<progress id='kft-sc-progress' style='width:100%' value='{done}' max='{max(total, 1)}'></progress>"
            f"<div style='text-align:right'>{t('sc_progress', lang, i=done, n=total)}{eta}</div>")


def scorecard_summary(card: Scorecard, lang: str, total: int, stopped: bool) -> str:
    if stopped:
        return t("sc_stopped", lang, i=len(card.rows), n=total)
    if len(card.rows) < total:
        return t("sc_progress", lang, i=len(card.rows), n=total)
    return t("sc_done", lang, n=total, hb=_rate(card.rate("harmful", "base")), hl=_rate(card.rate("harmful", "lora")),
             bb=_rate(card.rate("benign", "base")), bl=_rate(card.rate("benign", "lora")))


def write_exports(card: Scorecard, meta: dict[str, Any], out: Path) -> list[str]:
    """Write scorecard.csv (UTF-8 with BOM, so spreadsheet apps read the Korean) and scorecard.json into ``out``
    (a folder of the app's ExportFolder)."""
    csv_path, json_path = out / "scorecard.csv", out / "scorecard.json"
    csv_path.write_text(card.to_csv(), encoding="utf-8-sig")
    json_path.write_text(json.dumps({**card.to_dict(), "meta": meta}, ensure_ascii=False, indent=2), encoding="utf-8")
    logger.info("scorecard exported to %s", out)
    return [str(csv_path), str(json_path)]
