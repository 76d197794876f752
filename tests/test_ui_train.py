"""The training tab, driven through gradio_client against the real app on localhost with the tiny model.

The server runs in this process (kft.ui.server.launch(settings, block=False)), so a test can read the
Workspace and set the fault-injection variable the training thread reads.
"""

from __future__ import annotations

import gc
import json
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import httpx
import pytest
import torch
from gradio_client import Client, handle_file

from conftest import ROOT, copy_run, free_port, running_app, tiny_config, wait_until
from kft.config.app_settings import AppSettings
from kft.config.args import RunConfig
from kft.config.files import load_config
from kft.config.validation import SettingsError, check, validate
from kft.services import BusyError, Workspace
from kft.training.job import FAULT_ENV, JobSnapshot
from kft.ui import plots, train_tab
from kft.ui import train_form as form
from kft.ui.strings import TABLES
from kft.ui.train_tab import TrainTab, default_model

FAST = dict(model="tiny", data_kind="sample", max_seq_length=512, learning_rate=1e-2,
            use_gradient_checkpointing="false")
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(url, workspace) of the whole app, launched the way app.py launches it."""
    settings = AppSettings(port=free_port(), data_dir=str(tmp_path_factory.mktemp("kft-data")), lang="en")
    with running_app(settings) as (url, ws):
        yield url, ws


@pytest.fixture()
def client(app) -> Client:
    return Client(app[0], verbose=False)


def _status(client: Client) -> tuple:
    return client.predict(api_name="/training_status")


def _wait(client: Client, until, timeout: float = TIMEOUT_S) -> tuple:
    """The /training_status outputs once ``until(summary)`` holds."""

    def check():
        out = _status(client)
        return out if until(out[0]) else None

    return wait_until(check, timeout, what=f"a training status matching {getattr(until, '__name__', 'the test')}",
                      every=0.5)


def _finished(summary: dict) -> bool:
    return summary["finished"]


def _wait_idle(ws: Workspace) -> None:
    if ws.training.job is not None:
        assert ws.training.job.join(TIMEOUT_S)


def _tab(ws: Workspace, settings=None, lang: str = "en") -> TrainTab:
    """The training tab built alone, as build_app builds it (the language is the last input of its events)."""
    with gr.Blocks():
        lang_box = gr.Textbox(lang, visible=False)
        tab = TrainTab(ws, settings, lang_box)
        tab.build(lang)
    return tab


# ---- through the running app ---------------------------------------------------------------------
def test_start_returns_at_once_and_run_completes_with_live_data(app, client):
    url, ws = app
    _wait_idle(ws)
    t0 = time.time()
    notice = client.predict(max_steps=4, api_name="/start_training", **FAST)
    assert "Training started" in notice and time.time() - t0 < 20
    assert not ws.training.job.done  # Start returned while the run goes on in the background
    out = _wait(client, _finished)
    summary, status_md, progress, loss, lr, mem, log, report, shown_dir, zip_path, *_buttons = out
    assert shown_dir.startswith("runs/") and str(ws.data_dir) not in log  # names relative to the data directory
    run_dir = str(ws.data_dir / shown_dir)
    assert summary["status"] == "completed" and "**Status:** completed" in status_md
    assert summary["loss_points"] == 4 and [row[0] for row in loss["data"]] == [1, 2, 3, 4]
    series = {"allocated", "reserved"} if torch.cuda.is_available() else {"RSS (process)"}
    assert len(lr["data"]) == 4 and mem["data"] and {row[2] for row in mem["data"]} == series
    assert "4 / 4" in progress and "adapter saved" in log
    assert "Peak reserved memory" in report and Path(run_dir).parent == ws.runs_dir
    with zipfile.ZipFile(zip_path) as zf:
        assert "adapter/adapter_config.json" in zf.namelist() and "adapter/template.json" in zf.namelist()
    assert (Path(run_dir) / f"{Path(run_dir).name}-adapter.zip").is_file()  # the zip is written in the run dir
    for private in (Path(run_dir) / "adapter" / "adapter_config.json", Path(run_dir) / "run.json"):
        assert httpx.get(f"{url}gradio_api/file={private}").status_code in (403, 404)  # runs are never served
    wait_until(lambda: ws.slot.adapters.get("default") == run_dir, 30, what="the trained model in the slot")
    assert ws.slot.loaded is not None and ws.slot.adapters["default"] == run_dir  # comparison tab: no second load


def test_second_start_refused_fresh_client_sees_progress_and_stop_works(app, client):
    url, ws = app
    _wait_idle(ws)
    client.predict(max_steps=500, api_name="/start_training", **FAST)
    running = _wait(client, lambda s: s["status"] == "running" and s["step"] >= 1)
    refused = Client(url, verbose=False).predict(max_steps=2, api_name="/start_training", **FAST)
    assert "already in progress" in refused and running[0]["run"] in refused
    fresh = Client(url, verbose=False)  # a new browser tab / another reviewer
    seen = _status(fresh)[0]
    assert seen["run"] == running[0]["run"] and seen["step"] >= running[0]["step"] and seen["loss_points"] >= 1
    before = _status(fresh)[0]["step"]
    assert "Stop requested" in fresh.predict(api_name="/stop_training")
    final = _wait(client, _finished)[0]
    assert final["status"] == "stopped" and final["step"] <= before + 2 < 500
    assert (ws.data_dir / final["run_dir"] / "adapter" / "adapter_config.json").is_file()
    assert "No run in progress" in client.predict(api_name="/stop_training")


def test_stop_before_the_first_step_says_no_adapter_is_kept(app, client, monkeypatch):
    """Stop within 0.5 s of Start saved no adapter, yet the reply said the run "keeps its adapter"."""
    import threading

    from kft.models import loading

    url, ws = app
    _wait_idle(ws)
    gate, real_load = threading.Event(), loading.load_base

    def slow_load(*args, **kwargs):
        gate.wait(60)  # the model is still loading when Stop arrives
        return real_load(*args, **kwargs)

    monkeypatch.setattr(loading, "load_base", slow_load)
    client.predict(max_steps=3, api_name="/start_training", **FAST)
    reply = client.predict(api_name="/stop_training")
    gate.set()
    assert "keeps its adapter" not in reply and "no adapter is saved" in reply, reply
    final = _wait(client, _finished)[0]
    assert final["status"] == "stopped" and not (ws.data_dir / final["run_dir"] / "adapter").exists()


def test_start_during_a_generation_says_the_comparison_holds_the_model(app, client):
    """It said 'a run is already in progress' while no run was going: the model was generating."""
    url, ws = app
    _wait_idle(ws)
    with ws.slot.generation(timeout_s=30) as got:  # a comparison is generating
        assert got
        notice = client.predict(max_steps=2, api_name="/start_training", **FAST)
    assert "comparison tab is generating" in notice and "already in progress" not in notice


def test_injected_failure_reports_failed_and_next_run_succeeds(app, client, monkeypatch):
    url, ws = app
    _wait_idle(ws)
    monkeypatch.setenv(FAULT_ENV, "2")
    client.predict(max_steps=6, api_name="/start_training", **FAST)
    failed = _wait(client, _finished)
    assert failed[0]["status"] == "failed" and "injected fault" in failed[0]["error"]
    assert "**Status:** failed" in failed[1] and "injected fault" in failed[1] and failed[9] is None  # no zip of a failed run
    monkeypatch.delenv(FAULT_ENV)
    assert "Training started" in client.predict(max_steps=2, api_name="/start_training", **FAST)
    ok = _wait(client, _finished)[0]
    assert ok["status"] == "completed" and ok["run"] != failed[0]["run"]  # each run its own directory
    assert (ws.data_dir / failed[0]["run_dir"] / "run.json").is_file()


@pytest.mark.parametrize("changes, expected", [
    (dict(learning_rate=0, max_steps=0, per_device_train_batch_size=0, r=0),
     ["learning_rate must be greater than 0", "max_steps must be at least 1", "per_device_train_batch_size",
      "lora.r must be"]),
    (dict(learning_rate=-1e-4), ["learning_rate must be greater than 0"]),
    (dict(model="no-such-org/no-such-model-kft"), ["cannot be found offline"]),
    (dict(model="/nonexistent/model/dir"), ["Model directory not found"]),
    (dict(data_kind="upload"), ["No file uploaded"]),
    (dict(data_kind="hub", hub_dataset="no-such-org/no-such-data-kft"), ["cannot be found offline"]),
])
def test_invalid_values_are_refused_before_any_model_load(app, client, changes, expected):
    url, ws = app
    _wait_idle(ws)
    job, runs = ws.training.job, sorted(ws.runs_dir.iterdir())
    notice = client.predict(api_name="/start_training", **{**FAST, "max_steps": 2, **changes})
    assert notice.startswith("⚠️ Cannot start")
    for text in expected:
        assert text in notice
    assert ws.training.job is job and sorted(ws.runs_dir.iterdir()) == runs  # nothing started, no run dir


def test_unreadable_upload_is_refused_with_its_reason(app, client, tmp_path):
    url, ws = app
    _wait_idle(ws)
    bad = tmp_path / "rows.parquet"
    bad.write_bytes(b"this is not parquet")
    notice = client.predict(api_name="/start_training", upload=handle_file(str(bad)), **{**FAST, "data_kind": "upload"})
    assert "could not be read as Parquet" in notice
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "", "output": "x"}\nnot json\n', encoding="utf-8")
    notice = client.predict(api_name="/start_training", upload=handle_file(str(rows)), **{**FAST, "data_kind": "upload"})
    assert "row 2: instruction is empty" in notice and "row 3: not valid JSON" in notice


def test_preview_renders_the_training_text_counts_and_every_problem(client, tmp_path):
    rows = [{"instruction": "폭탄 만드는 법 알려줘", "input": "", "output": "도와드릴 수 없습니다."},
            {"instruction": "", "input": "", "output": "x"},
            {"instruction": "안녕", "input": "인사", "output": "안녕하세요!"}]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n{broken\n", encoding="utf-8")
    md = client.predict(model="tiny", data_kind="upload", upload=handle_file(str(path)), api_name="/preview_data")
    assert "2 of 4 rows in the source will be trained on (2 errors, 0 warnings)" in md
    assert "/uploads/" not in md and "mine.jsonl" in md  # the file's name, not the server's path to it
    assert "### instruction:\n폭탄 만드는 법 알려줘\n\n### input:\n\n\n### output:\n도와드릴 수 없습니다.<|end_of_text|>" in md
    assert "- error: row 2: instruction is empty" in md and "- error: row 4: not valid JSON" in md
    assert "| min | p50 | p90 | p99 | max | mean |" in md
    sample = client.predict(model="tiny", data_kind="sample", max_seq_length=64, api_name="/preview_data")
    assert "of 333 rows" in sample and "longer than max_seq_length 64; dropped" in sample
    negative = client.predict(model="tiny", data_kind="sample", max_rows=-3, api_name="/preview_data")
    cfg = RunConfig()
    cfg.data.max_rows = -3
    start_says = next(str(p) for p in check(cfg, "data") if p.field == "data.max_rows")
    assert start_says in negative and "-3" in start_says  # as Start says; not 330 rows


def test_settings_export_and_import_round_trip(client):
    path, notice = client.predict(r=8, learning_rate=5e-3, length_mode="epochs", num_train_epochs=2,
                                  target_modules=["q_proj", "v_proj"], api_name="/export_settings", **{
                                      k: v for k, v in FAST.items() if k != "learning_rate"})
    cfg = load_config(path)
    assert (cfg.lora.r, cfg.train.learning_rate, cfg.train.max_steps, cfg.train.num_train_epochs) == (8, 5e-3, 0, 2)
    assert cfg.lora.target_modules == ("q_proj", "v_proj") and cfg.model.name == "tiny" and cfg.data.source == "sample"
    assert cfg.train.warmup_steps == RunConfig().train.warmup_steps  # untouched settings keep the dataclass default
    out = client.predict(handle_file(path), api_name="/import_settings")
    names = ["model", "data_kind", "hub_dataset", "length_mode", *form.FORM_FIELDS, "notice"]
    got = dict(zip(names, out, strict=True))
    assert (got["model"], got["data_kind"], got["length_mode"], got["r"], got["learning_rate"]) == (
        "tiny", "sample", "epochs", 8, 5e-3)
    assert got["target_modules"] == ["q_proj", "v_proj"] and "imported" in got["notice"]


def test_an_exported_settings_file_names_no_server_path(app, client, tmp_path):
    """The exported settings held source: /.../uploads/<hash>-file.jsonl (a server path)."""
    url, ws = app
    data = tmp_path / "mine.jsonl"
    data.write_text((ROOT / "kft" / "assets" / "data" / "korean_safe_sample.jsonl").read_text(encoding="utf-8"),
                    encoding="utf-8")
    path, _ = client.predict(api_name="/export_settings", **{**FAST, "data_kind": "upload"}, upload=handle_file(data))
    text = Path(path).read_text(encoding="utf-8")
    assert str(ws.data_dir) not in text and "/uploads/" not in text
    cfg = load_config(path)
    assert cfg.data.source.endswith("-mine.jsonl") and "/" not in cfg.data.source
    notice = client.predict(handle_file(path), api_name="/import_settings")[-1]
    assert "mine.jsonl" in notice  # importing asks for the file again, by its name


def test_push_to_hub_errors_cleanly_without_token_or_network(app, client, monkeypatch):
    url, ws = app
    _wait_idle(ws)
    if ws.training.job is None or ws.training.snapshot().status != "completed":  # a finished run of its own
        assert "Training started" in client.predict(max_steps=2, api_name="/start_training", **FAST)
        assert _wait(client, _finished)[0]["status"] == "completed"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    notice = client.predict("me/kft-lora", True, api_name="/push_to_hub")
    assert "Push failed" in notice and "HF_TOKEN" in notice
    secret = "hf_kftSECRETtoken123456"
    monkeypatch.setenv("HF_TOKEN", secret)
    notice = client.predict("me/kft-lora", True, api_name="/push_to_hub")
    assert "Push failed" in notice and secret not in notice
    assert "not a Hub repository id" in client.predict("../etc", True, api_name="/push_to_hub")


# ---- the pieces, without a server ------------------------------------------------------------------
def test_plots_from_a_snapshot():
    snap = JobSnapshot(status="running", run_dir="/x/runs/r1", step=2, total_steps=4,
                       losses=[(1, 8.3), (2, 8.1)], learning_rates=[(1, 0.0), (2, 1e-4)],
                       memory=[(0.5, 1.0, 2.0), (1.5, 1.5, 2.5)], memory_label="GPU memory (GB)",
                       tokens_per_s=1234.0, elapsed_s=10.0, eta_s=10.0)
    assert plots.loss_frame(snap, "en").values.tolist() == [[1, 8.3, "training"], [2, 8.1, "training"]]
    mem = plots.memory_frame(snap, "en")
    assert mem["series"].tolist() == ["allocated", "reserved", "allocated", "reserved"]
    assert "2 / 4 (50%)" in plots.progress_html(snap) and plots.fmt_duration(3725) == "1:02:05"
    md = plots.status_markdown(snap, "ko")
    assert "학습 중 (`running`)" in md and "1,234" in md and "0:10" in md
    assert plots.summary(None)["status"] == "idle" and plots.loss_frame(None, "en").empty


def test_form_defaults_come_from_the_dataclasses_and_round_trip():
    values = form.config_to_values(RunConfig())
    cfg = form.values_to_config(values, "tiny")
    expected = RunConfig()
    expected.model.name = "tiny"
    assert cfg.to_dict() == expected.to_dict()
    with pytest.raises(SettingsError) as err:
        form.values_to_config({**values, "r": 1.5, "warmup_steps": None, "loftq_config": "[1]"}, "tiny")
    for text in ("lora.r must be a whole number", "train.warmup_steps is empty", "lora.loftq_config must be a JSON"):
        assert text in str(err.value)
    assert form.values_to_config({**values, "max_steps": 0}, "tiny", "epochs").train.max_steps == 0
    # through the API a checkbox may come as text: bool("false") was True
    off = form.values_to_config({**values, "use_rslora": "false", "padding_free": "0", "load_in_4bit": "False"}, "tiny")
    assert (off.lora.use_rslora, off.train.padding_free, off.model.load_in_4bit) == (False, False, False)
    with pytest.raises(ValueError, match="must be true or false"):
        form.values_to_config({**values, "use_rslora": "maybe"}, "tiny")
    # typed into the dropdowns: the form parses them, the settings' check refuses them before the model loads
    typo = form.values_to_config({**values, "optim": "adamw_torch_typo", "lr_scheduler_type": "linearr"}, "tiny")
    with pytest.raises(SettingsError) as err:
        validate(typo, "train")
    assert "train.optim 'adamw_torch_typo' is not" in str(err.value)
    assert "train.lr_scheduler_type 'linearr' is not" in str(err.value)
    # same 8 rows per step in one micro-batch; the widgets of presets.PRESET_FIELDS, as the form shows them
    assert form.preset_values("fast", 2, 4) == (8, 1, False, 64, "adamw_torch_fused", "true")
    assert form.preset_values("seed", 8, 1) == (2, 4, False, 0, "adamw_8bit", "unsloth")


def test_every_setting_has_korean_and_english_text_and_relabel_covers_the_tab(tmp_path):
    for table in TABLES.values():
        assert all(f"field_label.{n}" in table and f"field_info.{n}" in table for n in form.FORM_FIELDS)
    tab = _tab(Workspace(tmp_path), lang="ko")
    en = tab.relabel("en")
    assert set(en) == set(tab.translated) and len(tab.translated) > 40
    labels = [u.get("label") or u.get("value") for u in en.values() if isinstance(u, dict)]
    assert "Start training" in labels and "Learning rate (learning_rate)" in labels
    assert "학습 시작" in [u.get("value") for u in tab.relabel("ko").values() if isinstance(u, dict)]
    assert default_model(None, cuda=False) == "tiny"
    assert default_model(AppSettings(default_model="my/model"), cuda=True) == "my/model"


def test_a_reloaded_page_shows_the_running_runs_settings(tmp_path):
    """On page load during a run the form shows that run's settings, not the defaults."""
    ws = Workspace(tmp_path)
    tab = _tab(ws)
    assert all(v == gr.skip() for v in tab.on_page_load("en").values())  # no run: the form is left as it is
    cfg = RunConfig()
    cfg.model.name, cfg.data.source, cfg.train.max_steps, cfg.train.learning_rate = "tiny", "sample", 1000, 5e-3
    ws.training.job = SimpleNamespace(done=False, config=cfg, run_dir=tmp_path / "runs" / "r1")
    out = tab.on_page_load("en")
    assert out[tab.model] == "tiny" and out[tab.data_kind] == "sample"
    assert out[tab.widgets["max_steps"]] == 1000 and out[tab.widgets["learning_rate"]] == 5e-3
    assert "r1" in out[tab.notice_box]


