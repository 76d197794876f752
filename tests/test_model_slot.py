"""The model slot (kft/services/model_slot.py): the one owner of the model in memory, its adapters and the GPU.

First the rules with stand-ins (no model): training and generation exclude each other, a run lets the model
in memory go and hands its own over only with a saved adapter. Then the real thing on the tiny model:
after a run the slot alone holds the trained model, and letting it go frees it."""

from __future__ import annotations

import gc
import threading
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import tiny_config
from kft.runs.store import RunDir
from kft.services import BusyError, ModelSlot, Workspace
from kft.services.model_slot import TRAINED_ADAPTER

TIMEOUT_S = 240


class _Model:
    """Stands in for a LoadedModel."""

    name = path = "tiny"

    def describe(self) -> str:
        return "tiny (stand-in)"


class _Job:
    """Stands in for a TrainingJob that ended with ``status``, holding ``model``, with or without a saved adapter."""

    def __init__(self, run_dir: Path, status: str, model: object | None, adapter: bool) -> None:
        self.run, self._model, self.status = RunDir(run_dir), model, status
        run_dir.mkdir(parents=True, exist_ok=True)
        if adapter:
            self.run.adapter.mkdir(parents=True, exist_ok=True)
            (self.run.adapter / "adapter_config.json").write_text("{}", encoding="utf-8")

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def loaded(self) -> object | None:
        return self._model

    def take_model(self) -> object | None:
        model, self._model = self._model, None
        return model

    def snapshot(self) -> SimpleNamespace:
        return SimpleNamespace(status=self.status)


def _slot_with_model() -> tuple[ModelSlot, _Model]:
    slot, model = ModelSlot(), _Model()
    slot.ensure_base(lambda have: False, lambda: model)
    return slot, model


# ---- the rules, with stand-ins ------------------------------------------------------------------
def test_training_and_generation_exclude_each_other():
    slot, _ = _slot_with_model()
    with slot.generation() as got:
        assert got and slot.generating
        with pytest.raises(BusyError) as err:
            slot.claim_for_training("r1")
        assert err.value.by == "generation"
        with pytest.raises(BusyError, match="another generation is still running"):  # one generation at a time
            with slot.generation(timeout_s=0.1):
                pass
    assert not slot.generating and slot.training_run is None
    slot.claim_for_training("r1")
    assert slot.training_run == "r1"
    with pytest.raises(BusyError, match="already in progress \\(r1\\)"):
        slot.claim_for_training("r2")
    with pytest.raises(BusyError, match="busy training \\(r1\\)"):
        with slot.generation():
            pass
    slot.end_training(None)  # a run that never started
    assert slot.training_run is None
    with slot.generation() as got:
        assert got


def test_a_generation_waiting_for_the_gpu_gives_up_when_cancelled():
    slot = ModelSlot()
    cancel, outcome = threading.Event(), []
    with slot.generation():
        def wait() -> None:
            with slot.generation(cancel) as got:
                outcome.append(got)

        waiter = threading.Thread(target=wait)
        waiter.start()
        cancel.set()
        waiter.join(10)
    assert outcome == [False] and not slot.generating


def test_a_run_lets_the_model_in_memory_go_and_hands_its_own_over_only_with_a_saved_adapter(tmp_path):
    slot, old = _slot_with_model()
    slot.claim_for_training("r1")
    assert slot.loaded is None and slot.adapters == {} and slot.describe() is None  # the run loads its own
    slot.end_training(None)
    for status, adapter in (("failed", False), ("stopped", False), ("completed", False)):
        job = _Job(tmp_path / f"{status}-{adapter}", status, _Model(), adapter)
        slot.claim_for_training(job.run_dir.name)
        slot.end_training(job)
        assert slot.loaded is None and job.loaded is None, (status, adapter)  # let go, by both
        assert slot.trained_key() is None
    for status in ("completed", "stopped"):
        job = _Job(tmp_path / status, status, _Model(), adapter=True)
        model = job.loaded
        slot.claim_for_training(job.run_dir.name)
        slot.end_training(job)
        assert slot.loaded is model and job.loaded is None  # one owner: the slot
        assert slot.adapters == {TRAINED_ADAPTER: str(job.run_dir)} and slot.trained_key() == str(job.run_dir)
    slot.release()
    assert slot.loaded is None and slot.adapters == {} and slot.trained_key() is None


def test_the_base_in_memory_is_kept_when_it_fits_and_let_go_first_when_it_does_not():
    slot = _slot_with_model()[0]
    kept = slot.loaded
    loads: list[str] = []
    assert slot.ensure_base(lambda have: have is kept, lambda: loads.append("again")) is kept
    assert loads == []
    old = weakref.ref(kept)
    kept = None

    def load_other() -> _Model:
        gc.collect()
        loads.append("other" if old() is None else "other, the old one still in memory")
        return _Model()

    slot.ensure_base(lambda have: False, load_other)
    assert loads == ["other"], "the old base is let go before the new one loads"


# ---- the real model -----------------------------------------------------------------------------
def test_after_a_run_the_slot_alone_owns_the_trained_model_and_releasing_it_frees_it(tmp_path):
    """One owner: the finished job keeps no reference (it would keep the weights alive after the slot
    lets them go, e.g. for another base model or the next run)."""
    ws = Workspace(tmp_path)
    job = ws.training.start(tiny_config(2))
    assert job.join(TIMEOUT_S) and job.snapshot().status == "completed"
    assert ws.training.job is job and ws.training.job.loaded is None
    assert ws.slot.loaded is not None and ws.slot.trained_key() == str(job.run_dir)
    model, loaded = weakref.ref(ws.slot.loaded.model), weakref.ref(ws.slot.loaded)
    ws.slot.release()
    gc.collect()
    assert loaded() is None and model() is None, "the released model is still referenced somewhere"
    assert ws.slot.loaded is None and ws.slot.adapters == {}


def test_the_trained_model_is_the_comparison_model_the_moment_the_run_counts_as_done(tmp_path):
    """Adoption ran on a separate thread after the job ended: a comparison arriving in between found
    no model, loaded a second copy of the base, and was then overwritten by the adoption."""
    ws = Workspace(tmp_path)
    job = ws.training.start(tiny_config(2))
    assert job.join(TIMEOUT_S) and not ws.training.active
    assert ws.slot.loaded is not None and job.loaded is None  # handed over, not shared
    assert ws.slot.adapters == {"default": str(job.run_dir)}
    assert ws.comparison.trained_available()
