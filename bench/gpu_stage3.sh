#!/bin/bash
# Historic: the script behind a recorded run of 2026-11-28 (docs/gpu-runs/). As a whole it may pass the
# device tool's 600 s or 8-file limits; for new runs use gpu_final.sh and gpu_profile.sh.
# Device run 3: the side-by-side GPU test again (after the Unsloth tuple fix) and the generation benchmark.
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
CK=.ckpt/llama31-8b-random
python bench/checkpoint.py $CK 2>&1 | tail -1
timeout 200 python bench/bench_generate.py --model $CK --out "$OUT/generate.json" > "$OUT/generate.log" 2>&1; tail -1 "$OUT/generate.log"
UNSLOTH_DECODE_CUDA_GRAPHS=1 timeout 150 python bench/bench_generate.py --model $CK --out "$OUT/generate_graphs.json" > "$OUT/generate_graphs.log" 2>&1; tail -1 "$OUT/generate_graphs.log"
timeout 200 python -m pytest -m gpu tests/gpu -v -s -p no:cacheprovider -k "side_by_side or seed_run" 2>&1 | tee "$OUT/gpu_tests_generate.log" | grep -E "PASSED|FAILED|ERROR|max \||passed|failed|Error" | tail -20
