#!/bin/bash
# Historic: the script behind a recorded run of 2026-11-28 (docs/gpu-runs/). As a whole it may pass the
# device tool's 600 s or 8-file limits; for new runs use gpu_final.sh and gpu_profile.sh.
# Device run 2 (machine still warm, checkpoint in .ckpt/): benchmarks, one path per process.
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
CK=.ckpt/llama31-8b-random
python bench/checkpoint.py $CK > /dev/null 2>&1
python - <<'PY'
import pathlib
from rows import make_rows
from transformers import AutoTokenizer
make_rows(AutoTokenizer.from_pretrained(".ckpt/llama31-8b-random"), pathlib.Path(".ckpt/rows.jsonl"), n=2000)
PY
for spec in ${BENCH_PATHS:-"unsloth 20" "fast 20" "baseline 14"}; do
  set -- $spec
  timeout 300 python bench/bench_train.py --path $1 --model $CK --data .ckpt/rows.jsonl --steps $2 --out "$OUT/train_$1.json" > "$OUT/train_$1.log" 2>&1
  tail -1 "$OUT/train_$1.log"
done
[ -n "$SKIP_GEN" ] || { timeout 240 python bench/bench_generate.py --model $CK --out "$OUT/generate.json" > "$OUT/generate.log" 2>&1; tail -1 "$OUT/generate.log"; }
