#!/bin/bash
# Device run for issue 14 (nvidia-h200-x2): the fast preset with micro-batches padded to the longest row vs to a
# multiple of 64 tokens (fewer distinct lengths for Unsloth's compiled blocks), each in a fresh process, one per GPU.
# Carry [".devsite"]. About 150 s. Results in $OUT/results.tgz.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft TOKENIZERS_PARALLELISM=false
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
W=$(mktemp -d); CK=.ckpt/llama31-8b-random; ROWS=.ckpt/rows.jsonl
timeout 70 python bench/checkpoint.py $CK 2>&1 | tail -1
timeout 30 python -c "
import pathlib
from rows import make_rows
from transformers import AutoTokenizer
make_rows(AutoTokenizer.from_pretrained('$CK'), pathlib.Path('$ROWS'), n=800)"
P="--model $CK --data $ROWS --out $W --tag pad"
CUDA_VISIBLE_DEVICES=0 timeout 150 python bench/profile_train.py --paths fast $P > "$W/fast.log" 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout 150 python bench/profile_train.py --paths fast+pad=64 $P > "$W/fast_pad64.log" 2>&1 &
wait
grep -hE "^[a-z_]+[^ ]*: " "$W"/*.log | cut -c1-300
python bench/summarize_train.py "$W" | tee "$W/summary.txt"
tar czf "$OUT/results.tgz" -C "$W" --exclude='profile-*' .
