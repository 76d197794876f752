"""Do viewers slow training? Trains the tiny model on the CPU (or a GPU) in a running app, once with 1 and once with
3 simulated viewers, each a separate process polling /training_status through gradio_client every 1.5 s (a page's
poll interval), and reports the training tokens/s of each (target: 3 viewers within 10% of 1).

    PYTHONPATH=.:bench python bench/bench_viewers.py --steps 60 --out R.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
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
