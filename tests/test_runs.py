"""kft.runs.store: a run directory's files (RunDir), interrupted runs, complete checkpoints, run names, the
resume plan and the runs list, on fabricated run directories (no model, no app)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kft.config.args import RunConfig
from kft.runs import store as runs
from kft.runs.store import (
    TIME_FORMAT,
    RunDir,
    claim,
    effective_status,
    find,
    list_runs,
    mark_interrupted,
    resume_plan,
    run_dirs,
    run_info,
    settings_summary,
    with_adapter,
)


# ---- fabricated runs ------------------------------------------------------------------------------------
def _checkpoint(run: Path, step: int, state_step: int | None = None) -> Path:
    from safetensors.torch import save_file

    ckpt = run / "checkpoints" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    save_file({"w": torch.zeros(4)}, str(ckpt / "adapter_model.safetensors"))
    (ckpt / "adapter_config.json").write_text("{}", encoding="utf-8")
    for name in ("optimizer.pt", "scheduler.pt"):
        torch.save({"state": {}, "param_groups": []}, ckpt / name)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": state_step or step}), encoding="utf-8")
    return ckpt


def _run(runs_dir: Path, name: str, status: str = "running", pid: int | None = None,
         started: float | None = None) -> Path:
    run = runs_dir / name
    run.mkdir(parents=True)
    raw = {"status": status, "pid": pid if pid is not None else os.getpid(), "config": RunConfig().to_dict(),
           "started_at": time.strftime(TIME_FORMAT, time.localtime(started or time.time())), "steps_done": 5,
           "total_steps": 60}
    (run / "run.json").write_text(json.dumps(raw), encoding="utf-8")
    return run


def _adapter(run: Path) -> Path:
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}", encoding="utf-8")
    return run


# ---- RunDir: the one place that names a run's files ---------------------------------------------------------
def test_a_run_dir_names_its_files(tmp_path):
    run = RunDir(tmp_path / "20260101-000000")
    assert (run.path, run.name) == (tmp_path / "20260101-000000", "20260101-000000")
    assert run.adapter == run.path / "adapter" and run.run_json == run.path / "run.json"
    assert run.metrics_file == run.path / "metrics.jsonl" and run.checkpoints_dir == run.path / "checkpoints"
    assert run.zip_file == run.path / "20260101-000000-adapter.zip"
    assert RunDir(str(run.path)) == run and RunDir(tmp_path / "other") != run
    assert RunDir(tmp_path / "x" / ".." / "20260101-000000") == run  # the same directory, however it is spelled
    assert not run.has_adapter
    (run.adapter).mkdir(parents=True)
    assert not run.has_adapter  # an adapter/ folder without adapter_config.json is no saved adapter
    (run.adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    assert run.has_adapter


def test_run_json_is_rewritten_whole_and_a_broken_one_reads_as_none(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_json() is None  # killed before it was written
    run.write_json({"status": "running", "note": "한글", "when": Path("x")})
    assert run.read_json() == {"status": "running", "note": "한글", "when": "x"}
    assert "한글" in run.run_json.read_text(encoding="utf-8") and not (tmp_path / "run.json.tmp").exists()
    run.run_json.write_text('{"status": "runn', encoding="utf-8")
    assert run.read_json() is None
    run.run_json.write_text("[1, 2]", encoding="utf-8")
    assert run.read_json() is None  # not a mapping


def test_metrics_are_appended_read_back_and_cut_at_a_step(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_metrics() == []
    for step in range(1, 6):
        run.append_metrics({"step": step, "loss": 5.0 - step})
    with open(run.metrics_file, "a", encoding="utf-8") as f:
        f.write('{"no_step": 1}\n["x"]\n{"step": 6, "lo')  # rows without a step, and a line cut by a kill
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3, 4, 5]
    kept = run.truncate_metrics(3)
    assert [r["step"] for r in kept] == [1, 2, 3] == [r["step"] for r in run.read_metrics()]
    assert kept[-1]["loss"] == 2.0 and not (tmp_path / "metrics.jsonl.tmp").exists()


# ---- statuses, checkpoints, names ----------------------------------------------------------------------------
def test_a_live_status_that_no_process_runs_is_interrupted(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        hour_ago, soon = time.time() - 3600, time.time() + 60
        assert effective_status({"status": "running", "pid": os.getpid()}, live=False) == "interrupted"  # this process
        assert effective_status({"status": "loading", "pid": dead.pid}, live=False) == "interrupted"  # dead pid
        reused = {"status": "running", "pid": sleeper.pid,
                  "started_at": time.strftime(TIME_FORMAT, time.localtime(hour_ago))}
        assert effective_status(reused, live=False) == "interrupted"  # the pid belongs to a newer process
        other = {"status": "running", "pid": sleeper.pid, "started_at": time.strftime(TIME_FORMAT, time.localtime(soon))}
        assert effective_status(other, live=False) == "running"  # another live process (e.g. the CLI) runs it
        assert effective_status({"status": "running", "pid": os.getpid()}, live=True) == "running"
        assert effective_status({"status": "completed", "pid": dead.pid}, live=False) == "completed"
        assert effective_status(None, live=False) == "interrupted"  # killed before run.json was written
        assert effective_status(None, live=True) == "pending"  # the live run's first moment, before run.json
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_last_complete_checkpoint_skips_incomplete_ones(tmp_path):
    run = _run(tmp_path / "runs", "r1")
    _checkpoint(run, 2)
    (_checkpoint(run, 4) / "trainer_state.json").unlink()  # killed before the Trainer's last write
    (_checkpoint(run, 6) / "adapter_model.safetensors").unlink()  # no adapter weights
    cut = _checkpoint(run, 8) / "adapter_model.safetensors"
    cut.write_bytes(cut.read_bytes()[:20])  # weights cut short
    _checkpoint(run, 10, state_step=9)  # a state that does not belong to this folder
    (_checkpoint(run, 12) / "optimizer.pt").write_bytes(b"")
    outside = _checkpoint(tmp_path / "elsewhere", 3)
    (run / "checkpoints" / "checkpoint-14").symlink_to(outside, target_is_directory=True)
    (run / "checkpoints" / "not-a-checkpoint").mkdir()
    rd = RunDir(run)
    assert [c.name for c in rd.checkpoints()] == [f"checkpoint-{s}" for s in (2, 4, 6, 8, 10, 12, 14)]  # by step
    assert rd.last_complete_checkpoint() == run / "checkpoints" / "checkpoint-2"
    problems = {c.name: rd.checkpoint_problems(c) for c in rd.checkpoints()}
    assert problems["checkpoint-2"] == [] and "trainer_state.json missing or empty" in problems["checkpoint-4"]
    assert "adapter_model.safetensors missing or empty" in problems["checkpoint-6"]
    assert "cut short" in problems["checkpoint-8"][0] and "says step 9" in problems["checkpoint-10"][0]
    assert "optimizer.pt missing or empty" in problems["checkpoint-12"]
    assert "outside" in problems["checkpoint-14"][0]
    assert RunDir(tmp_path / "no-run").checkpoints() == [] and RunDir(tmp_path / "no-run").last_complete_checkpoint() is None


def test_run_names_cannot_leave_the_runs_folder(tmp_path):
    runs_dir = tmp_path / "runs"
    _run(runs_dir, "20250101-000000")
    (tmp_path / "uploads" / "checkpoints").mkdir(parents=True)
    (runs_dir / "linked").symlink_to(tmp_path / "uploads", target_is_directory=True)
    found = find(runs_dir, "20250101-000000")
    assert isinstance(found, RunDir) and found.path == runs_dir / "20250101-000000"
    assert find(runs_dir, " 20250101-000000 ") == found  # spaces around a pasted name
    for bad in ("../uploads", "/etc", "a/b", "", ".hidden", "..", "linked", "nope", "x" * 300):
        with pytest.raises(ValueError):
            find(runs_dir, bad)
    with pytest.raises(ValueError, match="not a run name"):
        find(runs_dir, "../uploads")
    with pytest.raises(ValueError, match="was not found"):
        find(runs_dir, "nope")


def test_run_directories_claimed_in_the_same_second_never_collide(tmp_path):
    """Headless runs started together without --output-dir got the same runs/<second> directory:
    the later ones were refused as 'already holds files' (or two runs shared one directory)."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        dirs = list(pool.map(lambda _: claim(tmp_path / "runs"), range(8)))
    assert all(isinstance(d, RunDir) for d in dirs)
    paths = {d.path for d in dirs}
    assert len(paths) == 8 and all(p.is_dir() and not any(p.iterdir()) for p in paths)
    assert {p.parent for p in paths} == {tmp_path / "runs"}