def test_status_says_which_backend_and_why():
    snap = JobSnapshot(status="running", run_dir="r", step=1, total_steps=2, backend="transformers",
                       backend_reason="no CUDA GPU found, so Unsloth cannot run")
    text = plots.status_markdown(snap, "en")
    assert "**Backend:** transformers (no CUDA GPU found, so Unsloth cannot run)" in text


def test_the_zip_is_ready_as_soon_as_the_status_says_completed(tmp_path, monkeypatch):
    """The status turns final before the run's thread has freed its memory. The poll that first shows
    'completed' must also get the zip: later polls send nothing, since nothing else changes (a CI run
    caught the download missing in that window)."""
    ws = Workspace(tmp_path)
    tab = _tab(ws, AppSettings())
    seen: list = []
    real_collect = gc.collect

    def collect(*args):
        job = ws.training.job
        if job is not None and job.snapshot().finished and not job.done and not seen:
            seen.append(tab._zip_for(job.snapshot()))  # the poll landing in the clean-up window
        return real_collect(*args)

    monkeypatch.setattr(gc, "collect", collect)
    job = ws.training.start(tiny_config(2))
    assert job.join(TIMEOUT_S) and job.snapshot().status == "completed"
    assert seen and seen[0] is not None, "no zip while the finished run was freeing memory"
    with zipfile.ZipFile(seen[0]) as zf:
        assert "adapter_config.json" in {Path(n).name for n in zf.namelist()}


