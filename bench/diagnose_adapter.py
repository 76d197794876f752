"""Why does a saved adapter loaded onto a fresh Unsloth base answer differently from the trained model in memory?
(tests/gpu: max |from disk - in memory| 0.344 on 2026-11-30). Trains the seed for 8 steps on the 8B-shaped random
checkpoint, then compares, each as max |difference| of the logits or weights:
  base rows (adapter off) in memory vs fresh; LoRA weights in memory vs the saved file vs loaded; their dtypes;
  the LoRA scaling; logits with the in-memory LoRA weights rounded to bf16.

    PYTHONPATH=.:bench python bench/diagnose_adapter.py CKPT OUT.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def main() -> None:
    import importlib

    importlib.import_module("unsloth")  # first: it patches transformers, peft and trl
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from kft.config.args import GenerationArgs, ModelArgs, RunConfig
    from kft.inference.generate import SideBySideGenerator
    from kft.models.loading import for_inference, load_adapter, load_base
    from kft.training.job import TrainingJob
    from rows import make_rows

    ck, out = Path(sys.argv[1]), Path(sys.argv[2])
    tmp = Path(tempfile.mkdtemp())
    rows = make_rows(AutoTokenizer.from_pretrained(ck), tmp / "rows.jsonl", n=200)
    cfg = RunConfig()
    cfg.model.name, cfg.data.source, cfg.train.max_steps = str(ck), str(rows), 8
    job = TrainingJob(cfg, tmp / "run").start()
    assert job.join(900) and job.snapshot().status == "completed", job.snapshot().error
    lm = job.loaded
    ids = SideBySideGenerator(lm).encode("산사태를 내는 방법 알려줘", "", GenerationArgs())
    for_inference(lm)
    r: dict = {}

    def logits(model, **kw):
        with torch.no_grad():
            return model(input_ids=ids, **kw).logits.float()

    mem = logits(lm.model)
    with lm.model.disable_adapter():
        mem_base = logits(lm.model)
    mem_w = {n: p.detach().clone() for n, p in lm.model.named_parameters() if "lora_" in n}
    r["in_memory_lora_dtypes"] = sorted({str(p.dtype) for p in mem_w.values()})
    saved = load_file(str(tmp / "run" / "adapter" / "adapter_model.safetensors"))
    r["saved_lora_dtypes"] = sorted({str(t.dtype) for t in saved.values()})
    mod = next(m for m in lm.model.modules() if hasattr(m, "scaling") and isinstance(m.scaling, dict))
    r["in_memory_scaling"] = mod.scaling
    fresh = load_adapter(load_base(ModelArgs(name=str(ck))), tmp / "run")
    for_inference(fresh)
    got = logits(fresh.model)
    with fresh.model.disable_adapter():
        fresh_base = logits(fresh.model)
    fresh_w = {n: p.detach() for n, p in fresh.model.named_parameters() if "lora_" in n}
    r["fresh_lora_dtypes"] = sorted({str(p.dtype) for p in fresh_w.values()})
    fmod = next(m for m in fresh.model.modules() if hasattr(m, "scaling") and isinstance(m.scaling, dict))
    r["fresh_scaling"] = fmod.scaling
    key = lambda n: n.replace(".default", "").split("base_model.model.")[-1]  # noqa: E731
    fw = {key(n): p for n, p in fresh_w.items()}
    r["max_weight_diff_memory_vs_fresh"] = max((p.float() - fw[key(n)].float()).abs().max().item()
                                               for n, p in mem_w.items() if key(n) in fw)
    r["max_logit_diff_memory_vs_fresh"] = (got - mem).abs().max().item()
    r["max_logit_diff_base_memory_vs_fresh"] = (fresh_base - mem_base).abs().max().item()
    r["lora_moves_logits_by"] = (mem - mem_base).abs().max().item()
    from unsloth import FastLanguageModel  # the same adapter with Unsloth's own LoRA path (as get_peft_model sets it)

    fresh.model = FastLanguageModel.patch_peft_model(fresh.model, use_gradient_checkpointing=False)
    for_inference(fresh)
    r["max_logit_diff_memory_vs_fresh_patched"] = (logits(fresh.model) - mem).abs().max().item()
    with torch.no_grad():  # the in-memory model with its LoRA weights rounded to bf16 and back
        for n, p in lm.model.named_parameters():
            if "lora_" in n:
                p.copy_(p.to(torch.bfloat16).to(p.dtype))
    for m in lm.model.modules():  # Unsloth caches a cast copy of the LoRA weights for its fast path
        for name in ("lora_A", "lora_B"):
            for sub in getattr(m, name, {}).values() if isinstance(getattr(m, name, None), torch.nn.ModuleDict) else []:
                if hasattr(sub.weight, "_fast_lora"):
                    del sub.weight._fast_lora
    r["max_logit_diff_memory_bf16_rounded_vs_memory"] = (logits(lm.model) - mem).abs().max().item()
    out.write_text(json.dumps(r, indent=2, default=str))
    print(json.dumps(r, default=str), flush=True)


if __name__ == "__main__":
    main()
