"""One-off measurement (issue 23): the app's resident memory as new browser sessions arrive, and after they expire.

Starts ``python app.py`` as its own process (tiny model, CPU), then opens N sessions: each is a new session hash
calling /training_status (the 2 s tick every page makes) and /list_runs through Gradio's HTTP API, so Gradio builds
that session's state. RSS (psutil) is read before, after the N sessions, and once the idle ones have expired.
With ROUNDS, that is repeated: N more sessions, then their expiry, each round's figures against the same start.
Usage: PYTHONPATH=.:bench python bench/sessions_memory.py [N] [idle_s] [ROUNDS] (defaults 1000, 20 and 1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent


def _call(client: httpx.Client, base: str, api_name: str, data: list, session: str) -> None:
    r = client.post(f"{base}gradio_api/call/{api_name}", json={"data": data, "session_hash": session})
    r.raise_for_status()
    with client.stream("GET", f"{base}gradio_api/call/{api_name}/{r.json()['event_id']}") as resp:
        for line in resp.iter_lines():
            if line.startswith("event:") and line.split(":", 1)[1].strip() in ("complete", "error"):
                break


def main(sessions: int, idle_s: int, rounds: int = 1) -> dict[str, float | int]:
    tmp = Path(tempfile.mkdtemp(prefix="kft-sessions-memory-"))
    port = 7860 + os.getpid() % 1000
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "KFT_SESSION_IDLE_S": str(idle_s)}
    app = subprocess.Popen([sys.executable, "app.py", "--data-dir", str(tmp / "data"), "--port", str(port),
                            "--lang", "en"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}/"
    try:
        with httpx.Client(timeout=120) as client:
            for _ in range(240):
                try:
                    if client.get(f"{base}gradio_api/info").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1)
            proc = psutil.Process(app.pid)

            def rss() -> float:
                return round(proc.memory_info().rss / 2**20, 1)

            for _ in range(20):  # warm-up: the first calls allocate what every later one reuses
                _call(client, base, "training_status", ["en"], uuid.uuid4().hex)
            time.sleep(idle_s + 15)  # the warm-up sessions expire too
            out: dict[str, float | int] = {"sessions": sessions, "idle_s": idle_s, "rounds": rounds,
                                           "before_mb": rss()}
            for n in range(1, rounds + 1):  # each round: N new sessions, then past their expiry
                t = time.time()
                for _ in range(sessions):
                    session = uuid.uuid4().hex
                    _call(client, base, "training_status", ["en"], session)
                    _call(client, base, "list_runs", [None, "en"], session)
                suffix = "" if n == 1 else f"_{n}"
                out[f"open_s{suffix}"] = round(time.time() - t, 1)
                out[f"after_mb{suffix}"] = rss()
                time.sleep(idle_s + 15)  # past the idle limit and the next sweep
                out[f"after_expiry_mb{suffix}"] = rss()
                out[f"growth_mb{suffix}"] = round(out[f"after_mb{suffix}"] - out["before_mb"], 1)
                out[f"after_expiry_growth_mb{suffix}"] = round(out[f"after_expiry_mb{suffix}"] - out["before_mb"], 1)
            return out
    finally:
        stop_app(app, tmp)


def stop_app(app: subprocess.Popen, tmp: Path) -> None:
    app.terminate()
    try:
        app.wait(120)
    except subprocess.TimeoutExpired:  # a loaded machine: the figures are taken, so do not lose them to the stop
        app.kill()
        app.wait(30)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(main(*(int(a) for a in (sys.argv[1:] or ["1000", "20"]))), indent=1))
