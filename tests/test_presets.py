"""The fast preset: same rows per optimizer step as the seed in one micro-batch; padding-free rows see no other row."""

import json

import torch

from conftest import tiny_config
from kft.config.args import RunConfig
from kft.config.presets import apply_preset
from kft.training.job import TrainingJob, sft_kwargs


def test_fast_preset_keeps_rows_per_step_in_one_micro_batch_and_seed_restores_the_recipe(tmp_path):
    cfg = apply_preset(RunConfig(), "fast")
    t = cfg.train
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps, t.padding_free, t.preset) == (8, 1, False, "fast")
    assert (t.optim, t.pad_to_multiple_of, cfg.lora.use_gradient_checkpointing) == ("adamw_torch_fused", 64, True)
    kwargs = sft_kwargs(cfg, tmp_path, (9, 0))
    assert (kwargs["padding_free"], kwargs["pad_to_multiple_of"], kwargs["optim"], kwargs["gradient_checkpointing"]) \
        == (False, 64, "adamw_torch_fused", True)
    back = apply_preset(cfg, "seed")
    assert back.train == RunConfig().train and back.lora == RunConfig().lora  # the recipe, field for field


def _losses(tmp_path, name, preset):
    cfg = apply_preset(tiny_config(4), preset)
    cfg.train.learning_rate = 1e-3
    job = TrainingJob(cfg, tmp_path / name).start()
    assert job.join(300) and job.snapshot().status == "completed", job.snapshot().error
    rows = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r], [r["tokens_seen"] for r in rows if "loss" in r]


def test_fast_preset_loss_matches_the_seed_on_the_same_rows(tmp_path, tiny_dir):
    seed_loss, seed_tokens = _losses(tmp_path, "seed", "seed")
    fast_loss, fast_tokens = _losses(tmp_path, "fast", "fast")
    assert len(seed_loss) == len(fast_loss) == 4
    # Stated tolerance: 1e-3 relative per step (same rows, token-weighted mean; float summation order differs).
    for a, b in zip(seed_loss, fast_loss, strict=True):
        assert abs(a - b) <= 1e-3 * abs(a), (seed_loss, fast_loss)
    # the same rows trained: the same real tokens per step, whether 4 padded micro-batches or one packed batch
    assert fast_tokens == seed_tokens


def test_no_row_attends_to_another_in_a_padding_free_batch(tiny_dir):
    """Per-token logits of each row inside a padding-free micro-batch equal the row run alone."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    texts = ["안녕하세요 반갑습니다", "산사태가 일어나는 원인을 알려 주세요", "불이 났을 때 대피하는 방법"]
    examples = [{"input_ids": tok(t)["input_ids"]} for t in texts]
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)(examples)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        start = 0
        for ex in examples:
            n = len(ex["input_ids"])
            alone = model(input_ids=torch.tensor([ex["input_ids"]]), use_cache=False).logits[0]
            torch.testing.assert_close(packed[start:start + n], alone, atol=1e-5, rtol=1e-5)
            start += n


def test_cli_preset_flag_applies_the_preset_and_explicit_flags_win():
    from kft.cli import build_parser, config_from_args

    ns = build_parser().parse_args(["train", "--preset", "fast"])
    cfg = config_from_args(ns, ["model", "lora", "data", "train"])
    t = cfg.train
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps, t.optim) == (8, 1, "adamw_torch_fused")
    assert cfg.lora.use_gradient_checkpointing is True
    ns = build_parser().parse_args(["train", "--preset", "fast", "--per-device-train-batch-size", "4"])
    assert config_from_args(ns, ["train"]).train.per_device_train_batch_size == 4
