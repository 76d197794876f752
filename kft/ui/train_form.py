"""The training settings form: widget values <-> RunConfig, the data source choice, the preview text.

Defaults come from the config dataclasses; all but ``make_widget`` and ``widget_update`` is testable without a browser.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import gradio as gr

from ..config.args import SAMPLE_DATA, DataArgs, FieldSpec, RunConfig, specs
from ..config.files import parse_number, parse_problem, parse_yes_no
from ..config.validation import SHORT, Problem, SettingsError, looks_like_hub_id
from ..data.rows import FILE_SUFFIXES
from ..training.preflight import DataPreview
from .strings import tr

logger = logging.getLogger(__name__)

SPECS: dict[str, FieldSpec] = {s.name: s for s in specs("model", "lora", "data", "train") if s.form}
"""Every setting the form shows, by name (kft.config.args says which: ``form=False`` leaves one out)."""
MODEL_FIELDS = tuple(n for n, s in SPECS.items() if s.section == "model")
DATA_FIELDS = tuple(n for n, s in SPECS.items() if s.section == "data")
LORA_FIELDS = tuple(n for n, s in SPECS.items() if s.section == "lora")
TRAIN_FIELDS = tuple(n for n, s in SPECS.items() if s.section == "train")
SECTION_OF: dict[str, str] = {n: s.section for n, s in SPECS.items()}
FORM_FIELDS: tuple[str, ...] = MODEL_FIELDS + DATA_FIELDS + LORA_FIELDS + TRAIN_FIELDS
"""In the tab's order (model, data, LoRA and training boxes): the order of the widgets in /import_settings."""
DEFAULTS = RunConfig()
KINDS = ("hub", "upload", "sample")
MAX_FIELD_CHARS = 2000  # longest text any one setting may hold (a model id, a split, a LoftQ JSON object)
MODES = ("steps", "epochs")


def _section(cfg: RunConfig, name: str) -> Any:
    return getattr(cfg, SECTION_OF[name])


def to_widget(name: str, value: Any) -> Any:
    """A config value as the widget holds it (the widget hints are kft.config.args's)."""
    widget = SPECS[name].widget
    if widget == "auto_none":
        return value or "auto"
    if widget == "unsloth_bool":
        return value if value == "unsloth" else ("true" if value else "false")
    if widget == "json":
        return json.dumps(value) if value else ""
    if widget == "layers":
        return list(value)
    if widget == "zero_is_none":
        return value or 0  # 0 = None (an empty widget would make the API parameter required)
    if widget == "auto_int":
        return "auto" if value is None else value  # not None: an empty widget would make the API parameter required
    return value


def config_to_values(cfg: RunConfig) -> dict[str, Any]:
    return {name: to_widget(name, getattr(_section(cfg, name), name)) for name in FORM_FIELDS}


def _from_widget(name: str, value: Any) -> Any:
    """The config value for a widget value; ValueError in plain words when it cannot be one."""
    spec = SPECS[name]
    if spec.widget == "auto_none":
        return None if value in (None, "", "auto") else str(value)
    if spec.widget == "unsloth_bool":
        return "unsloth" if str(value).strip().lower() == "unsloth" else parse_flag(value)
    if spec.widget == "json":
        if not str(value or "").strip():
            return None
        parsed = parse_json(str(value))
        if not isinstance(parsed, dict):
            raise ValueError("must be a JSON object such as {\"loftq_bits\": 4}")
        return parsed
    if spec.widget == "layers":
        return tuple(value or ())
    if spec.widget == "zero_is_none":
        return None if value in (None, "", 0) else parse_number(value, int)
    if spec.widget == "auto_int":
        return None if value is None or str(value).strip() in ("", "auto") else parse_number(value, int)
    if spec.base == "bool":
        return parse_flag(value)
    if spec.base in ("int", "float"):
        if value is None or value == "":
            raise ValueError("is empty")
        return parse_number(value, int if spec.base == "int" else float)
    return str(value).strip()


MAX_JSON_DEPTH = 20  # a LoftQ object is flat; deeper values would be copied and printed recursively later


