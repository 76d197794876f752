"""A short table of bench_generate.py results, for the last lines of a device script's output.

    python bench/summarize_generate.py OUT/gen_*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(files: list[str]) -> None:
    for f in files:
        path = Path(f)
        if not path.is_file():
            print(f"{path.name}: missing")
            continue
        r = json.loads(path.read_text())
        for k, v in r.items():
            if k.startswith("side_by_side"):
                print(f"{r.get('backend', ''):12} {k:30}", {p: v.get(p, {}).get("tokens_per_s") for p in ("base", "lora")},
                      {p: v.get(p, {}).get("ttft_s") for p in ("base", "lora")}, v.get("wall_s", v.get("error")),
                      v.get("memory_gb", ""), v.get("static", ""))
        for k in ("batched_exactness", "padded_batch_exactness"):
            if k in r:
                print(f"{r.get('backend', ''):12} {k}", r[k])


if __name__ == "__main__":
    main(sys.argv[1:])
