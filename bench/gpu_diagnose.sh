#!/bin/bash
# Device run (issue 13): why a saved adapter on a fresh Unsloth base differs from the trained model. About 4 minutes.
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
CK=.ckpt/llama31-8b-random
{ timeout 90 python bench/checkpoint.py $CK 2>&1 | tail -1
  timeout 400 python bench/diagnose_adapter.py $CK "$OUT/adapter_diagnosis.json" 2>&1 | grep -v Warning | tail -6
} 2>&1 | tee "$OUT/adapter_diagnosis_log.txt"
