#!/bin/bash
# Device run: where the time goes (torch.profiler), the 4-bit decode matmul costs, and three training
# variants of the fast preset (checkpoints offloaded to CPU memory as now, kept on the GPU, none).
# Run through the device tool with carry [".devsite"] (built by ../shared/device/make-site.sh).
# Limits kept: each step has its own timeout and they add up to at most 560 s (the tool stops a
# command at 600 s); everything lands in $OUT/results.tgz, re-packed after every step so that a
# stop keeps what was done (the tool returns at most 8 files from $OUT).
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
W=$(mktemp -d); CK=.ckpt/llama31-8b-random
pack() { tar czf "$OUT/results.tgz" -C "$W" . ; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$W/gpu.txt"
timeout 60 python bench/checkpoint.py $CK 2>&1 | tail -1
timeout 30 python -c "
import pathlib
from rows import make_rows
from transformers import AutoTokenizer
make_rows(AutoTokenizer.from_pretrained('$CK'), pathlib.Path('.ckpt/rows.jsonl'), n=800)"
timeout 50 python bench/bench_nf4_ops.py --out "$W" > "$W/nf4_ops.log" 2>&1; grep -E "M=|Error" "$W/nf4_ops.log" | tail -6; pack
timeout 150 python bench/profile_gpu.py --model $CK --rows .ckpt/rows.jsonl --out "$W" > "$W/profile.log" 2>&1; grep -E "wall|Error" "$W/profile.log" | tail -4; pack
for p in fast_gc fast_nogc fast; do
  timeout 90 python bench/bench_train.py --path $p --model $CK --data .ckpt/rows.jsonl --steps 16 --out "$W/train_$p.json" > "$W/train_$p.log" 2>&1; tail -1 "$W/train_$p.log"
  rm -rf "$W"/train_*/; pack
done
