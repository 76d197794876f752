"""Decode-step matmul costs for one Llama-3.1-8B decoder layer in 4-bit (the 7 projections).

    PYTHONPATH=.:bench python bench/bench_nf4_ops.py --out DIR

For M = 1 and 2 rows (one pane, or both panes in one batch): bitsandbytes' matmul_4bit (its GEMV
kernel for one row, dequantize + GEMM for more) and a bf16 GEMM, the floor a dequantized model
would pay. This is the figure that decides whether decoding both panes as one batch of 2 can beat
two batch-1 decodes on the 4-bit weights. Times are per layer, from CUDA events over 200
calls after warm-up; x 32 gives the projections' share of one decode step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SHAPES = {"q": (4096, 4096), "k": (1024, 4096), "v": (1024, 4096), "o": (4096, 4096),
          "gate": (14336, 4096), "up": (14336, 4096), "down": (4096, 14336)}


def timed(fn, iters: int = 200) -> float:
    import torch

    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters / 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    import torch

    layers = {}
    for name, (n, k) in SHAPES.items():
        w = torch.randn(n, k, dtype=torch.bfloat16, device="cuda") / 64
        q, state = F.quantize_4bit(w, quant_type="nf4", compress_statistics=True, blocksize=64)
        layers[name] = (w, q, state)
    result: dict = {"card": torch.cuda.get_device_name(0)}
    for m in (1, 2):
        x = torch.randn(m, 4096, dtype=torch.bfloat16, device="cuda")
        xd = torch.randn(m, 14336, dtype=torch.bfloat16, device="cuda")
        inputs = {name: (xd if name == "down" else x) for name in SHAPES}
        rows = {
            "bnb_matmul_4bit": lambda inp=inputs: [bnb.matmul_4bit(inp[nm], q.t(), quant_state=s)
                                                   for nm, (_, q, s) in layers.items()],
            "bf16_gemm": lambda inp=inputs: [inp[nm] @ w.t() for nm, (w, _, _) in layers.items()],
        }
        for label, fn in rows.items():
            t = timed(fn)
            result[f"M{m}_{label}_ms_per_layer"] = round(t * 1e3, 4)
            result[f"M{m}_{label}_ms_per_token_32_layers"] = round(t * 32e3, 3)
            print(f"M={m} {label:16s} {t * 1e3:.3f} ms/layer  {t * 32e3:.2f} ms/32 layers", flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "nf4_ops.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
