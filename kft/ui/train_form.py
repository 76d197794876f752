"""The training settings form: widget values <-> RunConfig, the data source choice, the preview text.

Defaults come from the config dataclasses (never retyped here). Everything except ``make_widget`` and
``widget_update`` is plain Python, testable without a browser.
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import gradio as gr

from ..config import (
    BACKENDS,
    DTYPES,
    LORA_TARGETS,
    SAMPLE_DATA,
    TOO_LONG_POLICIES,
    DataArgs,
    LoraArgs,
    ModelArgs,
    RunConfig,
    TrainArgs,
    invalid_settings,
    optimizer_names,
    parse_yes_no,
    scheduler_names,
)
from ..data import FILE_SUFFIXES
from ..preflight import DataPreview, looks_like_hub_id
from ..presets import PRESET_NAMES
from .train_strings import field_info, field_label, t

logger = logging.getLogger(__name__)

MODEL_FIELDS = ("max_seq_length", "dtype", "load_in_4bit", "backend")
DATA_FIELDS = ("split", "max_rows", "too_long")
LORA_FIELDS = tuple(f.name for f in fields(LoraArgs))
TRAIN_FIELDS = tuple(f.name for f in fields(TrainArgs))
SECTION_OF: dict[str, str] = {**{n: "model" for n in MODEL_FIELDS}, **{n: "data" for n in DATA_FIELDS},
                              **{n: "lora" for n in LORA_FIELDS}, **{n: "train" for n in TRAIN_FIELDS}}
FORM_FIELDS: tuple[str, ...] = tuple(SECTION_OF)
DEFAULTS = RunConfig()
KINDS = ("hub", "upload", "sample")
MAX_FIELD_CHARS = 2000  # longest text any one setting may hold (a model id, a split, a LoftQ JSON object)
MODES = ("steps", "epochs")

CHOICES: dict[str, tuple[str, ...]] = {
    "dtype": ("auto", *DTYPES), "backend": BACKENDS, "bias": ("none", "all", "lora_only"),
    "too_long": TOO_LONG_POLICIES, "preset": PRESET_NAMES, "use_gradient_checkpointing": ("unsloth", "true", "false"),
}


def _section(cfg: RunConfig, name: str) -> Any:
    return getattr(cfg, SECTION_OF[name])


def _default_type(name: str) -> type:
    section = {"model": ModelArgs, "lora": LoraArgs, "data": DataArgs, "train": TrainArgs}[SECTION_OF[name]]
    return type(getattr(section(), name))


# ---- values <-> config ------------------------------------------------------------------------------
def to_widget(name: str, value: Any) -> Any:
    """A config value as the widget holds it."""
    if name == "dtype":
        return value or "auto"
    if name == "use_gradient_checkpointing":
        return value if value == "unsloth" else ("true" if value else "false")
    if name == "loftq_config":
        return json.dumps(value) if value else ""
    if name == "target_modules":
        return list(value)
    if name == "max_rows":
        return value or 0  # 0 = all rows (an empty widget would make the API parameter required)
    return value


def config_to_values(cfg: RunConfig) -> dict[str, Any]:
    return {name: to_widget(name, getattr(_section(cfg, name), name)) for name in FORM_FIELDS}


def _from_widget(name: str, value: Any) -> Any:
    """The config value for a widget value; ValueError in plain words when it cannot be one."""
    if name == "dtype":
        return None if value in (None, "", "auto") else str(value)
    if name == "use_gradient_checkpointing":
        return "unsloth" if str(value).strip().lower() == "unsloth" else _flag(value)
    if name == "loftq_config":
        if not str(value or "").strip():
            return None
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            raise ValueError("must be a JSON object such as {\"loftq_bits\": 4}")
        return parsed
    if name == "target_modules":
        return tuple(value or ())
    if name == "max_rows":
        return None if value in (None, "", 0) else _number(value, int)
    kind = _default_type(name)
    if kind is bool:
        return _flag(value)
    if kind in (int, float):
        if value is None or value == "":
            raise ValueError("is empty")
        return _number(value, kind)
    return str(value).strip()


def _flag(value: Any) -> bool:
    """A checkbox's value. Through the API it may come as text: bool("false") would be True."""
    if isinstance(value, bool):
        return value
    if value is None or not str(value).strip():
        return False
    flag = parse_yes_no(str(value))
    if flag is not None:
        return flag
    raise ValueError(f"must be true or false, got {str(value)[:40]!r}")


def _number(value: Any, kind: type) -> int | float:
    number = float(value)
    if kind is int:
        if not number.is_integer():
            raise ValueError(f"must be a whole number, got {value}")
        return int(number)
    return number