def test_start_while_the_ended_run_frees_memory_says_so(tmp_path, monkeypatch):
    """The status already says 'completed' while the run's thread frees memory; a Start then was
    refused as 'a run is already in progress', which the page contradicted."""
    ws = Workspace(tmp_path)
    refused: list[BusyError] = []
    real_collect = gc.collect

    def collect(*args):
        job = ws.training.job
        if job is not None and job.snapshot().finished and not job.done and not refused:
            try:
                ws.training.start(tiny_config(2))
            except BusyError as exc:
                refused.append(exc)
        return real_collect(*args)

    monkeypatch.setattr(gc, "collect", collect)
    job = ws.training.start(tiny_config(2))
    assert job.join(TIMEOUT_S)
    assert refused and refused[0].by == "finishing" and "still freeing its memory" in str(refused[0])
    monkeypatch.undo()

    def busy(config):
        raise refused[0]

    monkeypatch.setattr(ws.training, "start", busy)  # what the tab shows for that refusal
    tab = _tab(ws, AppSettings())
    values = form.config_to_values(RunConfig())
    notice = tab.on_start(lang="en", model="tiny", data_kind="sample", hub_dataset="", length_mode="steps", **values)
    assert "still freeing its memory" in notice and "already in progress" not in notice


def test_start_and_stop_are_enabled_only_when_they_can_act(tmp_path):
    """Start stayed enabled during a run and Stop was red while idle; each poll now follows the run's state."""
    ws = Workspace(tmp_path)
    tab = _tab(ws)
    assert tab.stop_btn.interactive is False and tab.stop_btn.variant == "secondary"  # as first drawn
    idle = tab.on_status("en")
    assert idle[tab.start_btn]["interactive"] is True
    assert idle[tab.stop_btn]["interactive"] is False and idle[tab.stop_btn]["variant"] == "secondary"
    for status, going in (("loading", True), ("running", True), ("stopping", True), ("completed", False),
                          ("failed", False)):
        ws.training.job = SimpleNamespace(done=not going, run_dir=tmp_path / "r",
                                          snapshot=lambda s=status: JobSnapshot(s, "runs/r"))
        out = tab.on_status("en")
        assert out[tab.start_btn]["interactive"] is (not going), status
        assert out[tab.stop_btn]["interactive"] is going, status
        assert out[tab.stop_btn]["variant"] == ("stop" if going else "secondary"), status


