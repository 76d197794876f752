"""kft.training.trainer: the step without host syncs trains exactly like TRL's own SFTTrainer and logs the same numbers."""

from __future__ import annotations

import pytest

from conftest import tiny_config
from kft.config.presets import apply_preset


def _run(tmp_path, name, cfg, monkeypatch, stock: bool):
    import kft.training.trainer as lean
    from kft.training.job import TrainingJob

    if stock:
        from trl import SFTTrainer

        monkeypatch.setattr(lean, "lean_trainer_class", lambda: SFTTrainer)
    else:
        monkeypatch.undo()
    job = TrainingJob(cfg, tmp_path / name).start()
    assert job.join(600)
    assert job.snapshot().status == "completed", job.snapshot().error
    return [r for r in job.run.read_metrics() if "loss" in r]


@pytest.mark.parametrize("preset", ["seed", "fast"])
def test_the_lean_step_trains_exactly_like_trls_trainer(tmp_path, tiny_dir, monkeypatch, preset):
    """Same seed, same rows: the loss curve, gradient norms and token counts match TRL's SFTTrainer to the last bit
    (the loss is computed by the same operations in the same order). With one micro-batch per logged step (fast)
    entropy and token accuracy match too; with several (seed) kft weights them by tokens, TRL by micro-batch."""
    cfg = apply_preset(tiny_config(6), preset)
    ref = _run(tmp_path, "stock", cfg, monkeypatch, stock=True)
    got = _run(tmp_path, "lean", cfg, monkeypatch, stock=False)
    assert [r["step"] for r in got] == [r["step"] for r in ref] == list(range(1, 7))
    for a, b in zip(got, ref, strict=True):
        assert a["loss"] == b["loss"]
        assert a["grad_norm"] == b["grad_norm"]
        assert a["num_tokens"] == b["num_tokens"]
        assert a["tokens_seen"] == b["tokens_seen"]
        if preset == "fast":
            assert a["entropy"] == pytest.approx(b["entropy"], rel=1e-6)
            assert a["mean_token_accuracy"] == pytest.approx(b["mean_token_accuracy"], rel=1e-6)
        else:
            assert 0 < a["entropy"] and 0 <= a["mean_token_accuracy"] <= 1


def _reads_in_step(tmp_path, monkeypatch, stock: bool) -> list[str]:
    """Where the training loop read a tensor's value back (.item() or bool()) outside logging."""
    import traceback

    import torch

    import kft.training.sft as sft
    import kft.training.trainer as lean
    from kft.training.job import TrainingJob

    calls: list[str] = []

    def counting(original):
        def read(self, *a):
            calls.append("".join(traceback.format_stack(limit=6)))
            return original(self, *a)
        return read

    if stock:  # TRL's trainer with the Trainer's NaN filter, as before kft.training.trainer
        from trl import SFTTrainer

        monkeypatch.setattr(lean, "lean_trainer_class", lambda: SFTTrainer)
        kwargs = sft.sft_kwargs
        monkeypatch.setattr(sft, "sft_kwargs", lambda *a: {**kwargs(*a), "logging_nan_inf_filter": True})
    cfg = apply_preset(tiny_config(4), "fast")  # padding-free: no attention mask for transformers to inspect
    cfg.train.logging_steps = 2
    cfg.train.optim = "adamw_torch_fused"  # the CPU's plain Adam reads its step count with .item() per tensor
    monkeypatch.setattr(torch.Tensor, "item", counting(torch.Tensor.item))
    monkeypatch.setattr(torch.Tensor, "__bool__", counting(torch.Tensor.__bool__))
    job = TrainingJob(cfg, tmp_path / ("stock" if stock else "lean")).start()
    assert job.join(600)
    monkeypatch.undo()
    assert job.snapshot().status == "completed", job.snapshot().error
    return [c for c in calls if ("compute_loss" in c or "_run_epoch" in c) and "_maybe_log" not in c]


def test_the_lean_step_reads_nothing_back_from_the_device_between_logs(tmp_path, tiny_dir, monkeypatch):
    """Between two logs the step reads no value back (TRL's compute_loss read three per micro-batch, the Trainer's
    NaN filter two more). Counted on the CPU, where .item() and bool() are the calls that wait for a GPU."""
    assert len(_reads_in_step(tmp_path, monkeypatch, stock=True)) >= 4 * 5  # the check sees them when they are there
    assert _reads_in_step(tmp_path, monkeypatch, stock=False) == []


