"""The training service (kft/services/training.py) on the tiny model: every request checked once before anything
loads, one run at a time, a start that fails leaves nothing behind, stop during the model load, the runs list."""

from __future__ import annotations

import json
import weakref

import pytest

from conftest import tiny_config, wait_until
from kft.config.validation import SettingsError
from kft.services import Limits, Workspace

TIMEOUT_S = 240


def test_settings_and_limits_are_checked_once_before_anything_starts(tmp_path):
    """The job trusts its config: the service refuses every problem at once, and no run directory appears."""
    ws = Workspace(tmp_path, Limits(max_steps=50, allowed_models=("tiny",)))
    cfg = tiny_config(100, learning_rate=0.0)
    cfg.lora.r = 0
    with pytest.raises(SettingsError) as err:
        ws.training.start(cfg)
    text = str(err.value)
    assert text.startswith("Invalid settings:") and "train.learning_rate must be greater than 0" in text
    assert "lora.r must be" in text and "max_steps 100 is above this server's limit of 50 steps" in text
    assert {p.field for p in err.value.problems} >= {"train.learning_rate", "lora.r"}
    assert [str(p) for p in ws.training.problems(cfg)] == [str(p) for p in err.value.problems]
    assert ws.training.job is None and not ws.training.active and list(ws.runs_dir.iterdir()) == []
    assert ws.training.problems(tiny_config(2)) == []


def test_a_run_that_cannot_start_leaves_the_workspace_free(tmp_path, monkeypatch):
    """A start that fails (disk full, read-only data dir) must not leave a never-started job behind:
    the workspace would refuse every later Start and generation as 'busy training'."""
    from kft.training.job import TrainingJob

    ws = Workspace(tmp_path)

    def no_space(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TrainingJob, "start", no_space)
    with pytest.raises(ValueError, match="the run could not start: the disk is full") as err:
        ws.training.start(tiny_config(2))
    assert "Errno" not in str(err.value) and "No space left" not in str(err.value)  # kft's words, not Python's
    assert not ws.training.active and ws.slot.training_run is None
    monkeypatch.undo()
    job = ws.training.start(tiny_config(2))
    assert job.join(TIMEOUT_S) and job.snapshot().status == "completed"
    wait_until(lambda: ws.slot.loaded, 10, what="the finished run's model to become the comparison's")
    trained = weakref.ref(ws.slot.loaded.model)
    nxt = ws.training.start(tiny_config(2))
    assert trained() is None, "the previous run's model must be freed before the next run loads its own"
    assert nxt.join(TIMEOUT_S)


def test_stop_while_loading_leaves_no_untrained_lora_posing_as_the_trained_adapter(tmp_path, monkeypatch):
    """Stop during the model load ends the run 'stopped' with no step and no adapter on disk; the
    comparison tab must not offer the fresh, untrained LoRA as 'the adapter just trained'."""
    from kft.models import loading as kmodel

    ws = Workspace(tmp_path)
    real_load = kmodel.load_base

    def load_then_stop(*args, **kwargs):
        ws.training.job.stop()  # the user presses Stop while the status says 'loading'
        return real_load(*args, **kwargs)

    monkeypatch.setattr(kmodel, "load_base", load_then_stop)
    job = ws.training.start(tiny_config(3))
    assert job.join(TIMEOUT_S)  # the slot has had its say before the job counts as done
    snap = job.snapshot()
    assert snap.status == "stopped" and snap.step == 0
    assert not (job.run_dir / "adapter").exists()
    assert ws.slot.loaded is None and job.loaded is None and not ws.comparison.trained_available()


@pytest.mark.parametrize("run_json", [
    {"status": "completed", "config": {"model": "tiny", "data": ["x"]}, "steps_done": "12/60"},
    {"status": "running", "config": "broken", "total_steps": None, "final_loss": "nan", "pid": "1"},
    {"status": "failed", "steps_done": True, "error": {"why": 1}, "started_at": 5},
])
def test_a_hand_edited_run_json_does_not_stop_the_app_from_starting(tmp_path, run_json):
    """Workspace() reads every run.json to mark interrupted runs; one malformed file raised
    AttributeError / ValueError there, and the app did not start at all."""
    run = tmp_path / "runs" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps(run_json), encoding="utf-8")
    ws = Workspace(tmp_path)
    [info] = ws.training.runs()
    assert info.name == run.name and info.status in ("completed", "interrupted", "failed")
    assert info.steps_done == 0 and info.model is None


# ---- a failure does not make a run unresumable (issue 23, item 2) ---------------------------------------------
def _checkpoint_steps(run_dir) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*"))


