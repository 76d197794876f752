#!/bin/bash
# Final device run: the whole tests/gpu suite on the current code, then the profile.
export PYTHONPATH=$PWD/.devsite:$PWD HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
CK=.ckpt/llama31-8b-random
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python bench/checkpoint.py $CK 2>&1 | tail -1
timeout 300 python -m pytest -m gpu tests/gpu -v -s -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log" | grep -E "PASSED|FAILED|ERROR|max \||passed|failed" | tail -20
python -c "
import sys, pathlib; sys.path[:0] = ['bench', '.']
from rows import make_rows
from transformers import AutoTokenizer
make_rows(AutoTokenizer.from_pretrained('$CK'), pathlib.Path('.ckpt/rows.jsonl'), n=800)"
timeout 170 python bench/profile_gpu.py --model $CK --rows .ckpt/rows.jsonl --out "$OUT" 2>&1 | grep -E "wall|Error" | tail -5
for p in fast fast_gc; do
  timeout 120 python bench/bench_train.py --path $p --model $CK --data .ckpt/rows.jsonl --steps 16 --out "$OUT/train_$p.json" > "$OUT/train_$p.log" 2>&1; tail -1 "$OUT/train_$p.log"
done
rm -rf "$OUT"/train_*/
