#!/bin/bash
# Device run: the whole tests/gpu suite on the current code (about 250 s; at most 360 s here).
# Run through the device tool with carry [".devsite"] (built by ../shared/device/make-site.sh).
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
CK=.ckpt/llama31-8b-random
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 60 python bench/checkpoint.py $CK 2>&1 | tail -1
timeout 300 python -m pytest -m gpu tests/gpu -v -s -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log" | grep -E "PASSED|FAILED|ERROR|max \||passed|failed" | tail -20
