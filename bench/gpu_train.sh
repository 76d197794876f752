#!/bin/bash
# Device run for issue 14 on two H200s (nvidia-h200-x2), before and after in the same run:
#   GPU 0: the code before (kft from .baseline/, a `git archive` of the commit before the work) on Unsloth, then the
#          seed configuration through `python -m kft train` on one GPU (the DDP baseline);
#   GPU 1: the Unsloth variants after (bench/profile_train.py: several paths in one process, one JSON each);
#   then both: the same `python -m kft train` under torchrun on two GPUs.
# Carry [".devsite", ".baseline"] (.devsite from ../shared/device/make-site.sh). Each process has its own timeout;
# the whole ends by about 540 s (the tool stops a command at 600 s). Results in $OUT/results.tgz.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft TOKENIZERS_PARALLELISM=false
NEW=$PWD/.devsite:$PWD:$PWD/bench
OLD=$PWD/.devsite:$PWD/.baseline:$PWD/bench
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
W=$(mktemp -d); CK=.ckpt/llama31-8b-random; ROWS=.ckpt/rows.jsonl
pack() { tar czf "$OUT/results.tgz" -C "$W" --exclude='profile-*' --exclude='adapter' --exclude='checkpoints' . ; }
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader | tee "$W/gpu.txt"
PYTHONPATH=$NEW timeout 70 python bench/checkpoint.py $CK 2>&1 | tail -1
PYTHONPATH=$NEW timeout 30 python -c "
import pathlib
from rows import make_rows
from transformers import AutoTokenizer
make_rows(AutoTokenizer.from_pretrained('$CK'), pathlib.Path('$ROWS'), n=800)"
P="--model $CK --data $ROWS --out $W"
DDP="--model $CK --backend transformers --data $ROWS --max-steps ${DDP_STEPS:-14}"
(
  export CUDA_VISIBLE_DEVICES=0
  PYTHONPATH=$OLD timeout 180 python bench/profile_train.py --tag before --paths ${U_BEFORE:-unsloth,fast} $P > "$W/before_unsloth.log" 2>&1
  nvidia-smi --query-gpu=timestamp,index,memory.used --format=csv,noheader -lms 500 -i 0 > "$W/smi_1gpu.csv" & SMI=$!
  PYTHONPATH=$NEW timeout 110 python -m kft train $DDP --output-dir "$W/ddp_1gpu" > "$W/ddp_1gpu.log" 2>&1
  kill $SMI
) &
(
  export CUDA_VISIBLE_DEVICES=1
  PYTHONPATH=$NEW timeout 390 python bench/profile_train.py --tag after \
    --paths ${U_AFTER:-fast+padded+gc=20,unsloth,fast,fast+padded+gpu_gc,fast+padded+gc=24,fast+padded+gc=20+fused} \
    $P > "$W/after_unsloth.log" 2>&1
) &
wait
pack
nvidia-smi --query-gpu=timestamp,index,memory.used --format=csv,noheader -lms 500 > "$W/smi_2gpu.csv" & SMI=$!
PYTHONPATH=$NEW timeout 120 torchrun --nproc_per_node 2 -m kft train $DDP --output-dir "$W/ddp_2gpu" > "$W/ddp_2gpu.log" 2>&1
kill $SMI
PYTHONPATH=$NEW python bench/summarize_ddp.py "$W" > /dev/null
pack
grep -hE "^[a-z_]+[^ ]*: " "$W"/*.log | cut -c1-300
PYTHONPATH=$NEW python bench/summarize_train.py "$W" | tee "$W/summary.txt"
cat "$W/ddp_summary.json" | cut -c1-600
pack
