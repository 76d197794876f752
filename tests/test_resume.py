"""Resuming through the app: start a run in ``python app.py``, SIGKILL the app mid-run, start it again, see
`interrupted`, resume from the last complete checkpoint, compare with the resumed adapter, and find the HF_TOKEN
sentinel nowhere; and the runs tab that lists runs and opens one in the comparison tab.
Runs on disk without the app (RunDir, checkpoints, the runs list) are tested in tests/test_runs.py."""

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
import torch
from gradio_client import Client

from conftest import ROOT, free_port, wait_until
from kft.runs.store import TIME_FORMAT, RunDir

SENTINEL = "hf_kftSENTINELdoNotLeak0123456789"
FAST = dict(model="tiny", data_kind="sample", max_seq_length=512, learning_rate=1e-2,
            use_gradient_checkpointing="false")


# ---- fabricated runs ------------------------------------------------------------------------------------
def _checkpoint(run: Path, step: int) -> Path:
    from safetensors.torch import save_file

    ckpt = run / "checkpoints" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    save_file({"w": torch.zeros(4)}, str(ckpt / "adapter_model.safetensors"))
    (ckpt / "adapter_config.json").write_text("{}", encoding="utf-8")
    for name in ("optimizer.pt", "scheduler.pt"):
        torch.save({"state": {}, "param_groups": []}, ckpt / name)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}), encoding="utf-8")
    return ckpt