def _collated(model_dir, preset: str, tmp_path, pad_is_eos: bool = False):
    """(tokenizer, batch): the first micro-batch TRL's SFTTrainer builds with kft's settings, from kft's own rows."""
    from kft.data.rows import load_rows, to_text_dataset
    from kft.data.template import DEFAULT_TEMPLATE
    from kft.models.compat import ensure_trl_cpu_kernel
    from kft.models.loading import attach_lora, load_base
    from kft.training.sft import to_sft_config
    from kft.training.trainer import lean_trainer_class

    cfg = apply_preset(tiny_config(2), preset)
    cfg.model.name = str(model_dir)
    loaded = attach_lora(load_base(cfg.model), cfg.lora)
    tok = loaded.tokenizer
    if pad_is_eos:  # the tokenizer as it ships (and as kft padded it before issue 25)
        tok.pad_token = tok.eos_token
    report = load_rows(cfg.data, tok, DEFAULT_TEMPLATE, cfg.model.max_seq_length)
    dataset = to_text_dataset(report, DEFAULT_TEMPLATE, tok.eos_token)
    ensure_trl_cpu_kernel()
    trainer = lean_trainer_class()(model=loaded.model, args=to_sft_config(cfg, tmp_path / "run", None),
                                   train_dataset=dataset, processing_class=tok)
    rows = cfg.train.per_device_train_batch_size
    examples = sorted(trainer.train_dataset, key=lambda r: len(r["input_ids"]))
    examples = [examples[0], examples[-1], *examples[1:rows - 1]]  # the shortest and the longest: padding in it
    return tok, trainer.data_collator(examples), examples, cfg


@pytest.mark.parametrize("preset", ["seed", "fast"])
@pytest.mark.parametrize("kind", ["pad_is_eos", "no_pad", "shipped_pad_is_eos", "gguf_tokenizer"])
def test_the_answers_final_eos_is_a_label_and_padding_is_not(tmp_path_factory, tmp_path, preset, kind):
    """Issue 25's risk: with pad = EOS, a label mask built from token ids would drop the answer's last EOS, and the
    model would never learn to stop. Each row's last label is its EOS; every padded position is -100.
    ``gguf_tokenizer``: the real tokenizer of Qwen2.5-Coder-1.5B as rebuilt from its GGUF file (tests/data)."""
    from conftest import gguf_tokenizer_qwen_dir, tiny_qwen_dir

    if kind == "gguf_tokenizer":
        model_dir = gguf_tokenizer_qwen_dir(tmp_path_factory.mktemp(kind))
    else:
        model_dir = tiny_qwen_dir(tmp_path_factory.mktemp(kind), pad=None if kind == "no_pad" else "eos",
                                  reserved=kind != "no_pad")
    tok, batch, examples, cfg = _collated(model_dir, preset, tmp_path, pad_is_eos=kind == "shipped_pad_is_eos")
    labels, mask, ids = batch["labels"], batch["attention_mask"], batch["input_ids"]
    assert len(examples) == labels.shape[0] == cfg.train.per_device_train_batch_size
    if cfg.train.pad_to_multiple_of:
        assert labels.shape[1] % cfg.train.pad_to_multiple_of == 0
    assert (mask == 0).any(), "the batch holds no padding: nothing is tested"
    eos = tok.eos_token_id
    if kind == "gguf_tokenizer":  # <|fim_pad|>, a plain vocabulary entry of this tokenizer: no new row
        assert (tok.pad_token, tok.pad_token_id, eos) == ("<|fim_pad|>", 151662, 151643)
        assert (ids[mask == 0] == tok.pad_token_id).all()
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        assert example["input_ids"][-1] == eos and ids[row, n - 1] == eos  # the text ends with one EOS
        assert labels[row, n - 1] == eos, "the answer's final EOS is not a label"
        assert (labels[row, n:] == -100).all() and (mask[row, n:] == 0).all(), "padding is a label"
        assert (labels[row, :n] != -100).any()
