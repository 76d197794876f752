"""The offline tiny Llama: a byte-level BPE tokenizer trained on the bundled sample and a small random
LlamaForCausalLM, built deterministically and cached on disk. For tests, CI and the CPU demo; no network."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..data.rows import SAMPLE_PATH
from ..data.template import KOREAN_ALPACA

logger = logging.getLogger(__name__)

TINY_VERSION = 1
TINY_SHAPE = {"hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 2048}
VOCAB_SIZE = 4096
BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>"


def cache_root() -> Path:
    return Path(os.environ.get("KFT_CACHE", Path.home() / ".cache" / "kft"))


def _fingerprint() -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": TINY_VERSION, "shape": TINY_SHAPE, "vocab": VOCAB_SIZE}, sort_keys=True).encode())
    h.update(SAMPLE_PATH.read_bytes())
    return h.hexdigest()[:12]


def _corpus() -> list[str]:
    rows = [json.loads(line) for line in SAMPLE_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [r.get(k, "") for r in rows for k in ("instruction", "input", "output")]
    return [t for t in [*texts, KOREAN_ALPACA] if t]


def build_tokenizer(out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[BOS, EOS, PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, bos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   model_max_length=TINY_SHAPE["max_position_embeddings"])
    fast.save_pretrained(out_dir)
    return fast


def build_tiny(out_dir: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(out_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False, rope_theta=500000.0, **TINY_SHAPE)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    return out_dir


def tiny_model_dir() -> Path:
    """Directory of the tiny model, building it on first use (a few seconds)."""
    target = cache_root() / f"tiny-llama-{_fingerprint()}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tiny-", dir=target.parent))
    try:
        build_tiny(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built the tiny offline Llama at %s", target)
    return target
