#!/bin/bash
# Device run: the GPU tests of the Unsloth path (the saved adapter on a fresh base, side by side). About 4 minutes.
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
timeout 90 python bench/checkpoint.py .ckpt/llama31-8b-random 2>&1 | tail -1
timeout 400 python -m pytest -m gpu tests/gpu -v -s -p no:cacheprovider -k "saved_adapter or side_by_side or unsloth_is_chosen" 2>&1 \
  | tee "$OUT/gpu_tests_adapter.log" | grep -E "PASSED|FAILED|ERROR|max \||passed|failed" | tail -12
