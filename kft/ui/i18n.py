"""Korean / English labels. Each tab keeps its own STRINGS dict {key: (ko, en)} and calls ``tr``."""

from __future__ import annotations

import re
import string

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
