"""Hostile input through the API (issue 15): each class the review found answered with a raw Python exception, or
accepted and then failed, is now refused in kft's words (the one refusal shape: text starting with "⚠️", no Python
exception text). Values go as raw JSON (conftest.call_api): gradio_client refuses NaN and lone surrogates itself."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from conftest import call_api, free_port, running_app
from kft.config.app_settings import AppSettings
from kft.ui import train_form as form
from kft.ui.guard import REFUSAL

FAST = dict(model="tiny", data_kind="sample", max_seq_length=512, learning_rate=1e-2, max_steps=1,
            use_gradient_checkpointing="false", lang="en")
COMPARE = dict(input_="", source="run", run="", hub="", max_new_tokens=8, lang="en")
PYTHON_TEXT = ("Traceback", "Error:", "object has no attribute", "maximum recursion", "codec", "Errno")
NUMERIC = [n for n, s in form.SPECS.items() if s.base in ("int", "float") or s.widget == "zero_is_none"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    settings = AppSettings(port=free_port(), data_dir=str(tmp_path_factory.mktemp("hostile")), lang="en", max_steps=5,
                           max_new_tokens=8)
    with running_app(settings) as (url, ws):
        yield url, ws


def kft_text(event_payload: tuple[str, object]) -> str:
    """The text of a refusal (a notice or an error), checked to be in kft's shape."""
    event, payload = event_payload
    text = payload if event == "error" else payload[-1] if isinstance(payload, list) else payload
    assert isinstance(text, str) and text.startswith(REFUSAL), event_payload
    assert not [m for m in PYTHON_TEXT if m in text], text
    return text


