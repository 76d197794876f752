#!/bin/bash
# Historic: the script behind a recorded run of 2026-11-28 (docs/gpu-runs/). As a whole it may pass the
# device tool's 600 s or 8-file limits; for new runs use gpu_final.sh and gpu_profile.sh.
# Device run 1: build the 8B-shaped checkpoint (kept in .ckpt/ while the machine stays warm) and run tests/gpu.
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)" | tee "$OUT/versions.txt"
python bench/checkpoint.py .ckpt/llama31-8b-random 2>&1 | tail -3 | tee "$OUT/checkpoint.log"
timeout 480 python -m pytest -m gpu tests/gpu -v -s -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log" | grep -E "PASSED|FAILED|ERROR|max \||passed|failed|Error" | tail -30
