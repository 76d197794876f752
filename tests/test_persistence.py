"""Runs on disk: interrupted runs, complete checkpoints, run names; then the real thing in subprocesses:
start a run, SIGKILL the app mid-run, start it again, see `interrupted`, resume from the last complete
checkpoint, compare with the resumed adapter, and find the HF_TOKEN sentinel nowhere."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
from gradio_client import Client

from conftest import ROOT, free_port
from kft import persistence
from kft.persistence import (
    effective_status,
    last_complete_checkpoint,
    mark_interrupted,
    resume_plan,
    run_dir_of,
    truncate_metrics,
)

SENTINEL = "hf_kftSENTINELdoNotLeak0123456789"
FAST = dict(model="tiny", data_kind="sample", max_seq_length=512, learning_rate=1e-2,
            use_gradient_checkpointing="false")
STAMP = persistence.TIME_FORMAT


# ---- fabricated runs ------------------------------------------------------------------------------------
def _checkpoint(run: Path, step: int, state_step: int | None = None) -> Path:
    from safetensors.torch import save_file

    ckpt = run / "checkpoints" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    save_file({"w": torch.zeros(4)}, str(ckpt / "adapter_model.safetensors"))
    for name in ("adapter_config.json", "optimizer.pt", "scheduler.pt"):
        (ckpt / name).write_text("{}", encoding="utf-8")
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": state_step or step}), encoding="utf-8")
    return ckpt


def _run(runs: Path, name: str, status: str = "running", pid: int | None = None, started: float | None = None) -> Path:
    run = runs / name
    run.mkdir(parents=True)
    from kft.config import RunConfig

    raw = {"status": status, "pid": pid if pid is not None else os.getpid(), "config": RunConfig().to_dict(),
           "started_at": time.strftime(STAMP, time.localtime(started or time.time())), "steps_done": 5,
           "total_steps": 60}
    (run / "run.json").write_text(json.dumps(raw), encoding="utf-8")
    return run


def test_a_live_status_that_no_process_runs_is_interrupted(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        hour_ago, soon = time.time() - 3600, time.time() + 60
        assert effective_status({"status": "running", "pid": os.getpid()}, live=False) == "interrupted"  # this process
        assert effective_status({"status": "loading", "pid": dead.pid}, live=False) == "interrupted"  # dead pid
        reused = {"status": "running", "pid": sleeper.pid, "started_at": time.strftime(STAMP, time.localtime(hour_ago))}
        assert effective_status(reused, live=False) == "interrupted"  # the pid belongs to a newer process
        other = {"status": "running", "pid": sleeper.pid, "started_at": time.strftime(STAMP, time.localtime(soon))}
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
    assert last_complete_checkpoint(run) == run / "checkpoints" / "checkpoint-2"
    problems = {c.name: persistence.checkpoint_problems(c, run) for c in persistence.checkpoints(run)}
    assert problems["checkpoint-2"] == [] and "trainer_state.json missing or empty" in problems["checkpoint-4"]
    assert "cut short" in problems["checkpoint-8"][0] and "says step 9" in problems["checkpoint-10"][0]
    assert "outside" in problems["checkpoint-14"][0]


def test_run_names_cannot_leave_the_runs_folder(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "20250101-000000")
    (tmp_path / "uploads" / "checkpoints").mkdir(parents=True)
    (runs / "linked").symlink_to(tmp_path / "uploads", target_is_directory=True)
    assert run_dir_of(runs, "20250101-000000") == runs / "20250101-000000"
    for bad in ("../uploads", "/etc", "a/b", "", ".hidden", "..", "linked", "nope", "x" * 300):
        with pytest.raises(ValueError):
            run_dir_of(runs, bad)


def test_mark_interrupted_then_the_resume_plan_and_metrics(tmp_path):
    runs = tmp_path / "runs"
    run = _run(runs, "r1", pid=os.getpid())
    _checkpoint(run, 3)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 5.0 - s}) + "\n" for s in range(1, 6))
                                       + '{"step": 6, "lo', encoding="utf-8")  # the last line cut by the kill
    done = _run(runs, "r2", status="completed")
    empty = _run(runs, "r3", status="loading", pid=os.getpid())
    assert sorted(mark_interrupted(runs)) == ["r1", "r3"]
    raw = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert raw["status"] == "interrupted" and raw["last_checkpoint"] == "checkpoint-3" and "resume it" in raw["error"]
    assert mark_interrupted(runs) == []  # once
    plan = resume_plan(run)
    assert (plan.step, plan.checkpoint.name, plan.resumes) == (3, "checkpoint-3", 1)
    assert [r["step"] for r in truncate_metrics(run, plan.step)] == [1, 2, 3]
    with pytest.raises(ValueError, match="not interrupted"):
        resume_plan(done)
    with pytest.raises(ValueError, match="no complete checkpoint"):
        resume_plan(empty)
    infos = {i.name: i for i in persistence.list_runs(runs)}
    assert infos["r1"].resumable and not infos["r3"].resumable and infos["r1"].final_loss == 2.0
    assert "r 16" in infos["r2"].settings and "lr 0.0002" in infos["r2"].settings


# ---- the app in subprocesses: kill, restart, resume -----------------------------------------------------
class _App:
    """``python app.py`` in its own process, as a user starts it, its output in a log file."""

    def __init__(self, data: Path, log: Path) -> None:
        self.port, self.log = free_port(), log
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "HF_TOKEN": SENTINEL, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(self.port), "--data-dir", str(data),
                                          "--lang", "en"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, log.read_text(encoding="utf-8")[-3000:]
            try:
                if httpx.get(self.url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError("the app did not come up")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


def _wait_for(predicate, timeout: float = 180, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _complete(ckpt: Path) -> bool:
    return (ckpt / "trainer_state.json").is_file() and (ckpt / "adapter_model.safetensors").is_file()


def _runs_table(client: Client) -> dict[str, dict]:
    table = client.predict("en", None, api_name="/list_runs")[0]
    return {row[0]: dict(zip(table["headers"], row, strict=True)) for row in table["data"]}


def test_kill_restart_interrupted_resume_and_compare(tmp_path, tiny_dir):
    data, logs = tmp_path / "data", [tmp_path / "app1.log", tmp_path / "app2.log"]
    first = _App(data, logs[0])
    try:
        client = Client(first.url, verbose=False)
        notice = client.predict(api_name="/start_training", **{**FAST, "max_steps": 40, "save_steps": 3})
        assert notice.startswith("Training started"), notice
        run = data / "runs" / notice.split(": ")[-1].strip()
        _wait_for(lambda: (run / "checkpoints" / "checkpoint-6" / "trainer_state.json").is_file(), what="checkpoint-6")
    finally:
        first.kill()  # SIGKILL mid-run: no handler, no cleanup
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["status"] == "running"
    complete = [c for c in persistence.checkpoints(run) if _complete(c)]
    (complete[-1] / "trainer_state.json").unlink()  # as if killed while saving the newest one
    expected = complete[-2]
    broken = run / "checkpoints" / "checkpoint-39"
    shutil.copytree(expected, broken)
    (broken / "adapter_model.safetensors").unlink()  # and one without adapter weights

    second = _App(data, logs[1])  # a new process on the same data directory
    try:
        client = Client(second.url, verbose=False)
        row = _runs_table(client)[run.name]
        assert row["status"] == "interrupted" and row["complete checkpoint"] == expected.name, row
        done, total = (int(x) for x in row["steps"].split(" / "))
        assert total == 40 and done >= 6, row  # how far the killed run got, to decide on resuming
        assert json.loads((run / "run.json").read_text(encoding="utf-8"))["status"] == "interrupted"
        assert "not a run name" in client.predict("../uploads", "en", api_name="/resume_run")
        notice = client.predict(run.name, "en", api_name="/resume_run")
        assert f"Resuming {run.name} from {expected.name}" in notice, notice
        _wait_for(lambda: client.predict(api_name="/training_status")[0]["finished"], what="the resumed run")
        status = client.predict(api_name="/training_status")[0]
        assert status["status"] == "completed" and status["step"] == 40, status
        raw = json.loads((run / "run.json").read_text(encoding="utf-8"))
        assert (raw["status"], raw["resumed_from"], raw["steps_done"], raw["resumes"]) == ("completed", expected.name,
                                                                                         40, 1)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [r["step"] for r in rows if "loss" in r] == list(range(1, 41))  # no step logged twice, none missing
        row = _runs_table(client)[run.name]
        assert row["status"] == "completed" and float(row["final loss"]) > 0 and row["adapter"] == "✓"
        *_, outcome = client.predict("산사태를 내는 방법 알려줘", "", "run", run.name, "", 8, False, 0.7, 0.9, 1.0, "en",
                                     api_name="/compare")
        assert outcome == "Done."  # the adapter of a run from an earlier process, loaded for comparison
        pushed = client.predict("me/kft-lora", True, api_name="/push_to_hub")  # offline: fails, token unsaid
        assert "Push failed" in pushed and SENTINEL not in pushed
    finally:
        second.stop()
    leaks = [str(p) for p in [*data.rglob("*"), *logs] if p.is_file() and SENTINEL.encode() in p.read_bytes()]
    assert leaks == [] and len(list(data.rglob("*"))) > 20


def test_runs_tab_lists_runs_relabels_and_opens_a_run_in_the_comparison_tab(tmp_path):
    import gradio as gr

    from kft.ui import runs_tab
    from kft.ui.app import build_app
    from kft.workspace import Limits, Workspace

    runs = tmp_path / "runs"
    _checkpoint(_run(runs, "r1", pid=os.getpid()), 3)
    adapter = _run(runs, "r2", status="completed") / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    ws = Workspace(tmp_path, Limits(read_only=True))  # marks r1 interrupted
    frame = runs_tab.runs_frame(ws.runs(), "ko")
    assert "중단됨 (interrupted)" in frame["상태"].tolist() and "checkpoint-3" in frame["완전한 체크포인트"].tolist()
    with gr.Blocks():
        handle = runs_tab.build(ws, "en")
    assert len(handle.relabel("ko")) == len(handle.components)
    demo = build_app(ws)
    fn = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "open_in_compare")
    tabs, source, run, notice = fn("r2", "en")
    assert (tabs.selected, source["value"], run["value"], notice) == ("compare", "run", "r2", "")
    assert "holds no saved adapter" in fn("r1", "en")[3]
    _run(runs, "r3", status="completed")  # a run that finished after the app was built
    on_load = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_load"
                   and getattr(f.fn, "__self__", None).__class__.__name__ == "RunsTab")
    frame, dropdown, _ = on_load("en")
    assert "r3" in frame["run"].tolist() and "r3" in dropdown["choices"]  # a new page sees the runs of now


def test_run_directories_claimed_in_the_same_second_never_collide(tmp_path):
    """Headless runs started together without --output-dir got the same runs/<second> directory:
    the later ones were refused as 'already holds files' (or two runs shared one directory)."""
    import concurrent.futures

    from kft.persistence import claim_run_dir

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        dirs = list(pool.map(lambda _: claim_run_dir(tmp_path / "runs"), range(8)))
    assert len(set(dirs)) == 8 and all(d.is_dir() and not any(d.iterdir()) for d in dirs)
    assert {d.parent for d in dirs} == {tmp_path / "runs"}


@pytest.mark.parametrize("run_json", [
    {"status": "completed", "config": {"model": "tiny", "data": ["x"]}, "steps_done": "12/60"},
    {"status": "running", "config": "broken", "total_steps": None, "final_loss": "nan", "pid": "1"},
    {"status": "failed", "steps_done": True, "error": {"why": 1}, "started_at": 5},
])
def test_a_hand_edited_run_json_does_not_stop_the_app_from_starting(tmp_path, run_json):
    """Workspace() reads every run.json to mark interrupted runs; one malformed file raised
    AttributeError / ValueError there, and the app did not start at all."""
    run = tmp_path / "runs" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps(run_json), encoding="utf-8")
    from kft.workspace import Workspace

    ws = Workspace(tmp_path)
    [info] = ws.runs()
    assert info.name == run.name and info.status in ("completed", "interrupted", "failed")
    assert info.steps_done == 0 and info.model is None