def upload(url: str, name: str, content: bytes) -> dict:
    r = httpx.post(f"{url}gradio_api/upload", files={"files": (name, content)}, timeout=60)
    return {"path": r.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def test_every_numeric_setting_refuses_integers_beyond_float_range_and_nan(app):
    url, ws = app
    assert len(NUMERIC) >= 16
    for name in NUMERIC:
        for value in (10**400, float("nan")):
            text = kft_text(call_api(url, "/start_training", **{**FAST, name: value}))
            assert name in text, (name, text)
    assert ws.training.job is None  # nothing started


@pytest.mark.parametrize(("changes", "expected"), [
    (dict(length_mode="epochs", num_train_epochs=1e308), "train.num_train_epochs must be at most 10000"),
    (dict(weight_decay=1e308), "train.weight_decay must be between 0 and 1"),
    (dict(seed=2**32), "train.seed must be between 0 and 4294967295"),
    (dict(random_state=-1), "lora.random_state must be between 0 and 4294967295"),
    (dict(loftq_config="[" * 999 + "]" * 999), "lora.loftq_config is nested too deeply"),
    (dict(loftq_config='{"loftq_bits": ' + "[" * 50 + "]" * 50 + "}"), "lora.loftq_config is nested too deeply"),
    (dict(split="tr\ud800ain"), "data.split holds text that is not valid Unicode"),
    (dict(data_kind="hub", hub_dataset="a/" + "b" * 5000), "is not a Hugging Face dataset id"),
])
def test_out_of_range_and_unparsable_settings_are_refused_before_anything_loads(app, changes, expected):
    url, ws = app
    assert expected in kft_text(call_api(url, "/start_training", **{**FAST, **changes}))
    assert ws.training.job is None and ws.slot.loaded is None


def test_preview_refuses_a_hub_id_too_long_to_be_one(app):
    url, _ = app
    text = kft_text(call_api(url, "/preview_data", model="tiny", data_kind="hub", hub_dataset="a/" + "b" * 5000,
                             lang="en"))
    assert "is not a Hugging Face dataset id" in text


@pytest.mark.parametrize(("changes", "expected"), [
    (dict(instruction="hello \ud800"), "the prompt holds text that is not valid Unicode"),
    (dict(instruction="hello", max_new_tokens=float("nan")), "max_new_tokens must be a finite number"),
    (dict(instruction="hello", do_sample=True, temperature=1e-300), "Temperature is out of its range (0.05 to 2.0)"),
    (dict(instruction="hello", repetition_penalty=1e308), "Repetition penalty is out of its range (1.0 to 2.0)"),
])
def test_comparison_refuses_invalid_prompts_and_decoding_values(app, changes, expected):
    url, _ = app
    assert expected in kft_text(call_api(url, "/compare", **{**COMPARE, **changes}))


def test_a_value_gradio_itself_refuses_is_answered_in_kfts_shape(app):
    url, _ = app
    text = kft_text(call_api(url, "/start_training", **{**FAST, "dtype": "bogus"}))
    assert "the value sent for Compute dtype (dtype) is not one of its choices" in text
    text = kft_text(call_api(url, "/start_training", **{**FAST, "max_rows": {"a": 1}}))
    assert "max_rows must be a number" in text  # a number widget passes the raw value on: kft's parser answers


def test_an_unexpected_exception_becomes_a_kft_message_and_the_app_keeps_serving(app, monkeypatch, caplog):
    url, ws = app

    def broken() -> bool:
        raise AttributeError("'NoneType' object has no attribute 'set'")

    monkeypatch.setattr(ws.training, "stop", broken)
    text = kft_text(call_api(url, "/stop_training", lang="en"))
    assert "unexpected problem" in text and "NoneType" not in text
    assert "object has no attribute" in caplog.text  # the traceback went to the server log
    monkeypatch.undo()
    assert call_api(url, "/stop_training", lang="en")[0] == "complete"


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("deep.jsonl", b'{"instruction": ' + b"[" * 3000 + b"]" * 3000 + b', "output": "x"}\n', "nested too deeply"),
    ("deep.json", b"[" * 3000 + b"]" * 3000, "nested too deeply"),
    ("utf16.csv", "instruction,output\n가,나\n".encode("utf-16"), "is not UTF-8 text"),
    ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not UTF-8 text"),
    ("quote.csv", b'instruction,output\n"unclosed,x\nb,c\n', "is never closed"),
    ("surrogate.jsonl", b'{"instruction": "a\\ud800", "output": "x"}\n', "not valid Unicode"),
])
def test_unreadable_data_files_say_what_the_file_is_and_how_to_fix_it(app, name, content, expected):
    url, ws = app
    text = call_api(url, "/preview_data", model="tiny", data_kind="upload", upload=upload(url, name, content),
                    lang="en")[1][0]
    assert expected in text, text
    assert str(ws.data_dir) not in text and "/tmp/" not in text  # names, not server paths
    assert not [m for m in PYTHON_TEXT if m in text], text


def test_a_deeply_nested_prompt_set_is_refused_in_words(app):
    url, _ = app
    content = b'{"prompt": ' + b"[" * 3000 + b"]" * 3000 + b', "label": "harmful"}\n'
    text = kft_text(call_api(url, "/scorecard", prompt_set="upload", upload=upload(url, "deep.jsonl", content),
                             **{k: v for k, v in COMPARE.items() if k != "input_"}))
    assert "nested too deeply" in text


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("latin1.yaml", "train:\n  optim: caf\xe9\n".encode("latin-1"), "is not UTF-8 text"),
    ("deep.json", b'{"train": ' + b"[" * 3000 + b"]" * 3000 + b"}", "is nested too deeply"),
    ("big.yaml", b"train:\n  max_steps: " + b"9" * 400 + b"\n  learning_rate: 1e999\n",
     "train.max_steps must be at most 1000000000, got 999999"),
    ("nan.json", b'{"train": {"seed": NaN}}', "train.seed must be a finite number"),
])
def test_unusable_settings_files_are_refused_in_words(app, name, content, expected):
    url, ws = app
    event, outputs = call_api(url, "/import_settings", path=upload(url, name, content), lang="en")
    text = outputs[-1]  # the notice: a refusal, or the import with its problems listed
    assert expected in text, text
    assert not [m for m in PYTHON_TEXT if m in text], text
    assert str(ws.data_dir) not in text and "/tmp/" not in text


