"""Validation, once, at the boundary: a RunConfig becomes a list of structured problems.

Field rules come from each field's ``setting(...)`` in kft.config.args; rules tying fields together are written below.
Callers ``validate`` where a request enters; the layers below trust the config they get.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .args import FieldSpec, RunConfig, specs

# values are quoted in messages with bounded size: a nested value is cut, never expanded in full
SHORT = reprlib.Repr()  # (keyword arguments to Repr need Python 3.12)
SHORT.maxlevel, SHORT.maxlist, SHORT.maxtuple, SHORT.maxdict, SHORT.maxstring, SHORT.maxother = 2, 4, 4, 4, 60, 60
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
MAX_HUB_ID = 200  # the Hub allows 96 characters per name; longer text is never an id (nor used as a path)


def looks_like_hub_id(name: str) -> bool:
    """'org/name' or 'name' made of letters, digits, '-', '_' and '.' (no path separators beyond one '/')."""
    return len(name) <= MAX_HUB_ID and bool(HUB_ID.match(name)) and ".." not in name


@dataclass(frozen=True)
class Problem:
    """One thing to fix: the setting ("train.learning_rate", or "" for the request as a whole) and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field} {self.message}" if self.field else self.message


class SettingsError(ValueError):
    """Settings that cannot be used; ``problems`` lists each one, the message shows them one per line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("Invalid settings:\n- " + "\n- ".join(map(str, self.problems)))


MIN_TEMPERATURE = 0.01
INVALID_UNICODE = "holds text that is not valid Unicode (a lone surrogate such as \\ud800): send UTF-8 text"


def valid_text(text: str) -> bool:
    """False for text holding lone surrogates: invalid Unicode, which no file, tokenizer or path can take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bounds_text(s: FieldSpec) -> str:
    # bounds and values are written as given ({x}, not {x:g}): 2**32 - 1 must not read as 4.29497e+09
    lo, hi = s.min if s.min is not None else s.gt, s.max if s.max is not None else s.lt
    if lo is not None and hi is not None:
        if s.min is not None and s.max is not None:
            return f"between {s.min} and {s.max}"
        return f"in {'[' if s.min is not None else '('}{lo}, {hi}{']' if s.max is not None else ')'}"
    if s.gt is not None:
        return f"greater than {s.gt}"
    if s.min is not None:
        return "0 or more" if s.min == 0 else f"at least {s.min}"
    return f"at most {s.max}" if s.max is not None else f"below {s.lt}"


def _in_bounds(s: FieldSpec, v: float) -> bool:
    return not ((s.min is not None and v < s.min) or (s.gt is not None and v <= s.gt)
                or (s.max is not None and v > s.max) or (s.lt is not None and v >= s.lt))


def field_problem(s: FieldSpec, value: Any) -> str | None:
    """What is wrong with one value of one setting (None when it is fine)."""
    if value is None:
        return None if s.optional else "is empty"
    if s.base in ("int", "float") and not isinstance(value, bool) and isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if not _in_bounds(s, value):  # ints beyond float range compare exactly, and are quoted cut short
            return f"must be {_bounds_text(s)}, got {SHORT.repr(value)}"
    if isinstance(value, str) and not valid_text(value):
        return INVALID_UNICODE
    allowed = s.allowed()
    if allowed is not None and value not in allowed:
        if callable(s.choices):
            return f"{SHORT.repr(value)} is not a name transformers knows (e.g. {', '.join(allowed[:2])})"
        return f"must be one of {', '.join(map(str, allowed))}, got {SHORT.repr(value)}"
    if s.base == "str" and not str(value).strip():
        return "is empty"
    return None


def _finite(value: float) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _rules(c: RunConfig, sections: tuple[str, ...]) -> list[Problem]:
    """Rules that tie several settings together, or that field bounds cannot say."""
    p: list[Problem] = []
    m, lo, d, t = c.model, c.lora, c.data, c.train
    if "lora" in sections:
        if not lo.target_modules:
            p.append(Problem("lora.target_modules", "is empty: name at least one layer such as q_proj"))
        p += _loftq_problems(c)
    if "train" in sections:
        if t.max_steps <= 0 and not t.num_train_epochs > 0:
            p.append(Problem("train.max_steps", "is 0 or less and train.num_train_epochs is not positive: set one of them"))
        if isinstance(t.learning_rate, (int, float)) and _finite(t.learning_rate) and t.learning_rate > 1:
            p.append(Problem("train.learning_rate", f"{t.learning_rate} is far too large (the seed uses 2e-4)"))
        if t.padding_free and d.too_long == "truncate":
            p.append(Problem("train.padding_free", "needs data.too_long 'drop' or 'error' (rows are not truncated "
                                                   "when padding-free)"))
    if "generation" in sections:
        g = c.generation
        if g.do_sample and not g.temperature > 0:
            p.append(Problem("generation.temperature", f"must be greater than 0 when sampling, got {g.temperature}"))
        elif g.do_sample and _finite(g.temperature) and g.temperature < MIN_TEMPERATURE:  # 1e-300 overflows the logits
            p.append(Problem("generation.temperature", f"must be at least {MIN_TEMPERATURE} when sampling, "
                                                       f"got {g.temperature}"))
    if "model" in sections and not str(m.name).strip():
        p.append(Problem("model.name", "is empty: give a Hub id, a local directory or 'tiny'"))
    return [x for x in p if x.message]


def _loftq_problems(c: RunConfig) -> list[Problem]:
    """LoftQ quantizes the base itself: PEFT runs it on CUDA only, needs scipy and a base not loaded in 4-bit."""
    from ..system.hardware import cuda_capability, has_package

    cfg, key = c.lora.loftq_config, "lora.loftq_config"
    if not cfg:
        return []
    p = []
    if not isinstance(cfg, dict) or not {"loftq_bits", "loftq_iter"} <= set(cfg):
        p.append(Problem(key, 'needs both loftq_bits and loftq_iter, e.g. {"loftq_bits": 4, "loftq_iter": 1}'))
    if c.model.load_in_4bit:
        p.append(Problem(key, "needs model.load_in_4bit false: LoftQ quantizes the base itself"))
    if cuda_capability() is None:
        p.append(Problem(key, "needs a CUDA GPU (PEFT runs LoftQ on CUDA only); leave it empty here"))
    if not has_package("scipy"):
        p.append(Problem(key, "needs scipy: pip install scipy"))
    return p


def check(config: RunConfig, *sections: str) -> list[Problem]:
    """Every problem with ``config`` in the given sections (all when none are named)."""
    from .args import SECTIONS

    sections = sections or tuple(SECTIONS)
    problems = []
    for s in specs(*sections):
        if s.key in ("model.name", "data.source") and not str(config.get(s.key)).strip():
            continue  # said by the rules below in their own words
        message = field_problem(s, config.get(s.key))
        if message:
            problems.append(Problem(s.key, message))
    if "data" in sections and not str(config.data.source).strip():
        problems.append(Problem("data.source", "is empty: give a Hub dataset id, a file or 'sample'"))
    return problems + _rules(config, sections)


def validate(config: RunConfig, *sections: str) -> RunConfig:
    """Raise one SettingsError listing every problem; return the config when valid."""
    problems = check(config, *sections)
    if problems:
        raise SettingsError(problems)
    return config