# ---- the runs list, interrupted runs and the resume plan ------------------------------------------------------
def test_mark_interrupted_then_the_resume_plan_and_metrics(tmp_path):
    runs_dir = tmp_path / "runs"
    run = _run(runs_dir, "r1", pid=os.getpid())
    _checkpoint(run, 3)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 5.0 - s}) + "\n" for s in range(1, 6))
                                       + '{"step": 6, "lo', encoding="utf-8")  # the last line cut by the kill
    done = _run(runs_dir, "r2", status="completed")
    empty = _run(runs_dir, "r3", status="loading", pid=os.getpid())
    assert sorted(mark_interrupted(runs_dir)) == ["r1", "r3"]
    raw = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert raw["status"] == "interrupted" and raw["last_checkpoint"] == "checkpoint-3" and "resume it" in raw["error"]
    assert "no complete checkpoint" in json.loads((empty / "run.json").read_text(encoding="utf-8"))["error"]
    assert mark_interrupted(runs_dir) == []  # once
    plan = resume_plan(RunDir(run))
    assert (plan.step, plan.checkpoint.name, plan.resumes) == (3, "checkpoint-3", 1)
    assert plan.run == RunDir(run) and plan.config == RunConfig().to_dict()
    assert [r["step"] for r in plan.run.truncate_metrics(plan.step)] == [1, 2, 3]
    with pytest.raises(ValueError, match="not interrupted"):
        resume_plan(RunDir(done))
    with pytest.raises(ValueError, match="no complete checkpoint"):
        resume_plan(RunDir(empty))
    infos = {i.name: i for i in list_runs(runs_dir)}
    assert infos["r1"].resumable and not infos["r3"].resumable and infos["r1"].final_loss == 2.0
    assert "r 16" in infos["r2"].settings and "lr 0.0002" in infos["r2"].settings


