"""The table of profile_train.py runs: one line per (tag, path) from the JSON files in DIR; ranges as CPU/GPU ms a step.

    python bench/summarize_train.py DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("tag", "path", "status", "tokens_per_s", "step_s", "peak_reserved_gb", "first_step_s",
           "model_alone_tokens_per_s", "outside_share", "fwd_bwd_share_gpu", "data", "forward", "backward", "clip",
           "optimizer", "log", "reads_per_step")


def rows(folder: Path) -> list[dict]:
    out = []
    for f in sorted(folder.glob("*.json")):
        d = json.loads(f.read_text())
        if "path" not in d:
            continue
        tag = f.stem.split("_", 1)[0] if f.stem.startswith(("before_", "after_")) else ""
        r = d.get("ranges") or {}
        ms = {k: r.get(f"step.{k}", {}) for k in ("data", "forward", "backward", "clip", "optimizer", "log")}
        out.append({"tag": tag, "path": d["path"], "status": d.get("status"), **{k: d.get(k) for k in COLUMNS[3:10]},
                    **{k: f"{v.get('cpu_ms', 0):.0f}/{v.get('gpu_ms', 0):.0f}" if v else "" for k, v in ms.items()},
                    "reads_per_step": d.get("reads_per_step")})
    return out


def main() -> None:
    table = rows(Path(sys.argv[1]))
    print("| " + " | ".join(COLUMNS) + " |")
    for r in table:
        print("| " + " | ".join("" if r[c] is None else str(r[c]) for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