def values_to_config(values: dict[str, Any], model: str, length_mode: str = "steps",
                     validate: bool = True) -> RunConfig:
    """Build a RunConfig from the form. Raises one ValueError listing every problem."""
    cfg = RunConfig()
    problems: list[str] = [f"{name} is {len(v):,} characters long; the limit is {MAX_FIELD_CHARS:,}"
                           for name, v in {"model": model, **values}.items()
                           if isinstance(v, str) and len(v) > MAX_FIELD_CHARS]
    if problems:  # checked before anything is parsed: every field is callable directly through the API
        raise invalid_settings(problems)
    cfg.model.name = (model or "").strip()
    for name in FORM_FIELDS:
        if name not in values:
            continue
        try:
            setattr(_section(cfg, name), name, _from_widget(name, values[name]))
        except (ValueError, TypeError) as exc:
            problems.append(f"{SECTION_OF[name]}.{name} {exc}")
    if length_mode == "epochs":
        cfg.train.max_steps = 0
    elif cfg.train.max_steps <= 0:
        problems.append(f"train.max_steps must be at least 1 when training by steps, got {cfg.train.max_steps} "
                        "(or choose epochs)")
    if validate:
        problems.extend(cfg.problems())
    if problems:
        raise invalid_settings(problems)
    return cfg


def preset_values(name: str, batch: Any, accumulation: Any) -> tuple[int, int, bool]:
    """Batch size, accumulation and padding_free after choosing a preset (kft.presets decides)."""
    from ..presets import apply_preset

    cfg = RunConfig()
    cfg.train.per_device_train_batch_size = _number(batch, int)
    cfg.train.gradient_accumulation_steps = _number(accumulation, int)
    t = apply_preset(cfg, name).train
    return t.per_device_train_batch_size, t.gradient_accumulation_steps, t.padding_free


def length_mode_of(cfg: RunConfig) -> str:
    return "steps" if cfg.train.max_steps > 0 else "epochs"


# ---- data source ----------------------------------------------------------------------------------
def data_source(kind: str, hub_dataset: str, upload: str | None, store: Any, lang: str) -> str:
    """The DataArgs.source for the chosen kind; an upload is copied by ``store`` (Workspace.store_upload)."""
    if kind == "sample":
        return SAMPLE_DATA
    if kind == "upload":
        if not upload:
            raise ValueError(t("missing_upload", lang))
        return str(store(upload))
    src = (hub_dataset or "").strip()
    if not looks_like_hub_id(src) or src == SAMPLE_DATA or Path(src).exists():
        raise ValueError(t("not_hub_id", lang, src=src))
    return src


def kind_of(source: str) -> tuple[str, str]:
    """(kind, hub id) for a config's data source; a file path means the file must be uploaded again."""
    if source == SAMPLE_DATA:
        return "sample", DataArgs().source
    if looks_like_hub_id(source) and Path(source).suffix.lower() not in FILE_SUFFIXES:
        return "hub", source
    return "upload", DataArgs().source


# ---- preview text ---------------------------------------------------------------------------------
def preview_markdown(pv: DataPreview, lang: str) -> str:
    s = pv.summary
    shown = Path(pv.source).name if Path(pv.source).is_absolute() else pv.source  # no server paths on the page
    out = [f"**{shown}**: " + t("pv_rows", lang, total=s["rows_in_source"], used=s["rows_used"],
                                      errors=s["errors"], warnings=s["warnings"])]
    if s.get("tokens"):
        keys = list(s["tokens"])
        out += ["", f"{t('pv_tokens', lang)}:", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
                "| " + " | ".join(f"{s['tokens'][k]:g}" for k in keys) + " |"]
    if pv.tokenizer_note:
        out += ["", f"_{pv.tokenizer_note}_"]
    out += ["", f"### {t('pv_examples', lang)}"]
    for i, ex in enumerate(pv.examples, start=1):
        out += ["", f"**#{i}**", "", "````text", ex, "````"]
    out += ["", f"### {t('pv_problems', lang, n=pv.problem_count)}", ""]
    out += [f"- {line}" for line in pv.problems] or [t("pv_no_problems", lang)]
    if pv.problem_count > len(pv.problems):
        out.append(t("pv_more", lang, n=pv.problem_count - len(pv.problems)))
    return "\n".join(out)


# ---- widgets ----------------------------------------------------------------------------------------
def _custom_choices(name: str) -> list[str] | None:
    if name == "optim":
        return list(optimizer_names())
    if name == "lr_scheduler_type":
        return list(scheduler_names())
    return None


def make_widget(name: str, value: Any, lang: str, visible: bool = True) -> gr.components.Component:
    """One settings widget whose default is the config's value."""
    common: dict[str, Any] = {"label": field_label(name, lang), "info": field_info(name, lang), "visible": visible,
                              "elem_id": f"kft-{name}"}
    if name == "target_modules":
        return gr.CheckboxGroup(choices=list(LORA_TARGETS), value=value, **common)
    if name in CHOICES:
        return gr.Dropdown(choices=list(CHOICES[name]), value=value, **common)
    custom = _custom_choices(name)
    if custom is not None:
        return gr.Dropdown(choices=custom, value=value, allow_custom_value=True, **common)
    kind = _default_type(name)
    if kind is bool:
        return gr.Checkbox(value=value, **common)
    if name == "max_rows" or kind is int:
        return gr.Number(value=value, precision=0, **common)
    if kind is float:
        return gr.Number(value=value, **common)
    return gr.Textbox(value=value, max_lines=1, **common)


def widget_update(name: str, lang: str) -> dict[str, Any]:
    return gr.update(label=field_label(name, lang), info=field_info(name, lang))
