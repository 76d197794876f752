"""Do viewers slow training? Trains the tiny model on the CPU (or a GPU) in a running app, once with 1 and once with
3 simulated viewers, each a separate process polling /training_status through gradio_client every 1.5 s (a page's
poll interval), and reports the training tokens/s of each (target: 3 viewers within 10% of 1).

    PYTHONPATH=.:bench python bench/bench_viewers.py --steps 60 --out R.json
    PYTHONPATH=.:bench python bench/bench_viewers.py --pages --runs-from DIR --steps 60 --repeats 3 --out R.json

``--pages``: no web server; each viewer is a thread of the app's process calling what a page's timers call, at their
intervals (the training tab's tick every 1.5 s, the runs tab's every 5 s, the comparison tab's every 2 s), with the
page's own state kept as Gradio keeps it: the server's cost of three open pages, without the viewer processes' own
CPU. ``--runs-from``: run directories copied into the data dir first (the runs tab reads every run each tick).
1 and 3 viewers alternate ``--repeats`` times; the report gives each pair's ratio and the median.

    PYTHONPATH=.:bench python bench/bench_viewers.py --poll-cost --runs-from DIR [--polls 50]

``--poll-cost``: what one poll of each tab's timer costs the server (ms, the handler alone, nothing new to send),
with the runs of DIR listed; no training.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import tempfile
import time
from pathlib import Path

POLL_S = 1.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def viewer(url: str, stop, polls) -> None:  # noqa: ANN001 - multiprocessing objects
    """One page: polls the training status until told to stop; counts its polls."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    while not stop.is_set():
        client.predict(api_name="/training_status")
        with polls.get_lock():
            polls.value += 1
        stop.wait(POLL_S)


def _config(steps: int):
    from kft.config.args import RunConfig

    cfg = RunConfig()
    cfg.model.name, cfg.model.max_seq_length = "tiny", 512
    cfg.data.source = "sample"
    cfg.train.max_steps, cfg.train.learning_rate = steps, 1e-2
    cfg.lora.use_gradient_checkpointing = False
    return cfg


def train_with(ws, url: str, viewers: int, steps: int) -> dict:  # noqa: ANN001
    ctx = mp.get_context("spawn")
    stop, polls = ctx.Event(), ctx.Value("i", 0)
    procs = [ctx.Process(target=viewer, args=(url, stop, polls), daemon=True) for _ in range(viewers)]
    for p in procs:
        p.start()
    time.sleep(8)  # the viewers connected and polling (their start-up is not the run's)
    job = ws.training.start(_config(steps))
    assert job.join(1800), "training did not finish"
    snap = job.snapshot()
    stop.set()
    for p in procs:
        p.join(30)
    return {"viewers": viewers, "status": snap.status, "steps": snap.step, "tokens_per_s": snap.tokens_per_s,
            "elapsed_s": round(snap.elapsed_s, 1), "polls": polls.value}


def page(tabs, stop) -> None:  # noqa: ANN001 - the tabs and a threading.Event
    """One open page: its three timers' handlers at their intervals, its state updated from what they return."""
    import gradio as gr

    from kft.ui import runs_tab, train_tab

    train, compare, runs = tabs
    shown, follow, listing = None, {"seen": None, "chose": False}, runs.on_list(None, "en")
    run, table = listing[runs.run]["value"], listing[runs.shown]
    due = {"train": 0.0, "runs": 0.0, "compare": 0.0}
    every = {"train": train_tab.POLL_S, "runs": runs_tab.POLL_S, "compare": 2.0}
    while not stop.is_set():
        now = time.monotonic()
        if now >= due["train"]:
            out = train.on_tick(shown, "en")
            shown = out[train.shown] if not isinstance(out[train.shown], type(gr.skip())) else shown
        if now >= due["runs"]:
            out = runs.on_tick(run, table, "", "en")
            table = out[runs.shown] if isinstance(out[runs.shown], str) else table
        if now >= due["compare"]:
            out = compare.on_tick(follow, None, "en", "trained", None)
            follow = out[compare.follow] if isinstance(out[compare.follow], dict) else follow
        for k in due:
            if now >= due[k]:
                due[k] = now + every[k]
        stop.wait(max(min(due.values()) - time.monotonic(), 0.01))


