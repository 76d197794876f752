"""One-off measurement (issue 15): the app's resident memory while a large Korean CSV upload is previewed and a
short run trains on it, and after the run. The app runs as its own process (``python app.py``, tiny model, CPU);
its RSS is sampled with psutil every 0.2 s. Usage: PYTHONPATH=.:bench python bench/upload_memory.py [MB [CHARS]]
(CHARS: each answer cut to that many characters; 50 makes issue 23's file, about 1,000,000 rows in 200 MB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from gradio_client import Client, handle_file
from sessions_memory import stop_app

from rows import korean_csv

ROOT = Path(__file__).resolve().parent.parent


class Sampler:
    """The peak RSS (MB) of a process since the last ``mark``."""

    def __init__(self, pid: int) -> None:
        self.proc, self.peak, self.stop = psutil.Process(pid), 0.0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def rss(self) -> float:
        return self.proc.memory_info().rss / 2**20

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.rss())
            except psutil.Error:
                return
            time.sleep(0.2)

    def mark(self) -> float:
        now = self.rss()
        self.peak = now
        return now


def _finished(data_dir: Path) -> str | None:
    for run_json in (data_dir / "runs").glob("*/run.json"):
        status = json.loads(run_json.read_text(encoding="utf-8")).get("status")
        if status in ("completed", "failed", "stopped"):
            return status
    return None


def main(megabytes: float, output_chars: int | None = None) -> dict[str, float | str]:
    tmp = Path(tempfile.mkdtemp(prefix="kft-upload-memory-"))
    csv_path = tmp / "big.csv"
    rows = korean_csv(csv_path, megabytes, output_chars)
    port = 7860 + os.getpid() % 1000
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    app = subprocess.Popen([sys.executable, "app.py", "--data-dir", str(tmp / "data"), "--port", str(port),
                            "--lang", "en", "--max-upload-mb", str(int(megabytes) + 10)], cwd=ROOT, env=env)
    try:
        client = None
        for _ in range(240):
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(1)
        assert client is not None, "the app did not start"
        mem = Sampler(app.pid)
        time.sleep(2)
        out: dict[str, float | str] = {"file_mb": round(csv_path.stat().st_size / 2**20, 1), "rows": rows,
                                       "start_mb": round(mem.mark(), 1)}
        t = time.time()
        md = client.predict(model="tiny", data_kind="upload", upload=handle_file(str(csv_path)), max_seq_length=512,
                            api_name="/preview_data")
        out.update(preview_s=round(time.time() - t, 1), preview_peak_mb=round(mem.peak, 1),
                   preview_head=md.splitlines()[0][:160], after_preview_mb=round(mem.mark(), 1))
        notice = client.predict(api_name="/start_training", model="tiny", data_kind="upload",
                                upload=handle_file(str(csv_path)), max_steps=2, max_seq_length=512,
                                use_gradient_checkpointing="false")
        out["start_notice"] = notice[:160]
        t = time.time()
        while (status := _finished(tmp / "data")) is None and time.time() - t < 3600:
            time.sleep(1)
        out.update(run_status=str(status), run_s=round(time.time() - t, 1), run_peak_mb=round(mem.peak, 1))
        time.sleep(5)
        out["after_run_mb"] = round(mem.rss(), 1)
        time.sleep(55)
        out["settled_60s_mb"] = round(mem.rss(), 1)
        out["preview_growth_mb"] = round(float(out["preview_peak_mb"]) - float(out["start_mb"]), 1)
        out["run_peak_minus_start_mb"] = round(float(out["run_peak_mb"]) - float(out["start_mb"]), 1)
        out["after_run_minus_start_mb"] = round(float(out["after_run_mb"]) - float(out["start_mb"]), 1)
        out["settled_minus_start_mb"] = round(float(out["settled_60s_mb"]) - float(out["start_mb"]), 1)
        client.close()
        return out
    finally:
        stop_app(app, tmp)


if __name__ == "__main__":
    print(json.dumps(main(float(sys.argv[1]) if len(sys.argv) > 1 else 200,
                          int(sys.argv[2]) if len(sys.argv) > 2 else None), ensure_ascii=False, indent=1))