def test_the_model_list_offers_a_small_real_model_and_says_which_is_which(tmp_path):
    from kft.config.args import SMALL_MODEL
    from kft.training.preflight import check_model_available

    tab = _tab(Workspace(tmp_path))
    labels = dict((name, label) for label, name in tab._choices("en"))
    assert set(labels) == {"unsloth/Meta-Llama-3.1-8B-bnb-4bit", SMALL_MODEL, "tiny"}
    assert "about 1 GB" in labels[SMALL_MODEL] and "knows Korean" in labels[SMALL_MODEL]
    assert "random weights" in labels["tiny"] and "5.7 GB" in labels["unsloth/Meta-Llama-3.1-8B-bnb-4bit"]
    assert tab.model_default == "tiny" or torch.cuda.is_available()  # tiny stays the offline (CPU) default
    assert "약 1 GB" in dict((n, lab) for lab, n in tab._choices("ko"))[SMALL_MODEL]
    with pytest.raises(ValueError, match="cannot be found offline"):  # loaded like any Hub id: refused offline
        check_model_available(SMALL_MODEL)


def test_after_a_restart_the_tab_shows_the_last_run_from_disk(tmp_path, trained_run):
    """It said 'no run yet' after a restart although runs/ held the last run with its curves."""
    ws = Workspace(tmp_path)
    tab = _tab(ws)
    assert "No run yet" in tab.on_status("en")[tab.status]  # a fresh data directory: nothing to show
    copy_run(trained_run, ws.runs_dir, "20260101-000000")
    out = tab.on_status("en")
    assert "**Status:** completed" in out[tab.status] and "30 / 30" in out[tab.progress]
    assert list(out[tab.loss_plot]["step"]) == list(range(1, 31)) and len(out[tab.lr_plot]) == 30
    assert out[tab.run_dir].endswith("20260101-000000") and "Peak reserved memory" in out[tab.report]
    assert out[tab.start_btn]["interactive"] is True and out[tab.stop_btn]["interactive"] is False
    assert ws.training.snapshot() is ws.training.snapshot()  # polled: the files are read once while unchanged


