#!/bin/bash
# Device run for issue 14 on two H200s (nvidia-h200-x2): where a training step goes, before and after, same run.
#   GPU 0: the code before (kft from .baseline/, a `git archive` of the commit named in BASELINE), then the
#          transformers backend after;  GPU 1: the Unsloth variants after.
# bench/profile_train.py runs several paths in one process (one import of unsloth, one compile) and writes one JSON
# per path. Carry [".devsite", ".baseline"] (.devsite from ../shared/device/make-site.sh). Each process has its own
# timeout; both GPUs' chains end by 500 s, leaving time to pack (the tool stops a command at 600 s).
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 KFT_CACHE=$PWD/.cache-kft TOKENIZERS_PARALLELISM=false
NEW=$PWD/.devsite:$PWD:$PWD/bench
OLD=$PWD/.devsite:$PWD/.baseline:$PWD/bench
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
W=$(mktemp -d); CK=.ckpt/llama31-8b-random; ROWS=.ckpt/rows.jsonl
pack() { tar czf "$OUT/results.tgz" -C "$W" --exclude='profile-*' . ; }
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader | tee "$W/gpu.txt"
PYTHONPATH=$NEW timeout 70 python bench/checkpoint.py $CK 2>&1 | tail -1
PYTHONPATH=$NEW timeout 30 python -c "
import pathlib
from rows import make_rows
from transformers import AutoTokenizer
make_rows(AutoTokenizer.from_pretrained('$CK'), pathlib.Path('$ROWS'), n=800)"
P="--model $CK --data $ROWS --out $W"
(
  export CUDA_VISIBLE_DEVICES=0
  PYTHONPATH=$OLD timeout 170 python bench/profile_train.py --tag before --paths ${U_BEFORE:-unsloth,fast} $P > "$W/before_unsloth.log" 2>&1
  PYTHONPATH=$OLD timeout 150 python bench/profile_train.py --tag before --steps 12 --paths ${T_BEFORE:-tf_seed,tf_fast} $P > "$W/before_tf.log" 2>&1
  PYTHONPATH=$NEW timeout 160 python bench/profile_train.py --tag after --steps 12 --paths ${T_AFTER:-tf_seed,tf_fast,tf_fast+gc=16} $P > "$W/after_tf.log" 2>&1
) &
(
  export CUDA_VISIBLE_DEVICES=1
  PYTHONPATH=$NEW timeout 460 python bench/profile_train.py --tag after \
    --paths ${U_AFTER:-unsloth,fast,fast+gc=16,fast+padded+gc=16,fast+gpu_gc,fast+padded+gpu_gc,fast+gc=16+fused,fast+padded+gc=8+fused,unsloth+gpu_gc} \
    $P > "$W/after_unsloth.log" 2>&1
) &
wait
pack
grep -hE "^[a-z_]+[^ ]*: " "$W"/*.log | cut -c1-400
PYTHONPATH=$NEW python bench/summarize_train.py "$W" | tee "$W/summary.txt"
pack