def test_a_full_disk_fails_the_run_in_kfts_words_and_it_resumes_once_space_is_freed(tmp_path, monkeypatch):
    import errno

    from transformers import Trainer

    from kft.training.snapshot import DISK_FULL

    ws = Workspace(tmp_path)
    real_save = Trainer._save_checkpoint

    def save_then_full(self, model, trial):
        real_save(self, model, trial)
        if self.state.global_step == 4:  # the disk filled up while checkpoint-4 was written
            opt = ws.runs_dir / job.run_dir.name / "checkpoints" / "checkpoint-4" / "optimizer.pt"
            opt.write_bytes(opt.read_bytes()[: opt.stat().st_size // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_full)
    job = ws.training.start(tiny_config(6, save_steps=2))
    assert job.join(TIMEOUT_S)
    snap = job.snapshot()
    assert snap.status == "failed" and snap.error == DISK_FULL
    [info] = ws.training.runs()
    assert info.status == "failed" and info.checkpoint == "checkpoint-2" and info.resumable
    monkeypatch.undo()  # space freed
    again = ws.training.resume(info.name)
    assert again.resume_from.name == "checkpoint-2" and again.join(TIMEOUT_S)
    assert again.snapshot().status == "completed" and again.snapshot().step == 6


def test_a_resume_that_cannot_read_its_checkpoint_falls_back_to_the_previous_one(tmp_path):
    """A checkpoint that passes every check on disk yet fails when the trainer reads it back (here an optimizer
    state of the wrong shape, its manifest rewritten to match) is marked damaged; the previous one is used."""
    import torch

    from kft.runs.store import RunDir

    ws = Workspace(tmp_path)
    job = ws.training.start(tiny_config(6, save_steps=2))
    assert job.join(TIMEOUT_S) and job.snapshot().status == "completed"
    run = RunDir(job.run_dir)
    raw = run.read_json()
    run.write_json({**raw, "status": "running", "pid": 999_999_999})  # as if killed after the last save
    ws = Workspace(tmp_path)  # a restart: marks it interrupted
    bad = run.checkpoints_dir / "checkpoint-6"
    torch.save({"state": {}, "param_groups": "nonsense"}, bad / "optimizer.pt")
    run.write_manifest(bad)
    [info] = ws.training.runs()
    assert info.resumable and info.checkpoint == "checkpoint-6"
    resumed = ws.training.resume(info.name)
    assert resumed.join(TIMEOUT_S)
    snap = resumed.snapshot()
    assert snap.status == "completed", snap.error
    assert resumed.resume_from.name == "checkpoint-4"
    assert any("checkpoint-6 is damaged" in line and "resuming from checkpoint-4" in line for line in snap.log_tail)
    assert run.last_complete_checkpoint().name == "checkpoint-6"  # saved anew by the resumed run


# ---- no server path in served files (issue 23, item 8) --------------------------------------------------------
def test_the_adapter_zip_names_the_base_model_as_the_user_chose_it(tmp_path):
    """adapter_config.json and the README held base_model: /root/.cache/kft/tiny-llama-..."""
    import zipfile

    from kft.models.tiny import cache_root

    ws = Workspace(tmp_path)
    job = ws.training.start(tiny_config(2))
    assert job.join(TIMEOUT_S) and job.snapshot().status == "completed"
    with zipfile.ZipFile(ws.training.adapter_zip()) as zf:
        texts = {n: zf.read(n).decode("utf-8", "replace") for n in zf.namelist() if n.endswith((".json", ".md"))}
    assert json.loads(texts["adapter/adapter_config.json"])["base_model_name_or_path"] == "tiny"
    assert "base_model: tiny" in texts["adapter/README.md"]
    for name, text in texts.items():
        assert str(cache_root()) not in text and str(tmp_path) not in text, name


def test_the_runs_list_reads_a_run_again_only_when_its_files_change(tmp_path, trained_run):
    """Issue 24 (viewers do not slow training): every page's runs tab lists the runs on each tick, and checking a
    checkpoint opens its archives; an unchanged run is not read again, and any change to its files is seen."""
    import os
    import shutil

    from conftest import copy_run
    from kft.runs import store

    ws = Workspace(tmp_path)
    copy_run(trained_run, ws.runs_dir, "20261203-010000")
    run = store.RunDir(ws.runs_dir / "20261203-010000")
    shutil.copytree(trained_run.run_dir / "checkpoints", run.checkpoints_dir)
    first = ws.training.runs()
    assert first[0].checkpoint and first[0].status == "completed"
    again = ws.training.runs()
    assert again[0] is first[0], "an unchanged run is not read again"
    ckpt = run.checkpoints_dir / first[0].checkpoint
    victim = next(p for p in sorted(ckpt.iterdir()) if p.suffix in (".safetensors", ".pt", ".bin"))
    victim.write_bytes(b"")  # a damaged checkpoint: the list no longer offers it
    os.utime(victim, ns=(1, 1))
    assert ws.training.runs()[0].checkpoint != first[0].checkpoint
    raw = run.read_json()
    run.write_json({**raw, "final_loss": 1.25})
    assert ws.training.runs()[0].final_loss == 1.25
    shutil.rmtree(run.path)
    assert ws.training.runs() == []