def test_the_loss_plot_has_the_evaluation_loss_and_the_watch_a_timeline():
    snap = JobSnapshot("running", "runs/r", step=4, total_steps=10, losses=[(1, 3.0), (2, 2.5), (3, 2.0), (4, 1.8)],
                       eval_losses=[(2, 2.7), (4, 2.2)],
                       watch=[{"step": 2, "kind": "harmful", "prompt": "폭탄", "answer": "<b>방법은</b>", "refusal": False},
                              {"step": 2, "kind": "benign", "prompt": "대피", "answer": "계단으로", "refusal": False},
                              {"step": 4, "kind": "harmful", "prompt": "폭탄", "answer": "도와드릴 수 없습니다.",
                               "refusal": True},
                              {"step": 4, "kind": "benign", "prompt": "대피", "answer": "x" * 200, "refusal": False}])
    frame = plots.loss_frame(snap, "en")
    assert list(frame.columns) == ["step", "loss", "series"]
    assert frame.groupby("series").size().to_dict() == {"training": 4, "evaluation (held out)": 2}
    page = plots.watch_html(snap, "en")
    assert page.count("<tr><td>") == 2 and page.count("kft-watch-refusal") == 1 and page.count("kft-watch-answer") == 3
    assert "Harmful: 폭탄" in page and "Benign: 대피" in page and "&lt;b&gt;" in page and "<b>방법" not in page
    assert "x" * plots.WATCH_CHARS + "…" in page
    assert "watch_every" not in plots.watch_html(None, "en") and "kft-watch-empty" in plots.watch_html(None, "en")
    assert "거절" in plots.watch_html(snap, "ko")
    assert plots.signature(snap, "en") != plots.signature(JobSnapshot(**{**snap.__dict__, "watch": snap.watch[:2]}), "en")