def _tabs(a: argparse.Namespace):  # noqa: ANN202
    import shutil

    import gradio as gr

    from kft.services.workspace import Workspace
    from kft.ui.compare_tab import CompareTab
    from kft.ui.runs_tab import RunsTab
    from kft.ui.train_tab import TrainTab

    data = Path(tempfile.mkdtemp(prefix="kft-viewers-")) / "data"
    ws = Workspace(data)
    for src in sorted(Path(a.runs_from).iterdir()) if a.runs_from else []:
        shutil.copytree(src, ws.runs_dir / src.name)
    with gr.Blocks():
        lang_box = gr.Textbox(value="en")
        tabs = [TrainTab(ws, None, lang_box), CompareTab(ws, None, lang_box), RunsTab(ws, None, lang_box)]
        for tab in tabs:
            tab.build("en")
    return ws, tabs


def poll_cost(a: argparse.Namespace) -> None:
    ws, (train, compare, runs) = _tabs(a)
    shown = train.on_tick(None, "en")[train.shown]
    listing = runs.on_list(None, "en")
    run, table = listing[runs.run]["value"], listing[runs.shown]
    calls = {"training tab tick": lambda: train.on_tick(shown, "en"),
             "runs tab tick": lambda: runs.on_tick(run, table, "", "en"),
             "comparison tab tick": lambda: compare.on_tick({"seen": None, "chose": False}, None, "en", "trained",
                                                            None)}
    report = {"mode": "poll-cost", "runs_listed": len(ws.training.runs()), "load": os.getloadavg()}
    for name, call in calls.items():
        call()
        t0 = time.perf_counter()
        for _ in range(a.polls):
            call()
        report[name + " (ms)"] = round((time.perf_counter() - t0) / a.polls * 1e3, 2)
    print(json.dumps(report), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=2))


def pages_bench(a: argparse.Namespace) -> None:
    import statistics
    import threading

    ws, tabs = _tabs(a)
    ws.training.start(_config(5)).join(600)  # warm-up

    def run_with(viewers: int) -> dict:
        stop = threading.Event()
        threads = [threading.Thread(target=page, args=(tabs, stop), daemon=True) for _ in range(viewers)]
        for t in threads:
            t.start()
        job = ws.training.start(_config(a.steps))
        assert job.join(1800), "training did not finish"
        stop.set()
        for t in threads:
            t.join(30)
        snap = job.snapshot()
        return {"viewers": viewers, "status": snap.status, "tokens_per_s": snap.tokens_per_s,
                "elapsed_s": round(snap.elapsed_s, 1), "load": round(os.getloadavg()[0], 2)}

    results, ratios = [], []
    for _ in range(a.repeats):
        one, three = run_with(1), run_with(3)
        results += [one, three]
        ratios.append(round(three["tokens_per_s"] / one["tokens_per_s"], 3))
        print(json.dumps([one, three, ratios[-1]]), flush=True)
    report = {"mode": "pages", "runs": results, "ratios": ratios, "median_ratio": statistics.median(ratios),
              "runs_listed": len(ws.training.runs()), "target": "3 viewers within 10% of 1 (ratio >= 0.9)"}
    print(json.dumps(report), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default="")
    ap.add_argument("--pages", action="store_true")
    ap.add_argument("--runs-from", default="")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--poll-cost", action="store_true")
    ap.add_argument("--polls", type=int, default=50)
    a = ap.parse_args()
    if a.poll_cost:
        poll_cost(a)
        return
    if a.pages:
        pages_bench(a)
        return
    from kft.config.app_settings import AppSettings
    from kft.ui.server import launch, make_workspace

    data = Path(tempfile.mkdtemp(prefix="kft-viewers-")) / "data"
    port = _free_port()
    settings = AppSettings(port=port, data_dir=str(data), lang="en")
    ws = make_workspace(settings)
    server, _, _ = launch(settings, block=False, ws=ws)
    url = f"http://127.0.0.1:{port}/"
    ws.training.start(_config(5)).join(600)  # warm-up: the first load's caches are not the 1-viewer run's
    results = [train_with(ws, url, 1, a.steps), train_with(ws, url, 3, a.steps)]
    one, three = results[0]["tokens_per_s"], results[1]["tokens_per_s"]
    report = {"runs": results, "three_vs_one": round(three / one, 3) if one and three else None,
              "target": "3 viewers within 10% of 1 (ratio >= 0.9)"}
    print(json.dumps(report), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=2))
    server.get_blocks().close()


if __name__ == "__main__":
    main()
