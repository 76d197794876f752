#!/bin/bash
# Device run for issue 13 (one H200, about 4 minutes): the transformers + PEFT + bitsandbytes backend only (this
# process never imports unsloth). 1) the GPU test of kft.inference.decode's captured decode step (graph vs eager, base row vs
# the adapter-free model); 2) bench_generate: both panes as one batch through the static cache and captured step
# vs the growing-cache eager batch (the path before), 256 tokens a pane, with the static cache's memory and the GPU
# time of one replayed step. Carry [".devsite"] (bitsandbytes). Prints a short table last.
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
CK=.ckpt/llama31-8b-random
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
date -u
timeout 60 python bench/checkpoint.py $CK 2>&1 | tail -1
timeout 140 python -m pytest -m gpu tests/gpu -k captured_decode -v -s -p no:cacheprovider > "$OUT/gpu_test_static.log" 2>&1
grep -E "graph vs|PASSED|FAILED|Error|error" "$OUT/gpu_test_static.log" | tail -8
timeout 170 python bench/bench_generate.py --model $CK --backend transformers --tokens 256 --runs batched,batched_dynamic --padded \
  --out "$OUT/gen_transformers_static.json" > "$OUT/gen_static.log" 2>&1
grep -iE "captur|warn|error" "$OUT/gen_static.log" | grep -v "Warning: " | tail -5
date -u
} 2>&1 | tee "$OUT/log.txt"
python bench/summarize_generate.py "$OUT/gen_transformers_static.json"
