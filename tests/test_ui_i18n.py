"""kft/ui/strings: one table per language with the same keys and fields, every key the UI uses in them, Hangul only
there (issue 21); a message already on screen is re-rendered in the other language (issue 16)."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

from kft.config.args import specs
from kft.ui.strings import LANGS, TABLES, retranslate, tr

KFT = Path(__file__).resolve().parents[1] / "kft"
STRINGS_DIR = KFT / "ui" / "strings"
HANGUL = re.compile("[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
# Korean that is not UI text: the prompt template, the refusal detector's phrases, two of the preset prompts
HANGUL_FILES = {"ui/strings/ko.py", "data/template.py", "inference/safety.py"}
HANGUL_CONSTANTS = {"config/args.py": ("WATCH_HARMFUL", "WATCH_BENIGN")}


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


# ---- the tables ----------------------------------------------------------------------------------------------
def test_both_languages_have_exactly_the_same_keys():
    assert set(TABLES) == set(LANGS) == {"ko", "en"}
    assert TABLES["ko"].keys() == TABLES["en"].keys()
    assert len(TABLES["ko"]) > 250 and all(re.fullmatch(r"[a-z_]+\.[\w#]+", key) for key in TABLES["ko"])


def test_each_key_has_the_same_format_fields_in_both_languages():
    differ = {key: (_fields(TABLES["ko"][key]), _fields(TABLES["en"][key])) for key in TABLES["ko"]
              if _fields(TABLES["ko"][key]) != _fields(TABLES["en"][key])}
    assert not differ
    for table in TABLES.values():  # and each renders with its fields filled in
        for key, template in table.items():
            assert "{" not in template.format(**dict.fromkeys(_fields(template), 1)), key


def test_a_missing_key_shows_itself_and_english_is_the_fallback_language():
    assert tr("train.no_such_text", "ko") == "train.no_such_text"
    assert tr("train.started", "fr", run="r1") == tr("train.started", "en", run="r1") == "Training started: r1"


def test_english_field_info_is_each_settings_help_in_kft_config():
    for s in specs("model", "lora", "data", "train"):
        if s.form and s.name not in ("max_rows", "preset"):  # the form words these two its own way
            assert TABLES["en"][f"field_info.{s.name}"] == s.help, s.name


# ---- every key the UI uses ------------------------------------------------------------------------------------
def _ui_sources() -> dict[str, ast.AST]:
    """kft/ui's modules but the tables themselves."""
    tables = {STRINGS_DIR / "ko.py", STRINGS_DIR / "en.py"}
    return {str(p.relative_to(KFT)): ast.parse(p.read_text(encoding="utf-8")) for p in sorted((KFT / "ui").rglob("*.py"))
            if p not in tables}


def used_keys() -> tuple[set[str], set[str]]:
    """The keys the UI's code names: string literals of the form section.name (wherever they are: a tr call, a
    label registration, a dict of keys), and the leading "section.prefix_" of f-strings such as f"train.kind_{k}".
    A setting's dotted name ("train.max_steps", in a Problem) is not a key."""
    sections = {key.split(".")[0] for key in TABLES["en"]}
    settings = {s.key for s in specs()}
    literal = re.compile(rf"({'|'.join(sections)})\.[\w#]+")
    keys, prefixes = set(), set()
    for tree in _ui_sources().values():
        parts = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts \
                    and literal.fullmatch(node.value):
                keys.add(node.value)
            elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                head = str(node.values[0].value)
                if re.fullmatch(rf"({'|'.join(sections)})\.[\w#]*", head):
                    prefixes.add(head)
    return keys - settings, prefixes


def test_every_key_the_ui_uses_is_in_the_tables():
    keys, prefixes = used_keys()
    assert len(keys) > 120 and len(prefixes) >= 10  # the scan reads the UI (one that found nothing would pass)
    assert {"train.busy_generating", "train.mem_plot_cpu", "guard.a_value", "common.lang_name"} <= keys
    assert {"status.", "field_label.", "field_info.", "runs_col.", "memory.", "train.choice_"} <= prefixes
    assert sorted(keys - TABLES["en"].keys()) == []
    assert sorted(p for p in prefixes if not any(key.startswith(p) for key in TABLES["en"])) == []


