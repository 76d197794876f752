"""This server's limits: what a request may ask for, whatever the deployment (every event is callable
through the API). Plain data and checks; the numbers of each setting come from kft.config.args."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.app_settings import AppSettings
from ..config.args import MAX_NEW_TOKENS_CAP, SAMPLE_DATA, GenerationArgs, RunConfig, specs
from ..config.validation import SHORT, Problem, check

READ_ONLY = "this app is read-only (comparison only): training, resuming, uploads and Hub pushes are switched off"


@dataclass
class Limits:
    """Upper limits enforced on the server (public deployments lower them)."""

    max_steps: int = 10_000
    max_new_tokens: int = 1024
    read_only: bool = False
    allowed_models: tuple[str, ...] | None = None  # None = any
    max_upload_bytes: int = 200 * 1024**2
    uploads_keep_bytes: int = 2 * 1024**3  # stored uploads no run points to: oldest removed beyond this total
    uploads_keep_days: float = 7.0  # ... and removed once this old
    # stored uploads and Gradio's upload folder together: an upload past this is refused (the default: the flag's)
    uploads_quota_bytes: int = AppSettings.uploads_quota_mb * 1024**2

    def refuse_if_read_only(self) -> None:
        if self.read_only:
            raise ValueError(READ_ONLY)

    def check_model_allowed(self, name: str) -> None:
        allowed = self.allowed_models
        if allowed is not None and (name or "").strip() not in allowed:
            raise ValueError(f"model {str(name)[:100]!r} is not allowed here; allowed: {list(allowed)}")

    def run_problems(self, config: RunConfig) -> list[Problem]:
        """This server's limits on a run: read-only, ``server_max`` / ``max_chars``, planned steps, allowed models."""
        problems = [Problem("", READ_ONLY)] if self.read_only else []
        for s in specs("model", "lora", "data", "train"):
            value = config.get(s.key)
            if s.max_chars is not None and len(str(value or "")) > s.max_chars:
                problems.append(Problem(s.key, f"is {len(str(value)):,} characters long; the limit is {s.max_chars}"))
            elif (s.server_max is not None and isinstance(value, (int, float)) and not isinstance(value, bool)
                  and value > s.server_max):
                problems.append(Problem(s.key, f"{SHORT.repr(value)} is above this server's limit of "
                                                      f"{s.server_max:g}"))
        steps = planned_steps(config)
        if steps is not None and steps > self.max_steps:
            what = "max_steps" if config.train.max_steps > 0 else "the epochs asked for make about"
            problems.append(Problem("", f"{what} {SHORT.repr(steps)} is above this server's limit of {self.max_steps} steps"))
        try:
            self.check_model_allowed(config.model.name)
        except ValueError as exc:
            problems.append(Problem("", str(exc)))
        return problems

    def generation_problems(self, gen: GenerationArgs) -> list[Problem]:
        """Decoding problems, with this server's cap on new tokens."""
        problems = check(RunConfig(generation=gen), "generation")
        limit = min(self.max_new_tokens, MAX_NEW_TOKENS_CAP)
        if gen.max_new_tokens > limit and not any(p.field == "generation.max_new_tokens" for p in problems):
            problems.append(Problem("", f"max new tokens {gen.max_new_tokens} is above this server's limit of {limit}"))
        return problems


def planned_steps(config: RunConfig) -> int | None:
    """Optimizer steps: max_steps, or an upper estimate for epochs over local data (None for Hub data: see step_cap)."""
    from ..data.rows import FILE_SUFFIXES, count_records

    t, d = config.train, config.data
    if t.max_steps > 0:
        return t.max_steps
    if d.source != SAMPLE_DATA and Path(d.source).suffix.lower() not in FILE_SUFFIXES:
        return None
    rows = min(count_records(d.source), d.max_rows or math.inf)
    per_epoch = math.ceil(math.ceil(rows / max(t.per_device_train_batch_size, 1)) / max(t.gradient_accumulation_steps, 1))
    total = per_epoch * t.num_train_epochs
    return math.ceil(total) if isinstance(total, (int, float)) and math.isfinite(total) else None  # 1e308: validation


def step_cap(limit: int) -> Any:
    """A callback failing a run whose Trainer plans over ``limit`` steps (epochs on Hub data: known once loaded)."""
    from transformers import TrainerCallback

    class StepCap(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
            if state.max_steps > limit:
                raise ValueError(f"this run would take {state.max_steps} steps; this server's limit is {limit}")

    return StepCap()