def test_the_live_run_is_never_marked_interrupted(tmp_path):
    runs_dir = tmp_path / "runs"
    live = RunDir(_run(runs_dir, "live", pid=os.getpid()))  # this process trains it
    assert run_info(live, live).status == "running" and run_info(live).status == "interrupted"
    assert mark_interrupted(runs_dir, live_run=live) == []
    assert live.read_json()["status"] == "running"
    fresh = RunDir(runs_dir / "fresh")
    fresh.path.mkdir()  # claimed, run.json not written yet
    assert run_info(fresh, fresh).status == "pending" and run_info(fresh).status == "interrupted"


def test_a_resume_plan_carries_the_history_over(tmp_path):
    """A run resumed twice: the count goes on, the first start time stays, and the checkpoint is named."""
    run = _run(tmp_path / "runs", "r1", status="interrupted")
    raw = json.loads((run / "run.json").read_text(encoding="utf-8"))
    raw.update(resumes=1, first_started_at="2026-01-01T00:00:00")
    (run / "run.json").write_text(json.dumps(raw), encoding="utf-8")
    _checkpoint(run, 4)
    _checkpoint(run, 8)
    plan = resume_plan(RunDir(run))
    assert (plan.step, plan.resumes, plan.first_started_at) == (8, 2, "2026-01-01T00:00:00")
    assert plan.meta() == {"resumed_from": "checkpoint-8", "resumes": 2, "first_started_at": "2026-01-01T00:00:00"}
    raw.pop("first_started_at")
    raw["config"] = "broken"
    (run / "run.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ValueError, match="no readable run.json config"):
        resume_plan(RunDir(run))


def test_the_runs_list_is_newest_first_and_names_the_runs_with_an_adapter(tmp_path):
    runs_dir = tmp_path / "runs"
    assert run_dirs(runs_dir) == [] and list_runs(runs_dir) == [] and with_adapter(runs_dir) == []
    old, new = _run(runs_dir, "old", status="completed"), _run(runs_dir, "new", status="completed")
    _run(runs_dir, "plain", status="failed")
    (runs_dir / ".hidden").mkdir()  # not a run name: not listed
    (runs_dir / "a-file").write_text("x")
    for i, run in enumerate((old, runs_dir / "plain", new)):
        os.utime(run, (1_000_000 + i, 1_000_000 + i))
    assert [r.name for r in run_dirs(runs_dir)] == ["new", "plain", "old"]
    assert [i.name for i in list_runs(runs_dir)] == ["new", "plain", "old"]
    _adapter(new)
    _adapter(old)  # saved after new's: the newest adapter first
    assert with_adapter(runs_dir) == ["old", "new"]
    info = run_info(RunDir(old))
    assert (info.has_adapter, info.model, info.data, info.steps_done, info.total_steps) == (
        True, RunConfig().model.name, RunConfig().data.source, 5, 60)


def test_the_settings_summary_tells_runs_apart(tmp_path):
    cfg = RunConfig().to_dict()
    assert settings_summary(cfg) == "r 16 · alpha 16 · lr 0.0002 · batch 2×4 · seq 2048 · 60 steps"
    cfg["train"].update(max_steps=0, num_train_epochs=2.0, save_steps=5, learning_rate=1e-4)
    cfg["lora"]["r"], cfg["model"]["max_seq_length"] = 8, 512
    assert settings_summary(cfg) == "r 8 · alpha 16 · lr 0.0001 · batch 2×4 · seq 512 · 2 epochs · save every 5"
    assert settings_summary({}) == "" and settings_summary({"train": "broken"}) == ""


@pytest.mark.parametrize("run_json", [
    {"status": "completed", "config": {"model": "tiny", "data": ["x"]}, "steps_done": "12/60"},
    {"status": "running", "config": "broken", "total_steps": None, "final_loss": "nan", "pid": "1"},
    {"status": "failed", "steps_done": True, "error": {"why": 1}, "started_at": 5},
])
def test_a_hand_edited_run_json_is_read_defensively(tmp_path, run_json):
    """The runs list reads every run.json when the app starts: one malformed file must not raise."""
    run = tmp_path / "runs" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps(run_json), encoding="utf-8")
    mark_interrupted(tmp_path / "runs")
    [info] = list_runs(tmp_path / "runs")
    assert info.name == run.name and info.status in ("completed", "interrupted", "failed")
    assert info.steps_done == 0 and info.model is None and info.settings == ""
    assert runs.run_info(RunDir(run)).name == run.name