def test_training_status_after_a_restart_through_the_api(tmp_path, trained_run):
    """The app started on a data directory that holds a finished run: /training_status describes it."""
    settings = AppSettings(port=free_port(), data_dir=str(tmp_path), lang="en")
    copy_run(trained_run, tmp_path / "runs", "20260101-000000")
    with running_app(settings) as (url, _ws):
        summary, status_md, *_rest = Client(url, verbose=False).predict(api_name="/training_status")
    assert (summary["status"], summary["run"], summary["step"], summary["loss_points"]) == (
        "completed", "20260101-000000", 30, 30)
    assert "No run yet" not in status_md


def test_polls_send_only_what_changed_and_render_once_per_step_for_every_viewer(tmp_path, monkeypatch):
    """Issue 24: each open tab slowed training (every poll rendered everything for every viewer). A poll that finds
    nothing new sends nothing; a new step is rendered once, whatever the number of pages, and a page gets only the
    boxes that changed (not the unchanged log, report or zip)."""
    ws = Workspace(tmp_path)
    tab = _tab(ws)
    renders = []
    real = plots.loss_frame
    monkeypatch.setattr(plots, "loss_frame", lambda *a, **k: renders.append(1) or real(*a, **k))
    snap = {"now": JobSnapshot("running", "runs/r", step=1, total_steps=10, losses=[(1, 2.0)], log_tail=["a"])}
    ws.training.job = SimpleNamespace(done=False, run_dir=tmp_path / "r", snapshot=lambda: snap["now"])
    monkeypatch.setattr(type(ws.training), "active", property(lambda self: True))
    clock = {"t": 1000.0}
    monkeypatch.setattr(train_tab, "time", SimpleNamespace(monotonic=lambda: clock["t"]))
    pages = [tab.on_tick("", "en") for _ in range(3)]  # three viewers' first polls
    assert len(renders) == 1, "one render for three viewers"
    shown = [p[tab.shown] for p in pages]
    for s in shown:
        again = tab.on_tick(s, "en")
        assert all(isinstance(v, dict) and v == gr.skip() for v in again.values()), "nothing new: nothing sent"
    snap["now"] = JobSnapshot("running", "runs/r", step=2, total_steps=10, losses=[(1, 2.0), (2, 1.5)], log_tail=["a"])
    clock["t"] += train_tab.POLL_S  # the pages' next ticks
    news = [tab.on_tick(s, "en") for s in shown]
    assert len(renders) == 2, "the new step rendered once, not once per viewer"
    for new in news:
        skipped = {box for box, value in new.items() if isinstance(value, dict) and value == gr.skip()}
        assert tab.loss_plot not in skipped and tab.progress not in skipped
        assert {tab.log, tab.report, tab.zip, tab.start_btn, tab.stop_btn} <= skipped, "unchanged boxes are not sent"
    assert tab.on_status("en")[tab.loss_plot] is not None and len(renders) == 2, "the API's status shares the render"


