#!/bin/bash
# Second device run for issue 13 (one H200, about 2.5 minutes): the captured decode step after the position fix
# (transformers' static layers count their own write positions; see kft/inference/decode.py). 1) the GPU test in bf16: graph
# vs eager over 12 steps and the base row vs the adapter-free model; 2) bench_generate: the static cache sized to the
# request (512 for 256 tokens) and at max_seq_length, 256 tokens a pane; 3) the GPU test in fp16 (a T4's dtype).
# The growing-cache baseline is the first run's (docs/gpu-runs/2026-11-30/issue13/run1_static/, same card, same day).
# Carry [".devsite"].
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
CK=.ckpt/llama31-8b-random
T="-m gpu tests/gpu -v -s -p no:cacheprovider"
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; date -u
timeout 60 python bench/checkpoint.py $CK 2>&1 | tail -1
timeout 50 python -m pytest $T -k "captured_decode and bfloat16" > "$OUT/gpu_test_bf16.log" 2>&1
grep -E "graph vs|PASSED|FAILED|^E " "$OUT/gpu_test_bf16.log" | tail -4
timeout 60 python bench/bench_generate.py --model $CK --backend transformers --tokens 256 --runs batched,batched_full \
  --out "$OUT/gen_transformers_static_fixed.json" > "$OUT/gen_static_fixed.log" 2>&1
grep -iE "captur|error" "$OUT/gen_static_fixed.log" | tail -3
timeout 40 python -m pytest $T -k "captured_decode and not bfloat16" > "$OUT/gpu_test_fp16.log" 2>&1
grep -E "graph vs|PASSED|FAILED|^E " "$OUT/gpu_test_fp16.log" | tail -4
date -u
} 2>&1 | tee "$OUT/log.txt"
python bench/summarize_generate.py "$OUT/gen_transformers_static_fixed.json"
