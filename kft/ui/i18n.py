"""Korean / English labels. Each tab keeps its own STRINGS dict {key: (ko, en)} and calls ``tr``."""

from __future__ import annotations

LANGS = ("ko", "en")
DEFAULT_LANG = "ko"

COMMON: dict[str, tuple[str, str]] = {
    "title": ("kft · 한국어 안전 LoRA 미세조정", "kft · Korean safety LoRA fine-tuning"),
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
