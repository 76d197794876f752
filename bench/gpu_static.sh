#!/bin/bash
# Device run for issue 13 (one H200, about 4 minutes): the transformers + PEFT + bitsandbytes backend only (this
# process never imports unsloth). 1) the GPU test of kft.decode's captured decode step (graph vs eager, base row vs
# the adapter-free model); 2) bench_generate: both panes as one batch through the static cache and captured step
# vs the growing-cache eager batch (the path before), 256 tokens a pane. Carry [".devsite"] (bitsandbytes).
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
CK=.ckpt/llama31-8b-random
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 70 python bench/checkpoint.py $CK 2>&1 | tail -1
timeout 150 python -m pytest -m gpu tests/gpu -k captured_decode -v -s -p no:cacheprovider 2>&1 | tee "$OUT/gpu_test_static.log" | grep -E "graph vs|PASSED|FAILED|Error" | tail -5
timeout 200 python bench/bench_generate.py --model $CK --backend transformers --tokens 256 --runs batched,batched_dynamic \
  --out "$OUT/gen_transformers_static.json" > "$OUT/gen_static.log" 2>&1; tail -c 1500 "$OUT/gen_static.log"
