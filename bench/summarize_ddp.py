"""Summarize a 1-GPU vs 2-GPU pair of ``python -m kft train`` runs: tokens/s, s/step, peak memory per GPU, losses.

    python bench/summarize_ddp.py DIR   # DIR holds the run directories ddp_1gpu/, ddp_2gpu/ and the nvidia-smi
                                        # samples smi_1gpu.csv, smi_2gpu.csv (as in docs/gpu-runs/); writes ddp_summary.json
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

WARM = 5


def steady(run: Path) -> dict:
    rows = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    w, z = rows[WARM - 1], rows[-1]
    dt = z["time"] - w["time"]
    return {"steps": len(rows), "s_per_step": round(dt / (z["step"] - w["step"]), 3),
            "tokens_per_s": round((z["tokens_seen"] - w["tokens_seen"]) / dt, 1),
            "losses": [round(r["loss"], 4) for r in rows], "status": json.loads((run / "run.json").read_text())["status"]}


def peak_per_gpu(csv: Path) -> dict:
    peak: dict[str, float] = collections.defaultdict(float)
    for line in csv.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[2].endswith("MiB"):
            peak[parts[1]] = max(peak[parts[1]], float(parts[2].split()[0]) / 1024)
    return {f"gpu{k}": round(v, 2) for k, v in sorted(peak.items())}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    result = {}
    for name in ("1gpu", "2gpu"):
        try:
            result[name] = steady(out / f"ddp_{name}") | {"peak_used_gb": peak_per_gpu(out / f"smi_{name}.csv")}
        except Exception as exc:  # noqa: BLE001
            result[name] = {"error": str(exc)}
    if "tokens_per_s" in result["1gpu"] and "tokens_per_s" in result["2gpu"]:
        result["speedup"] = round(result["2gpu"]["tokens_per_s"] / result["1gpu"]["tokens_per_s"], 2)
    (out / "ddp_summary.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