# ---- Python's wording inside kft messages (issue 23, item 9) --------------------------------------------------
PYTHON_WORDS = ("Exceeds the limit", "set_int_max_str_digits", "Unterminated string starting at", "Expecting value",
                "(char ", "Errno", "No space left on device")
DIGITS = b"9" * 5000


@pytest.mark.parametrize(("kind", "name", "content", "expected"), [
    ("data", "digits.jsonl", b'{"instruction": "a", "output": ' + DIGITS + b"}\n", "a number has more than 4300 digits"),
    ("data", "digits.json", b'[{"instruction": "a", "output": ' + DIGITS + b"}]", "a number has more than 4300 digits"),
    ("data", "open.json", b'[{"instruction": "a", "output": "b}]', "a text in quotes is not closed"),
    ("data", "open.jsonl", b'{"instruction": "a", "output": "b}\n', "a text in quotes is not closed"),
    ("settings", "digits.yaml", b"train:\n  seed: " + DIGITS + b"\n", "a number has more than 4300 digits"),
    ("settings", "digits.json", b'{"train": {"seed": ' + DIGITS + b"}}", "a number has more than 4300 digits"),
    ("settings", "open.json", b'{"train": {"optim": "adamw}}', "a text in quotes is not closed (line 1, column 21)"),
    ("settings", "open.yaml", b'train:\n  optim: "adamw\n', "is not valid YAML (line"),
])
def test_files_with_huge_numbers_or_open_strings_are_refused_in_kfts_words(app, kind, name, content, expected):
    """A data file (preview) or a settings file (import): Python's "Exceeds the limit (4300 digits)... use
    sys.set_int_max_str_digits()" and "Unterminated string starting at: ... (char 41)" reached the page."""
    url, _ = app
    if kind == "data":
        text = call_api(url, "/preview_data", model="tiny", data_kind="upload", upload=upload(url, name, content),
                        lang="en")[1][0]
    else:
        text = call_api(url, "/import_settings", path=upload(url, name, content), lang="en")[1][-1]
    assert expected in text, text
    assert not [m for m in PYTHON_WORDS + PYTHON_TEXT if m in text], text


def test_a_bad_loftq_config_is_refused_in_kfts_words(app):
    url, _ = app
    for bad in (" x", "{bad", '{"loftq_bits": 4'):
        text = kft_text(call_api(url, "/start_training", **{**FAST, "loftq_config": bad}))
        assert "loftq_config is not valid JSON: " in text, text
        assert not [m for m in PYTHON_WORDS if m in text], text
    with pytest.raises(ValueError, match="a number has more than 4300 digits"):  # longer than the field takes
        form.parse_json('{"loftq_bits": ' + "9" * 5000 + "}")


# ---- the reply language (issue 23, item 10) ----------------------------------------------------------------
@pytest.mark.parametrize("lang", [None, "fr", 5])
def test_a_missing_or_invalid_lang_answers_in_the_servers_language(app, lang):
    url, _ = app
    text = kft_text(call_raw_lang(url, lang))
    assert text.startswith("⚠️ Refused: the value sent for ") and not re.search("[가-힣]", text), text


def call_raw_lang(url: str, lang):
    """/start_training with a bad dtype (refused by gradio's own check) and ``lang`` as sent, or left out."""
    from conftest import call_raw

    params = httpx.get(f"{url}gradio_api/info", timeout=30).json()["named_endpoints"]["/start_training"]["parameters"]
    values = {**FAST, "dtype": "bogus"}
    data = [values.get(p["parameter_name"], p.get("parameter_default")) for p in params]
    if lang is None:
        data = data[:-1]  # the language left out
    else:
        data[-1] = lang
    return call_raw(url, "/start_training", data)


