"""Named training presets. A preset only changes TrainArgs fields; the run records the result.

seed: the recipe as written (micro-batch 2 x accumulation 4 = 8 rows per optimizer step).
fast: the same 8 rows per optimizer step in ONE padding-free micro-batch (rows concatenated with no pad tokens,
      positions restart at each row, attention never crosses rows): same rows, same token-weighted loss, fewer and
      fuller kernel launches."""

from __future__ import annotations

from .config import RunConfig, TrainArgs

PRESET_NAMES = ("seed", "fast")


def apply_preset(config: RunConfig, name: str) -> RunConfig:
    if name not in PRESET_NAMES:
        raise ValueError(f"Unknown preset {name!r}; choose one of {PRESET_NAMES}")
    t = config.train
    if name == "seed":
        seed = TrainArgs()
        t.per_device_train_batch_size = seed.per_device_train_batch_size
        t.gradient_accumulation_steps = seed.gradient_accumulation_steps
        t.padding_free = False
    else:
        rows = t.per_device_train_batch_size * t.gradient_accumulation_steps
        t.per_device_train_batch_size, t.gradient_accumulation_steps = rows, 1
        t.padding_free = True
    t.preset = name
    return config
