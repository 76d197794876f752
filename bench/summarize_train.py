"""The table of a profile_train.py run: one line per (tag, path), from the JSON files in a directory.

    python bench/summarize_train.py DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("tag", "path", "status", "tokens_per_s", "step_s", "peak_reserved_gb", "first_step_s",
           "model_alone_tokens_per_s", "outside_share", "forward", "backward", "optimizer", "log", "syncs")


def rows(folder: Path) -> list[dict]:
    out = []
    for f in sorted(folder.glob("*.json")):
        d = json.loads(f.read_text())
        if "path" not in d:
            continue
        tag = f.stem.split("_", 1)[0] if f.stem.startswith(("before_", "after_")) else ""
        r = d.get("ranges") or {}
        syncs = d.get("host_syncs_per_step") or {}
        out.append({"tag": tag, "path": d["path"], "status": d.get("status"), **{k: d.get(k) for k in COLUMNS[3:9]},
                    **{k: r.get(f"step.{k}", {}).get("cpu_ms") for k in ("forward", "backward", "optimizer", "log")},
                    "syncs": syncs.get("aten::_local_scalar_dense", 0) + syncs.get("aten::nonzero", 0)})
    return out


def main() -> None:
    table = rows(Path(sys.argv[1]))
    print("| " + " | ".join(COLUMNS) + " |")
    for r in table:
        print("| " + " | ".join("" if r[c] is None else str(r[c]) for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
