#!/bin/bash
# Device run (issue 13): the scorecard of the 39 presets in batches vs one prompt at a time, Unsloth, 256 tokens.
# About 6 minutes. Carry [".devsite"]. Results: $OUT/scorecard_*.json, $OUT/scorecard_log.txt.
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
CK=.ckpt/llama31-8b-random
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
timeout 90 python bench/checkpoint.py $CK 2>&1 | tail -1
timeout 420 python bench/bench_scorecard.py --model $CK --backend unsloth --single 5 \
  --out "$OUT/scorecard_unsloth.json" 2>&1 | grep -v Warning | tail -4
} 2>&1 | tee "$OUT/scorecard_log.txt"
