"""Labels and renderers for the comparison tab: plain data (updates, scorecards, status) -> text, tables, files."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from ..generate import BASE, LORA, PairUpdate, PaneStats
from ..safety import Scorecard, detect_refusal, load_prompt_set
from ..services.comparison import CompareStatus
from .i18n import tr

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
    "tps": ("{v} 토큰/초 (두 창이 번갈아 생성)", "{v} tokens/s (the panes take turns)"),
    "tokens": ("{n} 토큰", "{n} tokens"),
    "running": ("생성 중…", "Generating…"),
    "done": ("완료.", "Done."),
    "cancelled": ("중지됨 (새 요청 또는 중지 버튼).", "Stopped (a newer request or the Stop button)."),
    "stopped": ("실행 중인 생성을 중지했습니다.", "The running generation was stopped."),
    "nothing_to_stop": ("실행 중인 생성이 없습니다.", "Nothing is running."),
    "busy_training": ("⏳ GPU가 학습 중입니다 ({run}). 학습이 끝날 때까지 생성을 시작하지 않습니다.",
                      "⏳ The GPU is busy training ({run}). Generation is refused until the run ends."),
    "idle": ("준비됨", "Ready"),
    "generating": ("생성 중", "Generating"),
    "model": ("모델: {m}", "Model: {m}"),
    "no_model": ("모델: 아직 불러오지 않음 (첫 생성 때 불러옵니다)", "Model: not loaded yet (loaded on first use)"),
    "adapters": ("어댑터: {a}", "Adapters: {a}"),
    "bad_request": ("요청을 처리할 수 없습니다: {e}", "Cannot run this request: {e}"),
    "out_of_memory": ("생성 중 GPU 메모리가 부족했습니다. 최대 새 토큰 수나 프롬프트 길이를 줄여 다시 시도하세요. 모델은 그대로 "
                      "로드되어 있습니다.",
                      "The GPU ran out of memory while generating. Lower max new tokens or shorten the prompt and "
                      "try again; the model stays loaded."),
    "sc_heading": ("안전 점수표 (scorecard)", "Safety scorecard"),
    "sc_intro": ("프롬프트 묶음을 base와 LoRA로 모두 생성해 거절 여부를 셉니다. **유해 요청 거절률은 높을수록**, "
                 "**일반 요청 과잉 거절률은 낮을수록** 좋습니다. 거절의 정의는 `kft/safety.py`에 있습니다.",
                 "Runs a prompt set through base and LoRA and counts refusals. **Refusal rate on harmful prompts: "
                 "higher is better**; **over-refusal rate on benign prompts: lower is better**. What counts as a "
                 "refusal is written in `kft/safety.py`."),
    "prompt_set": ("프롬프트 묶음", "Prompt set"),
    "ps_presets": ("내장 예시 (kft/assets/prompts/presets.jsonl)", "Bundled presets (kft/assets/prompts/presets.jsonl)"),
    "ps_upload": ("업로드한 .jsonl", "Uploaded .jsonl"),
    "upload": (".jsonl 업로드 (한 줄에 prompt, label: harmful|benign)", "Upload .jsonl (prompt and label: harmful|benign per line)"),
    "run_scorecard": ("점수표 실행", "Run scorecard"),
    "need_upload": ("업로드한 .jsonl 파일이 없습니다.", "No .jsonl file was uploaded."),
    "sc_progress": ("{i}/{n} 프롬프트 완료", "{i}/{n} prompts done"),
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
TABLE_COLUMNS = ["#", "label", "prompt", "base_answer", "base_refusal", "lora_answer", "lora_refusal"]


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
    outcome = t("cancelled" if update.cancelled else "done" if update.done else "running", lang)
    return {"base": update.base, "base_info": pane_info(update.base, update.stats[BASE], lang),
            "lora": update.lora, "lora_info": pane_info(update.lora, update.stats[LORA], lang), "outcome": outcome}


def status_line(s: CompareStatus, lang: str) -> str:
    if s.training:
        return t("busy_training", lang, run=s.training_run)
    parts = [f"**{t('generating' if s.generating else 'idle', lang)}**",
             t("model", lang, m=s.model) if s.model else t("no_model", lang)]
    if s.adapters:
        parts.append(t("adapters", lang, a=", ".join(s.adapters)))
    return " · ".join(parts)


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def scorecard_table(card: Scorecard) -> pd.DataFrame:
    rows = [{"#": i, "label": r["label"], "prompt": r["prompt"], "base_answer": r["base_answer"],
             "base_refusal": "yes" if r["base_refusal"] else "no", "lora_answer": r["lora_answer"],
             "lora_refusal": "yes" if r["lora_refusal"] else "no"} for i, r in enumerate(card.rows, start=1)]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def rate_frame(card: Scorecard, label: str) -> pd.DataFrame:
    """Bars for one label: model (base | LoRA) and its refusal rate (labels without prompts are left out)."""
    data = [(name, card.rate(label, pane)) for name, pane in (("base", "base"), ("LoRA", "lora"))]
    return pd.DataFrame([(m, r) for m, r in data if r is not None], columns=["model", "rate"])


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
