"""Builds a random-weight checkpoint with Llama-3.1-8B's exact shapes, plus a tokenizer, on the GPU machine.

No real weights can be fetched there; speed and memory do not depend on the weights' values.
The tokenizer is kft's tiny byte-level BPE (4,096 ids, all below the model's 128,256): the model's
embedding and LM head keep the real vocabulary size, so compute and memory match Llama 3.1 8B.

    PYTHONPATH=.:bench python bench/checkpoint.py OUT_DIR

About 40 s on an H200 from the command (22 s of it building and writing 16 GB in four shards): give a device script's
timeout room for the imports too.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

LLAMA_31_8B = dict(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=8, max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192},
    tie_word_embeddings=False, hidden_act="silu", attention_bias=False, mlp_bias=False,
)


def build(out: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from kft.models.tiny import build_tokenizer

    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    # built beside and renamed when complete: a build killed half-way (a timeout) must not leave a directory that
    # looks like a checkpoint to the next run (it did once: three of four shards, and every later load failed)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    partial.mkdir(parents=True)
    t0 = time.time()
    tok = build_tokenizer(partial)
    config = LlamaConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         torch_dtype="bfloat16", **LLAMA_31_8B)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(partial, max_shard_size="5GB")
    del model
    torch.cuda.empty_cache()
    partial.rename(out)
    print(f"built {out} in {time.time() - t0:.1f} s", flush=True)
    return out


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else ".ckpt/llama31-8b-random"))
