#!/bin/bash
# Issue 22 on the GPU machine, in one command: the 8B-shaped checkpoint, then (stage "tests") tests/gpu in one process
# with Unsloth imported first, or (stage "bench") bench_generate.py on both backends and, as the same-run baseline,
# the comparison's paths before the engine (kft at 17b9b19, carried as .baseline/). A short table last; raw files
# under $OUT.
#   carry [".devsite", ".baseline"]; command: bash bench/gpu_engine.sh tests|bench|engine (bench without the baseline)
set -u
stage=${1:-tests}
export PYTHONPATH=$PWD/.devsite:$PWD:$PWD/bench HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/kft-out}; mkdir -p "$OUT"
CK=$PWD/.ckpt/llama31-8b-random
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/card.txt" 2>&1
[ -f "$CK/config.json" ] || timeout 150 python bench/checkpoint.py "$CK" > "$OUT/checkpoint_$stage.log" 2>&1
if [ "$stage" = tests ]; then
  KFT_GPU_MODEL=$CK timeout ${TESTS_TIMEOUT:-520} python -m pytest -m gpu tests/gpu -v -s -p no:cacheprovider --timeout 500 \
    > "$OUT/gpu_tests.log" 2>&1
  echo "gpu tests rc=$?"; grep -E "PASSED|FAILED|ERROR|passed|failed|replay vs eager|skipped" "$OUT/gpu_tests.log" | tail -25
else
  run() { local name=$1; shift; local t0=$SECONDS; timeout "$@" > "$OUT/$name.log" 2>&1; echo "$name rc=$? in $((SECONDS - t0)) s"; }
  run gen_transformers 170 python bench/bench_generate.py --model "$CK" --backend transformers --tokens 256 \
    --scorecard --out "$OUT/gen_transformers.json"
  run gen_unsloth 170 python bench/bench_generate.py --model "$CK" --backend unsloth --tokens 256 \
    --out "$OUT/gen_unsloth.json"
  [ "$stage" = bench ] && (cd .baseline && PYTHONPATH=$PWD/../.devsite:$PWD:$PWD/bench run baseline_transformers 110 python \
    bench/bench_generate.py --model "$CK" --backend transformers --tokens 256 --runs batched \
    --out "$OUT/baseline_transformers.json")
  [ "$stage" = bench ] && (cd .baseline && PYTHONPATH=$PWD/../.devsite:$PWD:$PWD/bench run baseline_unsloth 130 python \
    bench/bench_generate.py --model "$CK" --backend unsloth --tokens 256 --runs turn8 \
    --out "$OUT/baseline_unsloth.json")
  python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else {}
for b in ("transformers", "unsloth"):
    r = load(f"gen_{b}")
    e, f, g = r.get("engine", {}), r.get("first_request_after_load", {}), r.get("generic_baseline", {})
    prof = r.get("step_profile", {})
    print(f"{b}: engine {e.get('base', {}).get('tokens_per_s')} / {e.get('lora', {}).get('tokens_per_s')} tok/s, "
          f"ttft {e.get('base', {}).get('ttft_s')} s; first request ttft {f.get('base', {}).get('ttft_s')} s; "
          f"generic {g.get('base', {}).get('tokens_per_s')} tok/s; graph {prof.get('graph')}; "
          f"kernels eager {prof.get('eager', {}).get('kernels')} replay {prof.get('replayed', {}).get('kernels')}; "
          f"gpu ms {prof.get('replayed', {}).get('gpu_ms')}; replay wall {prof.get('replay_ms')} ms; "
          f"cache2048 {r.get('cache_2_rows_2048_gb')} GB; errors {[k for k, v in r.items() if isinstance(v, dict) and 'error' in v]}")
    if "scorecard" in r:
        print("  scorecard", r["scorecard"])
bt, bu = load("baseline_transformers"), load("baseline_unsloth")
print("baseline transformers static", bt.get("side_by_side_batched", {}).get("base"), bt.get("side_by_side_batched", {}).get("static"))
print("baseline unsloth turn8", bu.get("side_by_side_turn8", {}).get("base"))
for b in ("transformers", "unsloth"):
    print(b, "exactness", load(f"gen_{b}").get("exactness"))
PY
fi
