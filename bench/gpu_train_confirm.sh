#!/bin/bash
# Device run for issue 14 on two H200s (nvidia-h200-x2), after bench/gpu_train.sh chose the fast preset:
#   GPU 0: the new fast preset on Unsloth in a fresh process (first step with compilation, memory with nothing
#          else loaded before), then the transformers + PEFT backend's seed and fast presets (the DDP baseline);
#   GPU 1: the GPU tests (tests/gpu) on this code;
#   then both: the seed on the transformers backend under torchrun, DDP as kft sets it and with static_graph and one
#   256 MB bucket, the step's ranges on each rank.
# Carry [".devsite"] (from ../shared/device/make-site.sh). Ends by about 540 s. Results in $OUT/results.tgz.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft TOKENIZERS_PARALLELISM=false
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
W=$(mktemp -d); CK=.ckpt/llama31-8b-random; ROWS=.ckpt/rows.jsonl
pack() { tar czf "$OUT/results.tgz" -C "$W" --exclude='profile-*' . ; }
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader | tee "$W/gpu.txt"
timeout 70 python bench/checkpoint.py $CK 2>&1 | tail -1
timeout 30 python -c "
import pathlib
from rows import make_rows
from transformers import AutoTokenizer
make_rows(AutoTokenizer.from_pretrained('$CK'), pathlib.Path('$ROWS'), n=800)"
P="--model $CK --data $ROWS --out $W"
(
  export CUDA_VISIBLE_DEVICES=0
  timeout 150 python bench/profile_train.py --tag after --paths fast $P > "$W/after_fast_fresh.log" 2>&1
  timeout 170 python bench/profile_train.py --tag after --steps 12 --paths tf_seed,tf_fast $P > "$W/after_tf.log" 2>&1
) &
(
  export CUDA_VISIBLE_DEVICES=1
  timeout 280 python -m pytest -m gpu tests/gpu -v -s -p no:cacheprovider > "$W/gpu_tests.log" 2>&1
) &
wait
pack
mkdir -p "$W/ddp"
KFT_RUN_ID=ddp timeout 200 torchrun --nproc_per_node 2 bench/profile_train.py --tag ddp --steps 12 \
  --paths tf_seed,tf_seed+ddp_static+ddp_bucket=256 --model $CK --data $ROWS --out "$W/ddp" > "$W/ddp.log" 2>&1
pack
grep -E "PASSED|FAILED|ERROR|max \||passed|failed" "$W/gpu_tests.log" | tail -12 | cut -c1-250
grep -hE "^[a-z_]+[^ ]*: " "$W"/*.log | cut -c1-300
python bench/summarize_train.py "$W" | tee "$W/summary.txt"
python bench/summarize_train.py "$W/ddp" | tee "$W/summary_ddp.txt"
pack
