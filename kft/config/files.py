"""Settings files: a RunConfig from a plain dict (YAML, JSON, run.json) and back, with every type checked.

They come from anyone (import is open in read-only mode too): size capped, YAML aliases refused, values cut short.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from .args import SECTIONS, FieldSpec, RunConfig, specs
from .validation import SHORT, Problem, SettingsError, check

MAX_CONFIG_BYTES = 1_000_000
# a setting's type in a refusal's words (the base of FieldSpec.kind)
KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
              "str | bool": "text, or true or false", "dict[str, Any]": "a mapping of names to values"}


# json's messages, by how they start, in kft's words
JSON_WORDS = (("Unterminated string", "a text in quotes is not closed"),
              ("Expecting value", "a value is missing or is not JSON (a text in double quotes, a number, true, false, "
                                  "null, [...] or {...})"),
              ("Expecting property name", "a key is not in double quotes, or a comma is left before }"),
              ("Expecting ',' delimiter", "a comma is missing between two items"),
              ("Expecting ':' delimiter", "a colon is missing after a key"),
              ("Extra data", "more text follows the value"),
              ("Invalid control character", "a text holds a raw line break or tab (write \\n or \\t)"),
              ("Invalid \\escape", "a backslash starts no valid escape (write \\\\ for a backslash)"),
              ("Invalid \\uXXXX escape", "a \\u escape is not four hexadecimal digits"))


class ParseRefusal(ValueError):
    """Text kft refuses to parse further (its message is kft's own)."""


def parse_problem(exc: BaseException, line: bool = True) -> str:
    """Why JSON or YAML text could not be read, in kft's words and with where (no library text): for
    json.JSONDecodeError, a number too long to convert, yaml's errors. ``line``: say the line (a JSON Lines row
    is one line: only its column)."""
    if isinstance(exc, ParseRefusal):
        return str(exc)
    if isinstance(exc, json.JSONDecodeError):
        what = next((words for start, words in JSON_WORDS if exc.msg.startswith(start)), "the text is not valid JSON")
        return f"{what} ({f'line {exc.lineno}, ' if line else ''}column {exc.colno})"
    if isinstance(exc, RecursionError):
        return "it is nested too deeply"
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)  # yaml's MarkedYAMLError
    if mark is not None and hasattr(mark, "line"):
        return f"the text is not valid YAML (line {mark.line + 1}, column {mark.column + 1})"
    return "the text is not valid JSON or YAML"


def parse_yes_no(text: str) -> bool | None:
    """1/true/yes/on or 0/false/no/off (any case, spaces ignored) as a bool; None for anything else."""
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    return None


def parse_number(value: Any, kind: type) -> int | float:
    """``value`` (a number, or text such as "2e-4") as ``kind`` (int or float); ValueError in plain words, shaped
    "must be ..., got ...", when it is not one. The one parser of numbers from outside: form widgets, API calls,
    settings files and CLI flags. Integers beyond float range are kept as they are for an int: validation says they are out of
    bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"must be a number, got {SHORT.repr(value)}")
    if isinstance(value, int) and kind is int:
        return value
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"is far too large, got {SHORT.repr(value)}") from None
    except ValueError:
        raise ValueError(f"must be a number, got {SHORT.repr(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, got {SHORT.repr(value)}")
    if kind is int:
        if not number.is_integer():
            raise ValueError(f"must be a whole number, got {SHORT.repr(value)}")
        return int(number)
    return number


def coerce(s: FieldSpec, value: Any) -> Any:
    """A file's value as its setting's type, else ValueError("must be ..., got ..."); YAML 1.1 reads 2e-4 as a
    string, so numbers given as text are parsed."""
    if value is None:
        if s.optional:
            return None
        raise ValueError(f"must be {KIND_WORDS.get(s.base, s.base)}, got None")
    if s.name == "target_modules":  # "q_proj" or "q_proj,v_proj" is a list of names, not of characters
        if isinstance(value, str):
            value = [x.strip() for x in value.split(",") if x.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
            raise ValueError(f"must be layer names such as q_proj, got {SHORT.repr(value)}")
        return tuple(value)
    if s.base in ("int", "float"):
        return parse_number(value, int if s.base == "int" else float)
    wanted = {"bool": (bool,), "str": (str,), "str | bool": (str, bool), "dict[str, Any]": (dict,)}.get(s.base)
    if wanted and not isinstance(value, wanted):
        raise ValueError(f"must be {KIND_WORDS.get(s.base, s.base)}, got {SHORT.repr(value)}")
    return value


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Unknown sections or keys raise a ValueError naming them; values of the wrong type one SettingsError listing
    them, with the problems of the values that were read."""
    unknown = [k for k in raw if k not in SECTIONS]
    if unknown:
        raise ValueError(f"Unknown config section(s) {unknown}; expected {sorted(SECTIONS)}")
    config, wrong = RunConfig(), []
    for section in SECTIONS:
        values = raw.get(section) or {}
        if not isinstance(values, dict):
            raise ValueError(f"Config section {section!r} must be a mapping, got {type(values).__name__}")
        known = {s.name: s for s in specs(section)}
        bad = [k for k in values if k not in known]
        if bad:
            raise ValueError(f"Unknown key(s) {bad} in section {section!r}; known: {sorted(known)}")
        for name, value in values.items():
            try:
                config.set(known[name].key, coerce(known[name], value))
            except ValueError as exc:
                wrong.append(Problem(known[name].key, str(exc)))
    if wrong:  # with what is wrong with the values that were read, so that one answer lists everything
        unread = {p.field for p in wrong}
        raise SettingsError(wrong + [p for p in check(config) if p.field not in unread])
    return config


def save_config(config: RunConfig, path: str | Path) -> Path:
    """Write as YAML (.yaml/.yml) or JSON (anything else)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        path.write_text(yaml.safe_dump(config.to_dict(), allow_unicode=True, sort_keys=False), encoding="utf-8")
    else:
        path.write_text(json.dumps(config.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def _load_yaml(text: str) -> Any:
    """yaml.safe_load without aliases: nested ones expand a few hundred bytes into gigabytes ("billion laughs")."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise ParseRefusal("aliases (*name) are not allowed in a settings file")
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=NoAliases)  # noqa: S506 - a SafeLoader subclass


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML or JSON file written by ``save_config`` (or by hand)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Config file not found: {path.name}")
    if path.stat().st_size > MAX_CONFIG_BYTES:  # a settings file is a few kB; imports come from anyone
        raise ValueError(f"Config file {path.name} is {path.stat().st_size:,} bytes; the limit is {MAX_CONFIG_BYTES:,}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"Config file {path.name} is not UTF-8 text: save it as UTF-8 (a kft settings file is YAML "
                         "or JSON, as exported by kft)") from None
    try:
        raw = (_load_yaml(text) or {}) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except RecursionError:
        raise ValueError(f"Config file {path.name} is nested too deeply: a settings file holds sections of "
                         "settings, e.g. train: {learning_rate: 2e-4}") from None
    except Exception as exc:  # noqa: BLE001 - report any parse error in plain words
        raise ValueError(f"Could not parse config file {path.name}: {parse_problem(exc)}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"Config file {path.name} must hold a mapping of sections")
    return config_from_dict(raw)
