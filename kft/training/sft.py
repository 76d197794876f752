"""The run's settings as TRL's SFTConfig (pure: testable for any GPU without building one)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from ..config.args import RunConfig, specs
from ..runs.store import RunDir
from ..system.distributed import is_distributed
from ..system.hardware import resolve_dtype

logger = logging.getLogger(__name__)

AUTO_CHECKPOINTS = 10  # save_steps auto: about this many checkpoints over a run ...
AUTO_MIN_STEPS = 10  # ... at least this many steps apart
EVAL_POINTS = 10  # with a held-out share: the evaluation loss about this many times over a run


def save_kwargs(t: Any) -> dict[str, Any]:
    """The SFTConfig checkpoint settings for ``train.save_steps`` (None = auto: from the run's length)."""
    if t.save_steps == 0:
        return {"save_strategy": "no", "save_steps": 500}
    if t.save_steps:
        return {"save_strategy": "steps", "save_steps": t.save_steps}
    # by epochs the total is unknown here: a save_steps below 1 is transformers' share of the total steps
    every = max(AUTO_MIN_STEPS, math.ceil(t.max_steps / AUTO_CHECKPOINTS)) if t.max_steps > 0 else 1 / AUTO_CHECKPOINTS
    return {"save_strategy": "steps", "save_steps": every}  # train.save_total_limit keeps the newest few


def sft_kwargs(config: RunConfig, run_dir: str | Path, capability: tuple[int, int] | None) -> dict[str, Any]:
    """SFTConfig keyword arguments for this run (pure); ``sft=True`` settings pass through, the rest are below.
    padding_free: TRL concatenates a micro-batch's rows into one with position_ids restarting at every row boundary;
    the attention is block-diagonal (transformers builds it from the positions)."""
    t = config.train
    dtype = resolve_dtype(config.model.dtype, capability)
    optim = t.optim
    if capability is None and "8bit" in optim:
        logger.info("optimizer %s needs a GPU; using adamw_torch on the CPU", optim)
        optim = "adamw_torch"
    kwargs: dict[str, Any] = {s.name: getattr(t, s.name) for s in specs("train") if s.sft}
    kwargs.update(output_dir=str(RunDir(run_dir).checkpoints_dir), max_steps=t.max_steps if t.max_steps > 0 else -1,
                  optim=optim, fp16=dtype == "float16", bf16=dtype == "bfloat16", report_to="none",
                  dataset_text_field="text", max_length=config.model.max_seq_length, disable_tqdm=True,
                  dataloader_num_workers=0, dataloader_pin_memory=capability is not None,
                  # the Trainer's NaN filter reads every micro-batch's loss back from the GPU (a host sync each) and
                  # hides a NaN from the log; kft.training.job stops a run whose logged loss is not finite instead
                  logging_nan_inf_filter=False,
                  # TRL turns checkpointing on by default: on the transformers backend that overrode lora's False
                  gradient_checkpointing=bool(config.lora.use_gradient_checkpointing), **save_kwargs(t))
    if t.eval_share > 0:  # below 1: transformers' share of the total steps (known for epochs too)
        kwargs.update(eval_strategy="steps", eval_steps=1 / EVAL_POINTS,
                      per_device_eval_batch_size=t.per_device_train_batch_size)
    if is_distributed():
        # DDP through torchrun / accelerate launch: LoRA leaves no unused parameters, and no module buffer
        # (the rotary tables) changes in training, so none is broadcast before every forward
        kwargs.update(ddp_find_unused_parameters=False, ddp_broadcast_buffers=False)
    # always said: left unset, Unsloth turns padding-free on by itself (the seed recipe pads its micro-batches)
    kwargs.update(padding_free=bool(t.padding_free), pad_to_multiple_of=t.pad_to_multiple_of or None)
    if t.padding_free:
        # rows longer than max_seq_length were already dropped (or refused) by kft.data.rows
        kwargs.update(max_length=None)
    return kwargs


def to_sft_config(config: RunConfig, out_dir: Path, capability: tuple[int, int] | None):
    """TRL SFTConfig for this run."""
    from trl import SFTConfig

    return SFTConfig(**sft_kwargs(config, out_dir, capability))
