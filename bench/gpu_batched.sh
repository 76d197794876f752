#!/bin/bash
# Device run (issue 13): both panes as one batch vs taking turns, 256 tokens a pane, on both backends, with the
# base row's exactness. About 6 minutes. Carry [".devsite"]. Results: $OUT/gen_*.json, $OUT/log.txt.
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
CK=.ckpt/llama31-8b-random
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
timeout 90 python bench/checkpoint.py $CK 2>&1 | tail -1
timeout 220 python bench/bench_generate.py --model $CK --backend transformers --tokens 256 --runs batched,turn8 \
  --out "$OUT/gen_transformers_batched.json" 2>&1 | grep -v Warning | tail -3
timeout 200 python bench/bench_generate.py --model $CK --backend unsloth --tokens 256 --runs batched,turn8 \
  --out "$OUT/gen_unsloth_batched.json" 2>&1 | grep -v Warning | tail -3
} 2>&1 | tee "$OUT/log.txt"
python - "$OUT" <<'PY'
import json, sys, pathlib
for f in sorted(pathlib.Path(sys.argv[1]).glob("gen_*.json")):
    r = json.loads(f.read_text())
    for k, v in r.items():
        if k.startswith("side_by_side"):
            print(f"{r['backend']:12} {k:24}", {p: v.get(p, {}).get("tokens_per_s") for p in ("base", "lora")},
                  {p: v.get(p, {}).get("ttft_s") for p in ("base", "lora")}, v.get("wall_s", v.get("error")))
    print(f"{r['backend']:12} exactness", r.get("batched_exactness"))
PY