# ---- Hangul only in the Korean table --------------------------------------------------------------------------
def _allowed_lines(rel: str, source: str) -> set[int]:
    """The lines of ``rel``'s Korean constants that are not UI text (the two watch prompts)."""
    names = HANGUL_CONSTANTS.get(rel, ())
    return {line for node in ast.parse(source).body if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id in names for t in node.targets)
            for line in range(node.lineno, node.end_lineno + 1)}


def test_no_hangul_in_kft_outside_the_korean_table_and_the_korean_data():
    found = []
    for path in sorted(KFT.rglob("*.py")):
        rel = path.relative_to(KFT).as_posix()
        if rel in HANGUL_FILES:
            continue
        source = path.read_text(encoding="utf-8")
        allowed = _allowed_lines(rel, source)
        found += [f"{rel}:{n}: {line.strip()[:60]}" for n, line in enumerate(source.splitlines(), 1)
                  if HANGUL.search(line) and n not in allowed]
    assert not found, "\n".join(found)
    assert _allowed_lines("config/args.py", (KFT / "config" / "args.py").read_text(encoding="utf-8"))  # both found
    assert HANGUL.search(TABLES["ko"]["common.title"]) and not any(HANGUL.search(v) for v in TABLES["en"].values())


# ---- a message on screen, re-rendered -------------------------------------------------------------------------
def test_a_notice_on_screen_is_re_rendered_in_the_new_language_with_its_values_kept():
    detail = "row 2: instruction is empty; row 3: not valid JSON"  # a library's English detail stays as it is
    shown = "⚠️ " + tr("train.refused", "en", msg=detail)
    ko = retranslate("train", shown, "ko")
    assert ko == "⚠️ " + tr("train.refused", "ko", msg=detail)
    assert retranslate("train", ko, "en") == shown
    started = tr("train.started", "ko", run="20261130-075859")
    assert retranslate("train", started, "en") == "Training started: 20261130-075859"
    assert retranslate("train", tr("train.nothing_to_stop", "en"), "ko") == tr("train.nothing_to_stop", "ko")
    assert retranslate("runs", tr("runs.pick_run", "ko"), "en") == "Pick a run."  # each tab's own section


def test_text_no_template_writes_is_left_alone():
    assert retranslate("train", "", "ko") is None
    assert retranslate("train", "something a person typed", "ko") is None
    assert retranslate("train", tr("compare.done", "en"), "ko") is None  # another tab's text: not this tab's


def test_no_template_is_only_a_field_so_none_matches_every_text():
    for table in TABLES.values():
        for key, template in table.items():
            assert template.strip() not in {"{msg}", "{e}", "{run}", "{m}", "{a}"}, key


def test_chart_legends_and_the_memory_report_read_korean_in_the_korean_ui():
    """Issue 24: the legends ("series", "training") and the memory report stayed English in the Korean UI."""
    from kft.training.memory import REPORT_LINES, format_report
    from kft.ui import plots

    hangul = re.compile("[가-힣]")
    for key in ("plot.legend_series", "plot.legend_model", "plot.series_training", "plot.series_eval",
                *(f"memory.{k}" for k in REPORT_LINES)):
        assert hangul.search(tr(key, "ko")), key
    report = {"device": "cpu", "max_memory_gb": 8, "start_rss_gb": 1, "train_runtime_s": 3, "peak_reserved_gb": 2,
              "peak_for_training_gb": 1, "peak_percent": 25, "training_percent": 12}
    ko = format_report(report, {k: tr(f"memory.{k}", "ko") for k in REPORT_LINES})
    assert "학습에 3초 사용." in ko and format_report(report) == format_report(report, {
        k: tr(f"memory.{k}", "en") for k in REPORT_LINES}), "English keeps the seed's wording"
    assert set(plots.loss_frame(None, "ko").dtypes.astype(str)) >= {"int64", "float64"}  # typed even when empty
    assert plots.chart(plots.loss_frame(None, "ko")) is None
