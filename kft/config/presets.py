"""Named training presets. A preset changes only the batch shape and the settings below; the run records the result.

seed: the recipe as written: micro-batch 2 x accumulation 4 = 8 rows per optimizer step, padded micro-batches,
      Unsloth's offloaded gradient checkpointing, adamw_8bit.
fast: the same 8 rows per optimizer step in ONE padded micro-batch (its length rounded up to a multiple of 64
      tokens: fewer distinct shapes for the compiled kernels), gradient checkpointing kept on the GPU
      (no copies of activations to CPU memory), and PyTorch's fused AdamW (one kernel for all the adapter's tensors
      instead of one 8-bit update per tensor). Same rows and the same token-weighted loss; the optimizer keeps its
      state in fp32 (about 0.3 GB more for an 8B model's r=16 adapter). Measured on an H200 (docs/BENCHMARKS.md,
      issue 14): Unsloth runs a padded micro-batch through its compiled decoder blocks and a padding-free one
      without them, so padded was about twice as fast there.
"""

from __future__ import annotations

from .args import RunConfig, specs

PRESET_NAMES = ("seed", "fast")
FAST_OPTIM = "adamw_torch_fused"
FAST_PAD_MULTIPLE = 64  # fewer distinct micro-batch lengths for Unsloth's compiled blocks (+7% on the H200)
# the fields a preset sets (the form updates these widgets when a preset is chosen)
PRESET_FIELDS = ("per_device_train_batch_size", "gradient_accumulation_steps", "padding_free", "pad_to_multiple_of",
                 "optim", "use_gradient_checkpointing")


def apply_preset(config: RunConfig, name: str) -> RunConfig:
    if name not in PRESET_NAMES:
        raise ValueError(f"Unknown preset {name!r}; choose one of {PRESET_NAMES}")
    t, lora = config.train, config.lora
    if name == "seed":  # every field a preset sets goes back to the recipe's value
        recipe = RunConfig()
        for s in specs("train", "lora"):
            if s.name in PRESET_FIELDS:
                config.set(s.key, recipe.get(s.key))
    else:
        rows = t.per_device_train_batch_size * t.gradient_accumulation_steps
        t.per_device_train_batch_size, t.gradient_accumulation_steps = rows, 1
        t.padding_free, t.pad_to_multiple_of, t.optim = False, FAST_PAD_MULTIPLE, FAST_OPTIM
        lora.use_gradient_checkpointing = True
    t.preset = name
    return config
