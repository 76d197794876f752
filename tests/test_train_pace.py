"""Tokens/s and the ETA are smoothed over the last logged steps (issue 16: they jumped 189, 876, 375, 3,021, ...)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from conftest import tiny_config
from kft.training import job as train
from kft.training.job import TrainingJob
from kft.training.pace import PACE_WINDOW


def _job(tmp_path, monkeypatch, clock):
    monkeypatch.setattr(train, "time", SimpleNamespace(time=lambda: clock[0], strftime=time.strftime,
                                                       localtime=time.localtime))
    job = TrainingJob(tiny_config(100), tmp_path / "run")
    job.run_dir.mkdir()
    job._t0 = clock[0]
    job._set(total_steps=100, status="running")
    job._pace = (clock[0], 0)
    return job


def test_uneven_steps_give_a_steady_rate_and_eta(tmp_path, monkeypatch):
    clock = [1000.0]
    job = _job(tmp_path, monkeypatch, clock)
    tokens, rates, etas = 0, [], []
    for step in range(1, 41):
        clock[0] += 0.2 if step % 2 else 1.8  # steps alternate fast and slow (1 s each on average) ...
        tokens += 100 if step % 3 else 1000  # ... and short and long batches (400 tokens each on average)
        job._set(step=step)
        job._record_log(step, {"loss": 1.0, "learning_rate": 1e-4}, tokens)
        snap = job.snapshot()
        rates.append(snap.tokens_per_s)
        etas.append(snap.eta_s)
    raw = [r["tokens_per_s"] for r in job.run.read_metrics() if r.get("tokens_per_s")]
    assert max(raw) / min(raw) > 20  # each step's own rate jumps (kept in metrics.jsonl as measured)
    steady = rates[PACE_WINDOW:]
    assert max(steady) / min(steady) < 1.35 and all(300 < r < 500 for r in steady), steady
    later = etas[PACE_WINDOW:]
    assert all(abs(e - (100 - s)) < 0.15 * (100 - s) + 1 for s, e in zip(range(PACE_WINDOW + 1, 41), later, strict=True))
    assert all(b <= a + 1.0 for a, b in zip(later, later[1:], strict=False)), later  # it counts down, no swings
    assert f"{rates[-1]:,.0f} tokens/s" in job.snapshot().log_tail[-1]


def test_a_repeated_step_does_not_restart_the_window(tmp_path, monkeypatch):
    """An eval log (or the end-of-run summary) comes at the step already logged: the rate keeps its window."""
    clock = [0.0]
    job = _job(tmp_path, monkeypatch, clock)
    for step in range(1, 6):
        clock[0] += 1.0
        job._record_log(step, {"loss": 1.0}, 100 * step)
    clock[0] += 0.5
    job._record_log(5, {"eval_loss": 1.2}, 500)
    assert job.snapshot().tokens_per_s == 100.0
