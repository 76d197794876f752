"""Korean / English labels. Each tab keeps its own STRINGS dict {key: (ko, en)} and calls ``tr``."""

from __future__ import annotations

import re
import string

LANGS = ("ko", "en")
DEFAULT_LANG = "ko"

COMMON: dict[str, tuple[str, str]] = {
    "title": ("kft · 한국어 안전 LoRA 미세조정", "kft · Korean safety LoRA fine-tuning"),
    "intro": ("Llama 3.1 8B 같은 기본 모델에 한국어 안전 데이터로 LoRA 어댑터를 학습하고, 학습 전후 답변을 나란히 비교합니다. "
              "순서: **① 학습** (모델과 데이터를 고르고 시작; 몇 스텝마다 어댑터가 고정 프롬프트 두 개에 답해 거절이 "
              "생기는 과정을 보여 줍니다) → **② 비교** (같은 질문에 기본 모델과 LoRA의 답변) → **③ 스코어카드** (비교 탭 "
              "아래: 유해 질문 거절률은 오르고 무해 질문 과잉 거절은 오르지 않았는지). `tiny`는 가중치가 무작위인 "
              "오프라인 테스트 모델이라 의미 없는 글을 씁니다: 앱이 도는지 확인하는 용도입니다.",
              "Trains a LoRA adapter on Korean safety data for a base model such as Llama 3.1 8B, then shows the "
              "answers before and after side by side. The path: **① Train** (pick a model and data, start; every few "
              "steps the adapter can answer two fixed prompts, so you watch the refusal appear) → **② Compare** (the "
              "base model and the LoRA answer the same question) → **③ Scorecard** (below the comparison: harmful "
              "prompts refused more, benign prompts not over-refused). `tiny` is an offline test model with random "
              "weights that writes noise: it shows that the app works, not what training does."),
    "lang": ("언어 / Language", "Language / 언어"),
    "tab_train": ("학습", "Training"),
    "tab_compare": ("비교", "Comparison"),
    "tab_runs": ("실행 기록", "Runs"),
}


def tr(strings: dict[str, tuple[str, str]], key: str, lang: str, **fmt: object) -> str:
    """The label for key in lang ('ko' or 'en'); the key itself if missing (visible, never a crash)."""
    pair = strings.get(key) or COMMON.get(key)
    if pair is None:
        return key
    text = pair[0] if lang == "ko" else pair[1]
    return text.format(**fmt) if fmt else text


def _pattern(template: str) -> re.Pattern[str]:
    """A regex that matches what ``template.format(...)`` writes, capturing each field by name."""
    out, seen = [], set()
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(re.escape(literal))
        if name is not None:
            out.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
            seen.add(name)
    return re.compile("".join(out), re.S)


def retranslate(strings: dict[str, tuple[str, str]], text: str, lang: str) -> str | None:
    """``text``, a message rendered from one of ``strings`` in either language (a notice's "⚠️ " kept), in
    ``lang``; the values filled in (a run name, a library's English detail) stay as they were. None when no
    template writes ``text``, so a caller leaves it alone."""
    prefix = "⚠️ " if text.startswith("⚠️ ") else ""
    body = text[len(prefix):]
    if not body:
        return None
    for pair in (*strings.values(), *COMMON.values()):
        for template in pair:
            match = _pattern(template).fullmatch(body)
            if match:
                return prefix + (pair[0] if lang == "ko" else pair[1]).format(**match.groupdict())
    return None
