#!/bin/bash
# Device run 7: where the time goes (torch.profiler), the decode matmul costs, and three training
# variants of the fast preset (CPU-offloaded, GPU-kept and no gradient checkpointing).
export PYTHONPATH=$PWD/.devsite:$PWD HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
CK=.ckpt/llama31-8b-random
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python bench/checkpoint.py $CK 2>&1 | tail -1
python -c "
import sys, pathlib; sys.path[:0] = ['bench', '.']
from rows import make_rows
from transformers import AutoTokenizer
make_rows(AutoTokenizer.from_pretrained('$CK'), pathlib.Path('.ckpt/rows.jsonl'), n=800)"
timeout 60 python bench/bench_nf4_ops.py --out "$OUT" > "$OUT/nf4_ops.log" 2>&1; grep -E "M=|Error" "$OUT/nf4_ops.log" | tail -8
timeout 170 python bench/profile_gpu.py --model $CK --rows .ckpt/rows.jsonl --out "$OUT" > "$OUT/profile.log" 2>&1; grep -E "wall|Error" "$OUT/profile.log" | tail -5
for p in fast_gc fast_nogc fast; do
  timeout 100 python bench/bench_train.py --path $p --model $CK --data .ckpt/rows.jsonl --steps 16 --out "$OUT/train_$p.json" > "$OUT/train_$p.log" 2>&1; tail -1 "$OUT/train_$p.log"
done
rm -rf "$OUT"/train_*/