def test_the_model_field_answers_alike_for_a_missing_path_and_one_that_is_not_a_model(app):
    url, _ = app
    missing = kft_text(call_api(url, "/start_training", **{**FAST, "model": "/nonexistent-kft-dir"}))
    not_model = kft_text(call_api(url, "/start_training", **{**FAST, "model": "/etc"}))
    assert missing.replace("/nonexistent-kft-dir", "X") == not_model.replace("/etc", "X")


def test_status_and_messages_show_names_relative_to_the_data_directory(app):
    url, ws = app
    bad = upload(url, "rows.csv", b"instruction,output\nhello,\n")
    notice = kft_text(call_api(url, "/start_training", **{**FAST, "data_kind": "upload", "upload": bad}))
    assert "uploads/" in notice and str(ws.data_dir) not in notice, notice
    assert call_api(url, "/start_training", **FAST)[0] == "complete"
    ws.training.job.join(120)
    event, outputs = call_api(url, "/training_status", lang="en")
    assert outputs[0]["run_dir"].startswith("runs/"), outputs[0]
    dumped = json.dumps(outputs, ensure_ascii=False)
    i = dumped.find(str(ws.data_dir))
    assert i < 0, dumped[max(0, i - 300):i + 200]


def test_the_runs_table_names_an_uploaded_file_relative_to_the_data_directory(tmp_path):
    from kft.runs.store import RunInfo
    from kft.ui.runs_tab import runs_frame

    info = RunInfo("r1", "completed", tmp_path / "runs" / "r1")
    info.data = str(tmp_path / "uploads" / "0123abcd-rows.csv")
    assert runs_frame([info], "en", tmp_path).iloc[0, 3] == "uploads/0123abcd-rows.csv"


def test_a_file_of_a_type_not_taken_is_named_even_when_another_value_is_wrong_too(app):
    url, _ = app
    text = kft_text(call_api(url, "/scorecard", prompt_set="upload", upload=upload(url, "set.yaml", b"a: 1\n"),
                             **{**{k: v for k, v in COMPARE.items() if k != "input_"}, "source": []}))
    assert "does not take this file type (accepted: .jsonl)" in text


# ---- file parameters, values gradio cannot send back, a full disk (issue 23, item 10) --------------------------
FILE_FIELDS = {"/start_training": "Data file", "/preview_data": "Data file", "/export_settings": "Data file",
               "/import_settings": "Import settings", "/scorecard": "Upload .jsonl", "/scorecard_runs": "Upload .jsonl"}


def foreign_files(data_dir) -> list:
    """File values that are not uploads: not a file object, a server path, a path outside the upload folder, one in
    the upload folder never uploaded, a run's own file."""
    import os

    def as_file(path: str) -> dict:
        return {"path": path, "orig_name": "x.csv", "meta": {"_type": "gradio.FileData"}}

    never = os.path.join(os.environ["GRADIO_TEMP_DIR"], "0" * 64, "never.csv")
    return ["notafile", 5, "/etc/passwd", as_file("/etc/passwd"), as_file(never), as_file("../../etc/passwd"),
            as_file(str(data_dir / "runs" / "r" / "run.json")), [as_file("/etc/passwd")], {"path": 5}]


def test_every_file_parameter_refuses_a_value_that_is_not_an_upload_and_names_its_field(app):
    url, ws = app
    info = httpx.get(f"{url}gradio_api/info", timeout=30).json()["named_endpoints"]
    found = {api for api, p in info.items() for q in p["parameters"] if q["python_type"]["type"] == "filepath"}
    assert found == set(FILE_FIELDS)  # a new file parameter: add its field here
    for api, field in FILE_FIELDS.items():
        param = next(q["parameter_name"] for q in info[api]["parameters"] if q["python_type"]["type"] == "filepath")
        kinds = {"data_kind": "upload", "prompt_set": "upload"}
        for value in foreign_files(ws.data_dir):
            names = {q["parameter_name"] for q in info[api]["parameters"]}
            sent = {**{k: v for k, v in kinds.items() if k in names}, param: value, "lang": "en"}
            text = kft_text(call_api(url, api, **sent))
            assert text.startswith(f"⚠️ Refused: {field}") and "takes a file uploaded to this server" in text, \
                (api, value, text)