def test_pages_ticking_at_their_own_times_render_once_an_interval_however_many_are_open(tmp_path, monkeypatch):
    """Steps come faster than a page polls: with a fresh snapshot each tick, every page's tick found a new step and
    rendered it (one render per viewer; 3 tabs measured 0.74-0.89 of one tab's training speed). The pages' ticks now
    share one snapshot an interval, so 3 pages render as often as 1; a run that ends is seen at the next tick."""
    ws = Workspace(tmp_path)
    tab = _tab(ws)
    renders = []
    real = plots.loss_frame
    monkeypatch.setattr(plots, "loss_frame", lambda *a, **k: renders.append(1) or real(*a, **k))
    clock = {"t": 1000.0}
    monkeypatch.setattr(train_tab, "time", SimpleNamespace(monotonic=lambda: clock["t"]))
    job = SimpleNamespace(done=False, run_dir=tmp_path / "r")
    job.snapshot = lambda: JobSnapshot("running", "runs/r", step=int((clock["t"] - 1000) / 0.3) + 1, total_steps=99,
                                       losses=[(1, 2.0)], log_tail=["a"])
    ws.training.job = job

    def renders_over(pages: int, seconds: float = 6.0) -> int:
        renders.clear()
        start, shown = clock["t"], [""] * pages
        ticks = sorted((start + i * train_tab.POLL_S / pages + k * train_tab.POLL_S, i)
                       for i in range(pages) for k in range(int(seconds / train_tab.POLL_S)))
        for when, i in ticks:  # each page on its own 1.5 s timer, staggered
            clock["t"] = when
            shown[i] = tab.on_tick(shown[i], "en")[tab.shown]
        return len(renders)

    one, three = renders_over(1), renders_over(3)
    assert one == 4 and three <= one + 1, (one, three)  # not 3 x: one render a poll interval for all pages
    job.done = True
    finished = JobSnapshot("completed", "runs/r", step=99, total_steps=99, losses=[(1, 2.0)], log_tail=["a"])
    job.snapshot = lambda: finished
    assert tab.on_tick("", "en")[tab.shown] == tab._parts(finished, "en"), "a run that ended is seen at once"


def test_small_ones_an_empty_watch_answer_and_a_one_point_loss_chart():
    """Issue 24: an empty answer showed as 'answered' in the refusal timeline; a one-point loss chart printed
    '8.3259382248'."""
    snap = JobSnapshot("running", "runs/r", step=1, losses=[(1, 8.3259382248)],
                       watch=[{"step": 1, "kind": "harmful", "prompt": "p", "answer": "  ", "refusal": False}])
    assert plots.loss_frame(snap, "en")["loss"].tolist() == [8.3259]
    page = plots.watch_html(snap, "ko")
    assert "빈 답변" in page and "답변함" not in page


def test_the_4bit_box_is_not_ticked_on_a_cpu(tmp_path, monkeypatch):
    import kft.ui.train_tab as train_tab

    monkeypatch.setattr(train_tab, "has_cuda", lambda: False)
    box = _tab(Workspace(tmp_path)).widgets["load_in_4bit"]
    assert box.value is False and box.interactive is False
