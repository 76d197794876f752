"""Every text the UI shows, one flat table per language: ``ko.py`` and ``en.py`` map the same keys to their text.

A key is ``<section>.<name>``: ``common`` (title, intro, tab names, the language switch), ``train``, ``compare`` and
``runs`` (each tab's labels and messages), ``status`` (a run's status), ``field_label`` / ``field_info`` (one per
setting of the training form), ``runs_col`` (the runs table's headers), ``guard`` (refusals at the UI's edge),
``plot`` (chart legends) and ``memory`` (the memory report's lines). ``tr`` looks a key up; ``retranslate``
re-renders a message already on screen in another language.
"""

from __future__ import annotations

import functools
import re
import string

from . import en, ko

LANGS = ("ko", "en")
DEFAULT_LANG = "ko"
TABLES: dict[str, dict[str, str]] = {"ko": ko.STRINGS, "en": en.STRINGS}


def _table(lang: str) -> dict[str, str]:
    return TABLES["ko"] if lang == "ko" else TABLES["en"]


def tr(key: str, lang: str, **fmt: object) -> str:
    """The text of key in lang ('ko', else English), formatted with fmt; the key itself if missing (visible, never a
    crash)."""
    text = _table(lang).get(key)
    if text is None:
        return key
    return text.format(**fmt) if fmt else text


def language_choices() -> list[tuple[str, str]]:
    """The language switch's choices: each language named in itself (Korean in Korean, English in English)."""
    return [(tr("common.lang_name", code), code) for code in LANGS]


def language_label(lang: str) -> str:
    """The language switch's label: the word for language in the page's language first, then in the other."""
    return " / ".join(tr("common.language", code) for code in (lang, *(c for c in LANGS if c != lang)))


@functools.cache
def _pattern(template: str) -> re.Pattern[str]:
    """A regex that matches what ``template.format(...)`` writes, capturing each field by name."""
    out, seen = [], set()
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(re.escape(literal))
        if name is not None:
            out.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
            seen.add(name)
    return re.compile("".join(out), re.S)


def retranslate(section: str, text: str, lang: str) -> str | None:
    """``text``, a message rendered from one of ``section``'s keys (or a ``common`` one) in either language (a notice's
    "⚠️ " kept), in ``lang``; the values filled in (a run name, a library's English detail) stay as they were. None
    when no template writes ``text``, so a caller leaves it alone."""
    prefix = "⚠️ " if text.startswith("⚠️ ") else ""
    body = text[len(prefix):]
    if not body:
        return None
    keys = [k for k in TABLES["ko"] if k.startswith(f"{section}.")] + [k for k in TABLES["ko"] if k.startswith("common.")]
    for key in keys:
        for code in LANGS:
            match = _pattern(TABLES[code][key]).fullmatch(body)
            if match:
                return prefix + _table(lang)[key].format(**match.groupdict())
    return None