def test_a_request_without_the_language_is_served_in_the_servers(app):
    url, _ = app
    from conftest import call_raw

    event, outputs = call_raw(url, "/training_status", [])  # lang left out: a normal reply, in English
    assert event == "complete", outputs
    assert not re.search("[가-힣]", json.dumps(outputs, ensure_ascii=False)), outputs
    event, outputs = call_raw(url, "/stop_training", [7])  # a number for the language: English too, no crash
    assert event == "complete" and outputs == ["No run in progress."], outputs


def fn_index(url: str, name: str, labels: tuple[str, ...] | None = None) -> int:
    """The number of the event named ``name`` (its api_name), or the first whose inputs have ``labels``."""
    deps = httpx.get(f"{url}config", timeout=30).json()
    comps = {c["id"]: c.get("props", {}).get("label") for c in deps["components"]}
    for i, dep in enumerate(deps["dependencies"]):
        if dep.get("api_name") == name or (labels and tuple(comps[c] for c in dep["inputs"]) == labels):
            return i
    raise AssertionError(f"no event {name}")


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", 10**400, -(2**64)])
def test_values_gradio_cannot_send_back_get_a_reply_and_no_server_error(app, value):
    """open_in_compare echoed a lone surrogate into its reply, and the sampling checkbox's event a huge integer:
    gradio's encoder refused both (HTTP 500 / "unexpected_error")."""
    from conftest import call_fn

    url, _ = app
    for index, data in ((fn_index(url, "open_in_compare"), [value, value, "en"]),
                        (fn_index(url, "", ("Sampling (off = greedy)",)), [value]),
                        (fn_index(url, "on_select"), [value, None, "en"]), (fn_index(url, "relabel"), ["en", value, ""])):
        event, payload = call_fn(url, index, data)
        assert event in ("complete", "error"), (index, event, payload)
        if event == "error":
            text = kft_text((event, payload))
            assert "unexpected problem" not in text, (index, text)


def test_a_text_field_sent_a_number_is_refused_naming_the_field(app):
    from conftest import call_fn

    url, _ = app
    text = kft_text(call_fn(url, fn_index(url, "on_select"), [5, None, "en"]))
    assert text.startswith("⚠️ Refused: the value sent for Run is not text"), text


def test_a_full_disk_on_export_or_upload_is_said_in_kfts_words(app, monkeypatch):
    import errno

    import gradio.processing_utils
    import gradio.routes

    url, _ = app

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:  # the export written, its copy for the page refused by the disk
        m.setattr(gradio.processing_utils, "save_file_to_cache", full)
        text = kft_text(call_api(url, "/export_settings", model="tiny", lang="en"))
        assert "the server's disk is full" in text and "unexpected" not in text, text
    with monkeypatch.context() as m:
        m.setattr("kft.ui.train_tab.save_config", full)
        event, outputs = call_api(url, "/export_settings", model="tiny", lang="en")
        assert "the disk is full" in kft_text((event, outputs[-1])), outputs
    with monkeypatch.context() as m:
        m.setattr(gradio.routes, "upload_fn", full)
        r = httpx.post(f"{url}gradio_api/upload", files={"files": ("a.csv", b"instruction,output\na,b\n")}, timeout=60)
        assert r.status_code == 507 and "the server's disk is full" in r.json()["detail"], (r.status_code, r.text)
    assert call_api(url, "/export_settings", model="tiny", lang="en")[0] == "complete"