def parse_json(text: str) -> Any:
    """JSON text as a value; ValueError in plain words for text that is not JSON or is nested too deeply."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    except ValueError as exc:  # not JSON, a number of more than 4300 digits
        raise ValueError(f"is not valid JSON: {parse_problem(exc, line=False)}") from None
    else:
        level, stack = 0, [(value, 1)]
        while stack and level <= MAX_JSON_DEPTH:
            item, level = stack.pop()
            children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
            stack += [(child, level + 1) for child in children]
        if level <= MAX_JSON_DEPTH:
            return value
    raise ValueError(f"is nested too deeply to read as JSON (more than {MAX_JSON_DEPTH} levels)")


def parse_flag(value: Any) -> bool:
    """A checkbox's value. Through the API it may come as text: bool("false") would be True."""
    if isinstance(value, bool):
        return value
    if value is None or not str(value).strip():
        return False
    flag = parse_yes_no(str(value))
    if flag is not None:
        return flag
    raise ValueError(f"must be true or false, got {str(value)[:40]!r}")


def values_to_config(values: dict[str, Any], model: str, length_mode: str = "steps") -> RunConfig:
    """A RunConfig from the form; SettingsError lists values not of their type (acceptability: kft.config.validation)."""
    cfg, problems = parse_values(values, model, length_mode)
    if problems:
        raise SettingsError(problems)
    return cfg


def parse_values(values: dict[str, Any], model: str, length_mode: str = "steps") -> tuple[RunConfig, list[Problem]]:
    """The form's RunConfig (unparsable values keep their default) and the unparsable values, for the caller to report
    with the other problems; SettingsError at once for text too long to parse at all."""
    cfg = RunConfig()
    problems = [Problem(name, f"is {len(v):,} characters long; the limit is {MAX_FIELD_CHARS:,}")
                for name, v in {"model": model, **values}.items() if isinstance(v, str) and len(v) > MAX_FIELD_CHARS]
    if problems:  # checked before anything is parsed: every field is callable directly through the API
        raise SettingsError(problems)
    if isinstance(model, str) or model is None:
        cfg.model.name = (model or "").strip()
    else:  # a dropdown that takes typed names passes any JSON value on
        problems.append(Problem("model.name", f"must be text, got {SHORT.repr(model)}"))
    for name in FORM_FIELDS:
        if name not in values:
            continue
        try:
            setattr(_section(cfg, name), name, _from_widget(name, values[name]))
        except (ValueError, TypeError) as exc:
            problems.append(Problem(SPECS[name].key, str(exc)))
    if length_mode == "epochs":
        cfg.train.max_steps = 0
    elif cfg.train.max_steps <= 0:
        problems.append(Problem("train.max_steps", f"must be at least 1 when training by steps, got "
                                                   f"{cfg.train.max_steps} (or choose epochs)"))
    return cfg, problems


def preset_values(name: str, batch: Any, accumulation: Any) -> tuple[Any, ...]:
    """The widget values of ``presets.PRESET_FIELDS`` after choosing a preset (kft.config.presets decides)."""
    from ..config.presets import PRESET_FIELDS, apply_preset

    cfg = RunConfig()
    cfg.train.per_device_train_batch_size = parse_number(batch, int)
    cfg.train.gradient_accumulation_steps = parse_number(accumulation, int)
    values = config_to_values(apply_preset(cfg, name))
    return tuple(values[f] for f in PRESET_FIELDS)


def length_mode_of(cfg: RunConfig) -> str:
    return "steps" if cfg.train.max_steps > 0 else "epochs"


def data_source(kind: str, hub_dataset: str, upload: str | None, store: Any, lang: str) -> str:
    """The DataArgs.source for the chosen kind; an upload is copied by ``store`` (Workspace.store_upload)."""
    if kind == "sample":
        return SAMPLE_DATA
    if kind == "upload":
        if not upload:
            raise ValueError(tr("train.missing_upload", lang))
        return str(store(upload))
    src = (hub_dataset or "").strip()
    if not looks_like_hub_id(src) or src == SAMPLE_DATA or Path(src).exists():
        raise ValueError(tr("train.not_hub_id", lang, src=src[:100]))
    return src