# ---- torn and foreign files (issue 23, item 1) --------------------------------------------------------------
def _torn_data_dir(tmp_path: Path) -> Path:
    """A data dir with a torn file of each kind kft reads back: refusals.jsonl cut inside a Korean character, bad
    bytes in metrics.jsonl of an interrupted run, a cut run.json, and a metrics.jsonl that is not a file."""
    runs_dir = tmp_path / "runs"
    watch = _run(runs_dir, "20260101-000004", pid=999_999_999)  # newest, interrupted, resumable
    _checkpoint(watch, 3)
    (watch / "refusals.jsonl").write_bytes(b'{"step":3,"kind":"harmful","answer":"ok"}\n{"step":9,"answer":"\xec\xa3')
    bad = _run(runs_dir, "20260101-000003", pid=999_999_999)
    (bad / "metrics.jsonl").write_bytes(b'{"step":1,"loss":2.0}\n{"step":2,"loss":\xff\xfe1.5}\n{"step":3,"loss":1.0}\n')
    cut = _run(runs_dir, "20260101-000002", status="completed")
    (cut / "run.json").write_bytes((cut / "run.json").read_bytes()[:40])
    odd = _run(runs_dir, "20260101-000001", status="failed")
    (odd / "metrics.jsonl").mkdir()  # cannot be read as a file at all
    for i, name in enumerate(sorted(p.name for p in runs_dir.iterdir())):
        os.utime(runs_dir / name, (1_700_000_000 + i, 1_700_000_000 + i))
    return runs_dir


def test_torn_and_foreign_run_files_never_raise_and_say_why(tmp_path, caplog):
    runs_dir = _torn_data_dir(tmp_path)
    assert sorted(mark_interrupted(runs_dir)) == ["20260101-000003", "20260101-000004"]
    infos = {i.name: i for i in list_runs(runs_dir)}
    watch, bad, cut, odd = (infos[f"20260101-00000{n}"] for n in (4, 3, 2, 1))
    assert watch.resumable and watch.checkpoint == "checkpoint-3"
    assert any("refusals.jsonl" in d and "cut short" in d for d in watch.damage), watch.damage
    assert bad.steps_done == 5 and any("metrics.jsonl" in d and "1 unreadable line" in d for d in bad.damage)
    assert any("run.json" in d for d in cut.damage) and cut.status == "interrupted"
    assert any("metrics.jsonl" in d and "cannot be read" in d for d in odd.damage)
    run = RunDir(runs_dir / watch.name)
    rows = run.read_watch()
    assert [r["step"] for r in rows] == [3] and rows.dropped == 1
    assert [r["step"] for r in RunDir(runs_dir / bad.name).read_metrics()] == [1, 3]
    assert "refusals.jsonl" in caplog.text  # a dropped line is logged
    plan = resume_plan(run)
    assert plan.checkpoint.name == "checkpoint-3"
    assert run.truncate_watch(3) == rows and run.watch_file.read_bytes().endswith(b"\n")  # repaired on resume


