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
python bench/summarize_generate.py "$OUT"/gen_*.json