def kind_of(source: str) -> tuple[str, str]:
    """(kind, hub id) for a config's data source; a file path means the file must be uploaded again."""
    if source == SAMPLE_DATA:
        return "sample", DataArgs().source
    if looks_like_hub_id(source) and Path(source).suffix.lower() not in FILE_SUFFIXES:
        return "hub", source
    return "upload", DataArgs().source


def preview_markdown(pv: DataPreview, lang: str) -> str:
    s = pv.summary
    shown = Path(pv.source).name if Path(pv.source).is_absolute() else pv.source  # no server paths on the page
    checked = s.get("rows_checked", s["rows_in_source"])
    key = "train.pv_rows_partial" if checked < s["rows_in_source"] else "train.pv_rows"
    out = [f"**{shown}**: " + tr(key, lang, total=s["rows_in_source"], used=s["rows_used"], checked=checked,
                                 errors=s["errors"], warnings=s["warnings"])]
    if s.get("tokens"):
        keys = list(s["tokens"])
        out += ["", f"{tr('train.pv_tokens', lang)}:", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
                "| " + " | ".join(f"{s['tokens'][k]:g}" for k in keys) + " |"]
    if pv.measured:
        out += ["", tr("train.pv_sampled", lang, n=pv.measured)]
    if pv.tokenizer_note:
        out += ["", f"_{pv.tokenizer_note}_"]
    out += ["", f"### {tr('train.pv_examples', lang)}"]
    for i, ex in enumerate(pv.examples, start=1):
        out += ["", f"**#{i}**", "", "````text", ex, "````"]
    out += ["", f"### {tr('train.pv_problems', lang, n=pv.problem_count)}", ""]
    out += [f"- {line}" for line in pv.problems] or [tr("train.pv_no_problems", lang)]
    if pv.problem_count > len(pv.problems):
        out.append(tr("train.pv_more", lang, n=pv.problem_count - len(pv.problems)))
    return "\n".join(out)


def field_label(name: str, lang: str) -> str:
    """A setting's label with the config field's name ("Learning rate (learning_rate)"), so the UI, the CLI flags
    and exported YAML files name each setting the same way."""
    return f"{tr(f'field_label.{name}', lang)} ({name})"


def field_info(name: str, lang: str) -> str:
    return tr(f"field_info.{name}", lang)


def make_widget(name: str, value: Any, lang: str, visible: bool = True) -> gr.components.Component:
    """One settings widget, chosen from its setting's type, choices and widget hint (kft.config.args)."""
    spec = SPECS[name]
    common: dict[str, Any] = {"label": field_label(name, lang), "info": field_info(name, lang), "visible": visible,
                              "elem_id": f"kft-{name}"}
    if spec.widget == "layers":
        return gr.CheckboxGroup(choices=list(spec.default), value=value, **common)
    if spec.widget == "auto_none":
        return gr.Dropdown(choices=["auto", *spec.allowed()], value=value, **common)
    if spec.widget == "auto_int":  # "auto", 0, or any whole number typed in
        return gr.Dropdown(choices=["auto", 0], value=value, allow_custom_value=True, **common)
    if spec.widget == "unsloth_bool":
        return gr.Dropdown(choices=["unsloth", "true", "false"], value=value, **common)
    if spec.choices is not None:  # a callable: names transformers knows, and others may be typed
        return gr.Dropdown(choices=list(spec.allowed()), value=value, allow_custom_value=callable(spec.choices),
                           **common)
    if spec.base == "bool":
        # kft-check: as wide as the other fields (a full row squeezed it to one letter per line: server.CSS)
        return gr.Checkbox(value=value, elem_classes="kft-check", **common)
    if spec.base in ("int", "float"):
        # no precision=0 for whole numbers: gradio would round NaN or 1e400 itself and answer in Python's words;
        # kft's parser (parse_number) says what is wrong instead
        return gr.Number(value=value, precision=None, **common)
    return gr.Textbox(value=value, max_lines=1, **common)


def widget_update(name: str, lang: str) -> dict[str, Any]:
    return gr.update(label=field_label(name, lang), info=field_info(name, lang))