def test_the_app_state_reads_a_data_dir_of_torn_files(tmp_path):
    """Workspace() (mark_interrupted at launch), the runs tab's default pick and its curve (disk_snapshot)."""
    from kft.services import Workspace
    from kft.ui.runs_tab import RunsTab, runs_frame

    _torn_data_dir(tmp_path)
    ws = Workspace(tmp_path)
    runs_list = ws.training.runs()
    pick = RunsTab._default(runs_list)
    assert pick == "20260101-000004"
    snap = ws.training.disk_snapshot(pick)
    assert [r["step"] for r in snap.watch] == [3]
    assert all(ws.training.disk_snapshot(r.name) is not None for r in runs_list)
    assert ws.training.disk_snapshot() is not None
    frame = runs_frame(runs_list, "en")
    assert "refusals.jsonl" in " ".join(frame.iloc[:, 1])  # the runs tab shows why


# ---- checkpoints that are really complete (issue 23, item 2) -------------------------------------------------
def _cut(path: Path, size: int) -> None:
    os.truncate(path, size)


def test_a_checkpoint_cut_after_its_header_or_with_a_cut_torch_file_is_not_complete(tmp_path):
    run = _run(tmp_path / "runs", "r1", pid=999_999_999)
    rd = RunDir(run)
    for step in (2, 4, 6, 8):
        rd.write_manifest(_checkpoint(run, step))
    weights = run / "checkpoints" / "checkpoint-8" / "adapter_model.safetensors"
    _cut(weights, 8 + int.from_bytes(weights.read_bytes()[:8], "little"))  # cut right after its header
    opt = run / "checkpoints" / "checkpoint-6" / "optimizer.pt"
    _cut(opt, opt.stat().st_size // 2)
    sched = run / "checkpoints" / "checkpoint-4" / "scheduler.pt"  # same size, other bytes: only the hash tells
    data = bytearray(sched.read_bytes())
    data[-30] ^= 0xFF
    sched.write_bytes(bytes(data))
    problems = {c.name: rd.checkpoint_problems(c) for c in rd.checkpoints()}
    assert "adapter_model.safetensors is cut short" in problems["checkpoint-8"]
    assert "optimizer.pt is cut short" in problems["checkpoint-6"]
    assert problems["checkpoint-4"] == [] and "scheduler.pt changed since it was saved" in rd.checkpoint_problems(
        run / "checkpoints" / "checkpoint-4", deep=True)
    assert rd.last_complete_checkpoint().name == "checkpoint-4"  # the quick check of the runs list
    assert rd.last_complete_checkpoint(deep=True).name == "checkpoint-2"  # before a resume
    assert resume_plan(rd).checkpoint.name == "checkpoint-2"
    rd.mark_damaged(run / "checkpoints" / "checkpoint-2", "could not be read back")
    with pytest.raises(ValueError, match="no complete checkpoint"):
        resume_plan(rd)


@pytest.mark.parametrize("failure, resumable", [("disk_full", True), ("damaged_checkpoint", True), (None, False)])
def test_a_run_failed_on_a_full_disk_or_a_damaged_checkpoint_stays_resumable(tmp_path, failure, resumable):
    run = _run(tmp_path / "runs", "r1", status="failed")
    raw = json.loads((run / "run.json").read_text(encoding="utf-8"))
    (run / "run.json").write_text(json.dumps({**raw, "failure": failure, "error": "x"}), encoding="utf-8")
    _checkpoint(run, 3)
    info = run_info(RunDir(run))
    assert info.status == "failed" and info.resumable is resumable
    if resumable:
        assert resume_plan(RunDir(run)).checkpoint.name == "checkpoint-3"
    else:
        with pytest.raises(ValueError, match="is failed, not interrupted"):
            resume_plan(RunDir(run))


# ---- deleting a run (issue 23, disk) ------------------------------------------------------------------------
def _run_with_zip(ws, name: str = "20260101-000000"):
    from kft.runs.store import RunDir
    from kft.services.exports import download_key

    run = RunDir(ws.runs_dir / name)
    (run.path / "adapter").mkdir(parents=True)
    run.write_json({"status": "completed", "config": {}})
    run.zip_file.write_bytes(b"zip")
    copy = ws.exports.new("downloads", download_key(run.zip_file)) / run.zip_file.name
    copy.write_bytes(b"zip")  # the copy handed out for download
    return run, copy


def test_deleting_a_run_removes_its_directory_and_its_exports_and_is_refused_when_it_must_be(tmp_path):
    import pytest

    from conftest import RunningJobStandIn
    from kft.runs.store import RunDir
    from kft.services import BusyError, Limits, Workspace

    ws = Workspace(tmp_path / "d")
    run, copy = _run_with_zip(ws)
    other, _ = _run_with_zip(ws, "20260101-000001")
    assert ws.delete_run(run.name) == run.name
    assert not run.path.exists() and not copy.exists() and other.path.is_dir()
    assert [r.name for r in ws.training.runs()] == [other.name]
    with pytest.raises(ValueError, match="was not found"):
        ws.delete_run(run.name)
    with pytest.raises(ValueError, match="is not a run name"):
        ws.delete_run("../uploads")

    stand_in = RunningJobStandIn()  # the run being trained
    stand_in.run, stand_in.run_dir = RunDir(other.path), other.path
    ws.training.job = stand_in
    with pytest.raises(BusyError, match="is training: stop it"):
        ws.delete_run(other.name)
    ws.training.job = None

    class Model:  # a compared adapter on the model in memory
        def delete_adapter(self, name):
            self.deleted = name

    class Loaded:
        name, model = "base", Model()

    ws.slot.ensure_base(lambda _: True, Loaded)
    ws.slot.ensure_adapter(str(other.path), other.adapter, lambda *a: None)
    with ws.slot.generation():  # ... being compared right now
        with pytest.raises(BusyError, match="is in use on the model right now"):
            ws.delete_run(other.name)
    assert other.path.is_dir()
    ws.delete_run(other.name)  # the comparison has finished: the adapter leaves memory with its run
    assert Loaded.model.deleted.startswith("cmp_") and not ws.slot.adapters and not other.path.exists()

    read_only = Workspace(tmp_path / "r", Limits(read_only=True))
    kept, _ = _run_with_zip(read_only)
    with pytest.raises(ValueError, match="read-only"):
        read_only.delete_run(kept.name)
    assert kept.path.is_dir()


def test_a_run_is_deleted_from_the_runs_tab_after_a_confirmation_and_through_delete_run(tmp_path):
    from conftest import call_api, free_port, running_app
    from kft.config.app_settings import AppSettings
    from kft.ui.runs_tab import RunsTab

    settings = AppSettings(port=free_port(), data_dir=str(tmp_path / "d"), lang="en")
    with running_app(settings) as (url, ws):
        run, copy = _run_with_zip(ws)
        other, _ = _run_with_zip(ws, "20260101-000001")
        import gradio as gr

        with gr.Blocks():
            tab = RunsTab(ws, settings, gr.Textbox("en"))
            tab.build("en")
        assert tab.delete.interactive is not False and tab.confirm_row.visible is False  # hidden until asked
        asked = tab.on_ask_delete(run.name, "en")
        assert run.path.is_dir()  # asking deletes nothing
        assert asked[tab.confirm_row]["visible"] is True
        assert asked[tab.confirm_text].startswith("Delete **20260101-000000** for good")
        event, out = call_api(url, "/delete_run", run=run.name, lang="en")
        assert event == "complete" and out[0] == "Deleted 20260101-000000.", out
        assert not run.path.exists() and not copy.exists()
        table = next(v for v in out if isinstance(v, dict) and "headers" in v)
        assert [row[0] for row in table["data"]] == [other.name]  # the runs table shows what is left
        event, out = call_api(url, "/delete_run", run=run.name, lang="en")
        assert out[0].startswith("⚠️ Cannot delete:") and "was not found" in out[0], out
