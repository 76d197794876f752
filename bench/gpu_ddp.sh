#!/bin/bash
# Historic: the script behind a recorded run of 2026-11-28 (docs/gpu-runs/). As a whole it may pass the
# device tool's 600 s or 8-file limits; for new runs use gpu_final.sh and gpu_profile.sh.
# Device run on 2 GPUs: the same headless run on 1 GPU and on 2 GPUs (torchrun, DDP on transformers + PEFT + bnb),
# then the fast preset padded vs padding-free on one GPU. Per-GPU memory is sampled with nvidia-smi.
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
CK=.ckpt/llama31-8b-random
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$OUT/gpus.txt"
python bench/checkpoint.py $CK 2>&1 | tail -1
python -c "
import pathlib
from rows import make_rows
from transformers import AutoTokenizer
make_rows(AutoTokenizer.from_pretrained('$CK'), pathlib.Path('.ckpt/rows.jsonl'), n=2000)"
ARGS="--model $CK --backend transformers --data .ckpt/rows.jsonl --max-steps ${DDP_STEPS:-14}"
nvidia-smi --query-gpu=timestamp,index,memory.used --format=csv,noheader -lms 500 > "$OUT/smi_1gpu.csv" & SMI=$!
CUDA_VISIBLE_DEVICES=0 timeout 200 python -m kft train $ARGS --output-dir "$OUT/ddp_1gpu" > "$OUT/ddp_1gpu.log" 2>&1; tail -1 "$OUT/ddp_1gpu.log"
kill $SMI
nvidia-smi --query-gpu=timestamp,index,memory.used --format=csv,noheader -lms 500 > "$OUT/smi_2gpu.csv" & SMI=$!
timeout 220 torchrun --nproc_per_node 2 -m kft train $ARGS --output-dir "$OUT/ddp_2gpu" > "$OUT/ddp_2gpu.log" 2>&1; tail -1 "$OUT/ddp_2gpu.log"
kill $SMI
CUDA_VISIBLE_DEVICES=0 timeout 150 python bench/bench_train.py --path fast_padded --model $CK --data .ckpt/rows.jsonl --steps 20 --out "$OUT/train_fast_padded.json" > "$OUT/train_fast_padded.log" 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout 150 python bench/bench_train.py --path fast --model $CK --data .ckpt/rows.jsonl --steps 20 --out "$OUT/train_fast.json" > "$OUT/train_fast.log" 2>&1
wait; tail -1 "$OUT/train_fast_padded.log"; tail -1 "$OUT/train_fast.log"
python bench/summarize_ddp.py "$OUT"
rm -rf "$OUT"/ddp_*/adapter "$OUT"/ddp_*/checkpoints "$OUT"/train_*/
