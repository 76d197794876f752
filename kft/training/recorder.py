"""The bridge from TRL's Trainer to a TrainingJob: its callback and its collator wrapper. They record into the job
(kft.training.job) and honour its stop request; they never touch a UI. Each carries a profiler mark (record_function),
which bench/profile_train.py reads to name where a step goes.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable
from typing import Any

from torch.profiler import record_function
from transformers import TrainerCallback

from ..system.distributed import sum_across_ranks

FAULT_ENV = "KFT_INJECT_FAULT_AT_STEP"  # test hook: raise inside the run at this step


def _marked(label: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the callback inside a profiler range (bench/profile_train.py names the step's parts by them)."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def marked(*a: Any, **kw: Any) -> Any:
            with record_function(label):
                return fn(*a, **kw)
        return marked
    return wrap


class CountingCollator:
    """Counts real (non-pad) tokens per batch: Unsloth's patched loop does not update num_input_tokens_seen."""

    def __init__(self, inner: Callable[..., Any], job: Any) -> None:
        self.inner, self.job = inner, job

    def __call__(self, features: Any) -> Any:
        with record_function("kft.collate"):
            return self._collate(features)

    def _collate(self, features: Any) -> Any:
        batch = self.inner(features)
        mask = batch.get("attention_mask") if hasattr(batch, "get") else None
        # queued, not added: the loader collates one batch ahead (adding here counts it untrained, twice on resume)
        self.job._collated.append(int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()))
        return batch


class Recorder(TrainerCallback):
    """Records logs into the job and honours stop requests; never touches a UI."""

    def __init__(self, job: Any) -> None:
        self.job = job
        fault = os.environ.get(FAULT_ENV, "").strip()
        self.fault_at = int(fault) if fault.isdigit() else None
        self._substeps = 0  # micro-batches of the current optimizer step already credited

    def _credit(self, batches: int) -> None:
        """Count the tokens of ``batches`` trained micro-batches (oldest collated first)."""
        for _ in range(batches):
            if self.job._collated:
                self.job.tokens_seen += self.job._collated.popleft()

    def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
        if kw.get("model") is not None:
            self.job._checkpoint_layers(kw["model"])
        self.job._set(total_steps=state.max_steps)
        with self.job._lock:
            self.job._pace = (time.time(), state.global_step)  # global_step > 0 when resuming
        self.job._write_run_json()  # the total is known now: a run killed later still shows step / total

    def on_save(self, args, state, control, **kw):  # noqa: ANN001
        self.job.checkpoint_saved(state.global_step)  # its manifest, then the steps done as far as it
        return control

    @_marked("kft.on_step_end")
    def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
        # on_substep_end runs for each micro-batch but the last; a patched loop without it gets all credited here
        self._credit(1 if self._substeps else args.gradient_accumulation_steps)
        self._substeps = 0
        self.job._set(step=state.global_step)
        self.job._watch(state.global_step)
        if self.fault_at is not None and state.global_step >= self.fault_at:
            raise RuntimeError(f"injected fault at step {state.global_step} ({FAULT_ENV})")
        control.should_training_stop |= self.job._stop.is_set()
        return control

    @_marked("kft.on_substep_end")
    def on_substep_end(self, args, state, control, **kw):  # noqa: ANN001
        self._credit(1)
        self._substeps += 1
        control.should_training_stop |= self.job._stop.is_set()
        return control

    @_marked("kft.on_log")
    def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
        if logs:
            self.job._record_log(state.global_step, logs, sum_across_ranks(self.job.tokens_seen))
            loss = logs.get("loss")
            if isinstance(loss, (int, float)) and not math.isfinite(loss) and self.job._diverged is None:
                self.job._diverged = f"the loss (step {state.global_step}: {loss})"
                control.should_training_stop = True  # the run fails when train() returns
        return control