def _run(runs: Path, name: str, status: str = "running", pid: int | None = None) -> Path:
    from kft.config.args import RunConfig

    run = runs / name
    run.mkdir(parents=True)
    raw = {"status": status, "pid": pid if pid is not None else os.getpid(), "config": RunConfig().to_dict(),
           "started_at": time.strftime(TIME_FORMAT), "steps_done": 5, "total_steps": 60}
    (run / "run.json").write_text(json.dumps(raw), encoding="utf-8")
    return run


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
        wait_until(self._up, 120, what="the app to come up", every=0.3)

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text(encoding="utf-8")[-3000:]
        try:
            return httpx.get(self.url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


def _complete(ckpt: Path) -> bool:
    return (ckpt / "trainer_state.json").is_file() and (ckpt / "adapter_model.safetensors").is_file()


def _runs_table(client: Client) -> dict[str, dict]:
    table = client.predict(None, "en", api_name="/list_runs")[0]
    return {row[0]: dict(zip(table["headers"], row, strict=True)) for row in table["data"]}


def test_kill_restart_interrupted_resume_and_compare(tmp_path, tiny_dir):
    data, logs = tmp_path / "data", [tmp_path / "app1.log", tmp_path / "app2.log"]
    first = _App(data, logs[0])
    try:
        client = Client(first.url, verbose=False)
        notice = client.predict(api_name="/start_training", **{**FAST, "max_steps": 40, "save_steps": 3})
        assert notice.startswith("Training started"), notice
        run = data / "runs" / notice.split(": ")[-1].strip()
        wait_until(lambda: (run / "checkpoints" / "checkpoint-6" / "trainer_state.json").is_file(), 600,
                   what="checkpoint-6", every=0.2)
    finally:
        first.kill()  # SIGKILL mid-run: no handler, no cleanup
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["status"] == "running"
    complete = [c for c in RunDir(run).checkpoints() if _complete(c)]
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
        wait_until(lambda: client.predict(api_name="/training_status")[0]["finished"], 600,
                   what="the resumed run", every=0.2)
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


# ---- the runs tab ---------------------------------------------------------------------------------------
def _event(demo, name: str, owner: str | None = None):
    """The app's event whose handler is ``name`` (a method of an ``owner`` object when given)."""
    return next(f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name
                and (owner is None or type(getattr(f.fn, "__self__", None)).__name__ == owner))


def test_runs_tab_lists_runs_relabels_and_opens_a_run_in_the_comparison_tab(tmp_path):
    import gradio as gr

    from kft.services import Limits, Workspace
    from kft.ui import runs_tab
    from kft.ui.app import build_app

    runs = tmp_path / "runs"
    _checkpoint(_run(runs, "r1", pid=os.getpid()), 3)
    adapter = _run(runs, "r2", status="completed") / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    ws = Workspace(tmp_path, Limits(read_only=True))  # marks r1 interrupted
    frame = runs_tab.runs_frame(ws.training.runs(), "ko")
    assert "중단됨 (interrupted)" in frame["상태"].tolist() and "checkpoint-3" in frame["완전한 체크포인트"].tolist()
    with gr.Blocks():
        tab = runs_tab.RunsTab(ws, None, gr.Textbox("en", visible=False))
        tab.build("en")
    assert set(tab.relabel("ko")) == set(tab.translated) and tab.translated
    demo = build_app(ws)
    opener = _event(demo, "open_in_compare")
    tabs, source, run, run_b, notice = opener.outputs
    out = opener.fn("r2", "", "en")
    assert (out[tabs].selected, out[source]["value"], out[run]["value"], out[notice]) == ("compare", "run", "r2", "")
    assert out[run_b]["value"] == "" and run_b.elem_id == "kft-compare-run-b"
    adapter5 = _run(runs, "r5", status="completed") / "adapter"  # the overlaid run opens as run B (the third pane)
    adapter5.mkdir()
    (adapter5 / "adapter_config.json").write_text("{}", encoding="utf-8")
    out = opener.fn("r2", "r5", "en")
    assert (out[run]["value"], out[run_b]["value"]) == ("r2", "r5") and "r5" in out[run_b]["choices"]
    assert opener.fn("r2", "r1", "en")[run_b]["value"] == "", "an overlay with no adapter is no run B"
    # another adapter's answers and scorecard are cleared by the comparison tab's check (chained; issue 24)
    stale = _event(demo, "cleared_if_stale")
    assert {p.elem_id for p in stale.outputs} >= {"kft-base", "kft-lora", "kft-outcome", "kft-sc-summary", "kft-sc-table"}
    assert "holds no saved adapter" in opener.fn("r1", "", "en")[notice]
    _run(runs, "r3", status="completed")  # a run that finished after the app was built
    on_load = _event(demo, "on_load", owner="RunsTab")
    table, dropdown, *_ = on_load.outputs
    out = on_load.fn("en")
    assert "r3" in out[table]["run"].tolist() and "r3" in out[dropdown]["choices"]  # a new page sees the runs of now
    tick = _event(demo, "on_tick", owner="RunsTab")  # a page loaded earlier: its tick brings new runs and statuses
    table, dropdown, shown, *_ = tick.outputs
    seen = on_load.fn("en")[shown]
    assert all(v == gr.skip() for v in tick.fn("r2", seen, "", "en").values()), "nothing changed: nothing sent"
    _run(runs, "r4", status="completed")
    out = tick.fn("r2", seen, "", "en")
    assert "r4" in out[table]["run"].tolist() and "r4" in out[dropdown]["choices"] and out[dropdown]["value"] == "r2"


def test_runs_tab_shows_a_runs_curve_overlays_another_and_offers_resume_only_where_it_can_act(tmp_path):
    import gradio as gr

    from kft.services import Limits, Workspace
    from kft.ui import runs_tab

    runs = tmp_path / "runs"
    done = _run(runs, "done", status="completed")
    RunDir(done).append_metrics({"step": 1, "loss": 3.0})
    RunDir(done).append_metrics({"step": 2, "loss": 2.5, "eval_loss": 2.8})
    cut = _run(runs, "cut", pid=999_999_999)  # its process is gone: interrupted, with a complete checkpoint
    _checkpoint(cut, 3)
    for step, loss in ((1, 4.0), (2, 3.5), (3, 3.0)):
        RunDir(cut).append_metrics({"step": step, "loss": loss})
    ws = Workspace(tmp_path)
    with gr.Blocks():
        tab = runs_tab.RunsTab(ws, None, gr.Textbox("en", visible=False))
        tab.build("en")
    assert tab.resume.variant == "secondary" and tab.resume.interactive is True  # "cut" is picked: resumable
    out = tab.on_select("done", "", "en")
    assert out[tab.resume]["interactive"] is False  # a completed run cannot be resumed: not offered
    # one run: the series alone; with an overlay, "run 1 · ..." and "run 2 · ..." (a run's full name before each
    # series was cut off in the legend at phone width)
    assert out[tab.curve].groupby("series").size().to_dict() == {"training": 2, "evaluation (held out)": 1}
    both = tab.on_select("done", "cut", "en")[tab.curve]
    assert set(both["series"]) == {"run 1 · training", "run 1 · evaluation (held out)", "run 2 · training"}
    assert list(both[both["series"] == "run 2 · training"]["loss"]) == [4.0, 3.5, 3.0]
    assert tab.on_select("cut", "", "en")[tab.resume]["interactive"] is True
    loaded = tab.on_load("en")
    assert loaded[tab.run]["value"] == "cut" and len(loaded[tab.curve]) == 3 and loaded[tab.overlay]["value"] == ""
    assert all(v == gr.skip() for v in tab.on_tick("cut", loaded[tab.shown], "done", "en").values())
    ticked = tab.on_tick("cut", "", "done", "en")  # the table changed: the curves come again, overlay kept
    assert len(ticked[tab.curve]) == 6
    with gr.Blocks():
        read_only = runs_tab.RunsTab(Workspace(tmp_path, Limits(read_only=True)), None, gr.Textbox("en", visible=False))
        read_only.build("en")
    assert read_only.resume.interactive is False
