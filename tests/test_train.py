import json
import shutil

import pytest
import torch

from conftest import as_killed_after, tiny_config
from kft.config.files import config_from_dict
from kft.training.job import FAULT_ENV, TrainingJob


def test_loss_falls_and_run_files_are_written(trained_run):
    snap = trained_run.snapshot()
    losses = [loss for _, loss in snap.losses]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3  # ~8.3 -> ~7.7 on the tiny model
    run = trained_run.run_dir
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert (run / "adapter" / "template.json").is_file()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == list(range(1, 31))
    assert all(m["tokens_seen"] > 0 for m in metrics)
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert info["status"] == "completed" and info["backend"] == "transformers"
    assert "no CUDA GPU" in info["backend_reason"]
    assert info["memory"]["device"] == "cpu" and info["memory"]["peak_reserved_gb"] > 0
    assert info["config"]["train"]["max_steps"] == 30
    assert snap.learning_rates and snap.memory and snap.memory_label.startswith("process memory")
    assert snap.backend == "transformers" and "no CUDA GPU" in snap.backend_reason
    trained = [(m["tokens_seen"], m["num_tokens"]) for m in metrics if "loss" in m and "num_tokens" in m]
    assert len(trained) == 30 and all(ours == trl for ours, trl in trained), trained[:3]  # tokens trained, not
    # collated: the loader collates a batch ahead, which was counted a micro-batch early (TRL counts in the loss)
    logged = [m for m in metrics if m.get("tokens_per_s")]
    span = logged[-1]["time"] - metrics[0]["time"]
    average = (logged[-1]["tokens_seen"] - metrics[0]["tokens_seen"]) / span
    assert snap.tokens_per_s == pytest.approx(average, rel=0.02)  # the run's average, not its last step


def test_lora_weights_change_and_base_weights_do_not(tiny_dir, trained_run):
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict()
    model = trained_run.loaded.model
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # LoRA B starts at zero
    base = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
            for n, p in model.named_parameters() if "lora_" not in n}
    assert len(base) == len(fresh)
    for name, p in base.items():
        assert torch.equal(p.detach().cpu(), fresh[name]), name


def test_saved_adapter_reloads_with_identical_logits(trained_run):
    from kft.config.args import ModelArgs
    from kft.models.loading import load_adapter, load_base

    ids = trained_run.loaded.tokenizer("안녕하세요, 오늘 날씨가 어때요?", return_tensors="pt")["input_ids"]
    trained_run.loaded.model.eval()
    with torch.no_grad():
        before = trained_run.loaded.model(input_ids=ids).logits
    reloaded = load_adapter(load_base(ModelArgs(name="tiny", max_seq_length=512)), trained_run.run_dir)
    reloaded.model.eval()
    with torch.no_grad():
        after = reloaded.model(input_ids=ids).logits
    torch.testing.assert_close(before, after)


def test_stop_leaves_a_loadable_adapter(tmp_path, tiny_dir):
    from transformers import TrainerCallback

    class StopAt3(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                job.stop()

    job = TrainingJob(tiny_config(200), tmp_path / "run", callbacks=[StopAt3()])
    job.start()
    assert job.join(300)
    snap = job.snapshot()
    assert snap.status == "stopped"
    assert snap.step <= 4  # within one optimizer step of the request
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(tmp_path / "run" / "adapter")).r == 16
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "stopped"


def test_injected_failure_ends_failed_and_next_job_succeeds(tmp_path, tiny_dir, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "2")
    job = TrainingJob(tiny_config(10), tmp_path / "bad").start()
    assert job.join(300)
    snap = job.snapshot()
    assert snap.status == "failed" and "injected fault" in snap.error
    assert json.loads((tmp_path / "bad" / "run.json").read_text())["status"] == "failed"
    monkeypatch.delenv(FAULT_ENV)
    ok = TrainingJob(tiny_config(3), tmp_path / "good").start()
    assert ok.join(300) and ok.snapshot().status == "completed"


def test_missing_model_and_bad_data_fail_in_plain_words(tmp_path):
    cfg = tiny_config(2)
    cfg.model.name = str(tmp_path / "no-such-model")
    job = TrainingJob(cfg, tmp_path / "r1").start()
    job.join(60)
    assert job.snapshot().status == "failed" and job.snapshot().error.startswith("missing model")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "", "output": "x"}\n', encoding="utf-8")
    cfg = tiny_config(2)
    cfg.data.source = str(bad)
    job = TrainingJob(cfg, tmp_path / "r2").start()
    job.join(120)
    assert job.snapshot().status == "failed" and job.snapshot().error.startswith("bad data")


def test_existing_run_directory_is_never_overwritten(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already holds files"):
        TrainingJob(tiny_config(2), tmp_path / "run").start()
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"


def test_the_job_trusts_its_config(tmp_path):
    """Settings are validated once, where they come in (the CLI, the training service; see
    test_cli.py::test_invalid_settings_are_refused_before_anything_loads): the job does not check again,
    and constructing one touches nothing on disk."""
    cfg = tiny_config(0)
    cfg.train.num_train_epochs = 0
    cfg.train.learning_rate = -1
    job = TrainingJob(cfg, tmp_path / "x")
    assert job.config is cfg and job.run_dir == tmp_path / "x" and job.run.path == tmp_path / "x"
    assert job.resume is None and job.resume_from is None and job.loaded is None
    assert not (tmp_path / "x").exists()


def test_a_resumed_job_restores_itself_on_start_and_hands_its_model_over(tmp_path, tiny_dir):
    """TrainingJob(config, run_dir, resume=plan) puts the checkpoint's step, the loss history and the token
    count back on start() and continues the same run directory; run.json says where it resumed from."""
    from kft.runs.store import RunDir, resume_plan

    first = TrainingJob(tiny_config(6, save_steps=2), tmp_path / "run").start()
    assert first.join(300) and first.snapshot().status == "completed", first.snapshot().error
    run = RunDir(tmp_path / "run")
    rows = run.read_metrics()
    at_4 = [r["tokens_seen"] for r in rows if r["step"] == 4][-1]
    raw = as_killed_after(run, 4)
    plan = resume_plan(run)
    assert (plan.step, plan.checkpoint.name) == (4, "checkpoint-4")

    job = TrainingJob(config_from_dict(plan.config), plan.run.path, resume=plan)
    assert job.run == run and job.resume_from == plan.checkpoint and job.snapshot().step == 0  # nothing before start
    job.start()
    assert job.join(300)
    snap = job.snapshot()
    assert snap.status == "completed" and snap.step == 6, snap.error
    assert [s for s, _ in snap.losses] == [1, 2, 3, 4, 5, 6]  # the history up to the checkpoint, then this session's
    steps = [r["step"] for r in run.read_metrics() if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # no step logged twice
    assert [r["tokens_seen"] for r in run.read_metrics() if r["step"] == 5][0] > at_4  # counted on, not from 0
    info = run.read_json()
    assert (info["status"], info["resumed_from"], info["resumes"], info["first_started_at"]) == (
        "completed", "checkpoint-4", 1, raw["started_at"])
    assert "resuming run from checkpoint-4 (step 4)" in "\n".join(snap.log_tail)

    loaded = job.take_model()  # kft.services.model_slot takes it; the job keeps no reference
    assert loaded is not None and job.loaded is None and job.take_model() is None
    with pytest.raises(AttributeError):
        job.loaded = loaded  # read-only


def test_sft_settings_are_the_seed_and_precision_follows_the_card(tmp_path):
    from kft.config.args import RunConfig
    from kft.training.job import sft_kwargs, to_sft_config

    cfg = RunConfig()
    t4 = sft_kwargs(cfg, tmp_path, (7, 5))
    assert (t4["per_device_train_batch_size"], t4["gradient_accumulation_steps"], t4["warmup_steps"], t4["max_steps"]) == (2, 4, 5, 60)
    assert (t4["fp16"], t4["bf16"], t4["optim"], t4["weight_decay"], t4["lr_scheduler_type"], t4["seed"]) == (
        True, False, "adamw_8bit", 0.01, "linear", 3407)
    assert (t4["learning_rate"], t4["logging_steps"], t4["max_grad_norm"]) == (2e-4, 1, 1.0)
    h100 = sft_kwargs(cfg, tmp_path, (9, 0))
    assert (h100["fp16"], h100["bf16"]) == (False, True)
    cpu = to_sft_config(cfg, tmp_path, None)
    assert (cpu.fp16, cpu.bf16, cpu.optim.value) == (False, False, "adamw_torch")


def test_stop_while_the_finished_run_frees_memory_keeps_its_final_status(tmp_path, tiny_dir, monkeypatch):
    import gc

    real_collect = gc.collect
    job = TrainingJob(tiny_config(2), tmp_path / "run")

    def collect(*args):
        if job.snapshot().status == "completed" and not job.done:
            job.stop()  # Stop clicked after the run ended, while its thread still frees memory
        return real_collect(*args)

    monkeypatch.setattr(gc, "collect", collect)
    job.start()
    assert job.join(300)
    snap = job.snapshot()
    assert snap.status == "completed" and snap.finished
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "completed"


class _FakeCuda:
    """torch.cuda's memory counters: max_memory_reserved is a high-water mark until reset_peak_memory_stats."""

    GB = 1024**3

    def __init__(self) -> None:
        self.reserved = self.peak = 0

    def use(self, gb: float) -> None:
        self.reserved = int(gb * self.GB)
        self.peak = max(self.peak, self.reserved)

    def memory_reserved(self) -> int:
        return self.reserved

    def memory_allocated(self) -> int:
        return self.reserved

    def max_memory_reserved(self) -> int:
        return self.peak

    def reset_peak_memory_stats(self) -> None:
        self.peak = self.reserved

    def get_device_properties(self, i):
        from types import SimpleNamespace

        return SimpleNamespace(name="Fake GPU", total_memory=80 * self.GB)


def test_each_run_in_one_process_gets_its_own_memory_peak(monkeypatch):
    """The app trains many runs in one process: a run's report must not carry an earlier run's peak."""
    from kft.training import memory

    cuda = _FakeCuda()
    monkeypatch.setattr(memory, "_cuda", lambda: cuda)
    cuda.use(6)  # first run: model loaded, then training peaks at 10 GB
    start = memory.start_report()
    cuda.use(10)
    first = memory.final_report(start, 1.0)
    assert (first["start_reserved_gb"], first["peak_reserved_gb"], first["peak_for_training_gb"]) == (6, 10, 4)
    cuda.use(0)  # freed; the second run loads a smaller model (2 GB) and peaks at 3 GB
    cuda.use(2)
    start = memory.start_report()
    cuda.use(3)
    second = memory.final_report(start, 1.0)
    assert (second["start_reserved_gb"], second["peak_reserved_gb"], second["peak_for_training_gb"]) == (2, 3, 1)


def test_start_memory_is_taken_with_the_model_loaded_as_the_seed_does(tmp_path, tiny_dir, monkeypatch):
    """The seed prints 'GB of memory reserved' after loading the model, so 'for training' is the LoRA run's extra."""
    from kft.training import memory

    job = TrainingJob(tiny_config(1), tmp_path / "run")
    seen = []
    real = memory.start_report

    def start_report():
        seen.append(job.loaded is not None)
        return real()

    monkeypatch.setattr(memory, "start_report", start_report)
    job.start()
    assert job.join(300) and job.snapshot().status == "completed"
    assert seen == [True]


def test_a_full_disk_at_the_end_fails_the_run_frees_the_model_and_ends_the_thread_cleanly(tmp_path, tiny_dir,
                                                                                           monkeypatch):
    """No space left to save the adapter, nor to rewrite run.json: the run ends failed with the reason in kft's words, the
    model is let go (GPU memory), and no exception escapes the job thread."""
    import threading

    escaped = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    job = TrainingJob(tiny_config(1), tmp_path / "run")
    real_write = job._write_run_json

    def write_run_json(**extra):
        if job._snap.status == "failed":
            disk_full()
        real_write(**extra)

    monkeypatch.setattr(job, "_save_adapter", disk_full)
    monkeypatch.setattr(job, "_write_run_json", write_run_json)
    job.start()
    assert job.join(300)
    snap = job.snapshot()
    assert snap.status == "failed" and snap.error == "the disk is full: free space and press Resume"  # kft's words (issue 23)
    assert job.loaded is None
    assert escaped == []


def test_on_cpu_each_run_gets_its_own_memory_peak_too():
    """ru_maxrss never resets: a later run in the app reported an earlier run's (or the comparison
    model's) peak as its own. Linux's VmHWM can be reset, as CUDA's peak is on the GPU."""
    from kft.training import memory

    start = memory.start_report()
    block = bytearray(400 * 1024**2)  # an earlier run's big peak
    del block
    start = memory.start_report()  # the next run starts
    report = memory.final_report(start, 1.0)
    assert start["peak_since_start"] and "since the run started" in report["peak_label"]
    assert report["peak_for_training_gb"] < 0.2, report


def test_eta_follows_this_sessions_step_pace_not_the_load_or_a_resumed_runs_steps(tmp_path, monkeypatch):
    """After a resume at step 50 the ETA divided this session's time by all 51 steps: 1.8 s shown where
    9 steps at 10 s were left. The pace now counts from the trainer's start in this session."""
    from types import SimpleNamespace

    from kft.training import job as train
    from kft.training.recorder import Recorder

    clock = [1000.0]
    monkeypatch.setattr(train.time, "time", lambda: clock[0])
    job = TrainingJob(tiny_config(60), tmp_path / "run")
    job.run_dir.mkdir()  # as start() makes it (the recorder writes run.json into it)
    job._t0 = clock[0]
    job._set(status="running", step=50)  # a resume (TrainingJob(..., resume=plan)) put the checkpoint's step back
    clock[0] += 60.0  # the model load
    rec = Recorder(job)
    rec.on_train_begin(None, SimpleNamespace(max_steps=60, global_step=50), SimpleNamespace())
    assert job.snapshot().eta_s is None  # no step of this session yet: no guess
    clock[0] += 10.0
    rec.on_step_end(SimpleNamespace(gradient_accumulation_steps=1), SimpleNamespace(global_step=51),
                    SimpleNamespace(should_training_stop=False))
    assert job.snapshot().eta_s == pytest.approx(90.0)


def test_a_run_whose_weights_stop_being_finite_fails_and_saves_no_adapter(tmp_path, tiny_dir):
    """weight_decay 1e308 (refused at the boundary; the job trusts its config) once gave a run marked completed
    whose adapter was NaN/inf; it fails with that reason, and nothing broken is offered as trained."""
    from kft.services.model_slot import ModelSlot

    slot = ModelSlot()
    job = TrainingJob(tiny_config(3, weight_decay=1e308), tmp_path / "run", on_done=slot.end_training).start()
    assert job.join(300)
    snap = job.snapshot()
    assert snap.status == "failed" and "stopped being finite" in snap.error, snap.error
    assert not job.run.has_adapter and job.take_model() is None
    assert slot.loaded is None  # the slot did not adopt it as "the adapter just trained"


def test_an_adapter_with_non_finite_weights_is_refused_before_it_is_loaded(trained_run, tmp_path):
    from safetensors.torch import load_file, save_file

    from kft.models.loading import ModelLoadError, load_adapter

    adapter = tmp_path / "broken" / "adapter"
    shutil.copytree(trained_run.run.adapter, adapter)
    weights = load_file(adapter / "adapter_model.safetensors")
    next(iter(weights.values())).fill_(float("nan"))
    save_file(weights, adapter / "adapter_model.safetensors")
    with pytest.raises(ModelLoadError, match="holds weights that are not finite"):
        load_adapter(None, adapter)


def test_unsloth_is_imported_when_the_process_starts_and_only_when_it_will_be_the_backend(monkeypatch):
    """The app and `kft train` import Unsloth before transformers (it patches it) and before the first Start (the
    import took about 40 s on the H200 host); on a machine where it will not be the backend nothing is imported."""
    import sys
    import types

    from kft.models import loading as model

    imported = []
    fake = types.ModuleType("unsloth")
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    monkeypatch.setattr(model, "choose_backend", lambda requested: (imported.append(requested), ("unsloth", "x"))[1])
    assert model.preload_backend() == "unsloth" and imported == ["auto"]

    monkeypatch.delitem(sys.modules, "unsloth")
    monkeypatch.setattr(model, "choose_backend", lambda requested: ("transformers", "no CUDA GPU"))
    assert model.preload_backend() == "transformers" and "unsloth" not in sys.modules

    def refused(requested):
        raise model.ModelLoadError("backend 'unsloth' needs a CUDA GPU")

    monkeypatch.setattr(model, "choose_backend", refused)
    assert model.preload_backend("unsloth") is None  # loading says why, later, in the user's terms


@pytest.mark.parametrize(("checkpointing", "layers", "expected"), [(False, None, 0), (True, None, 2), (True, 1, 1),
                                                                   (True, 0, 0)])
def test_checkpointing_is_what_the_settings_say_in_every_decoder_layer(tmp_path, tiny_dir, checkpointing, layers,
                                                                       expected):
    """TRL turns gradient checkpointing on by default: on the transformers backend that overrode
    use_gradient_checkpointing=False, so every run recomputed. lora.checkpoint_layers lets only the first N layers
    recompute (the rest keep their activations); the run's log says how many."""
    from transformers import TrainerCallback
    from transformers.modeling_layers import GradientCheckpointingLayer

    seen: list[int] = []

    class Count(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            seen.append(sum(1 for m in model.modules()
                            if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing))

    cfg = tiny_config(2)
    cfg.lora.use_gradient_checkpointing, cfg.lora.checkpoint_layers = checkpointing, layers
    job = TrainingJob(cfg, tmp_path / "run", callbacks=[Count()]).start()
    assert job.join(300) and job.snapshot().status == "completed", job.snapshot().error
    assert seen == [expected, expected]
    if checkpointing:
        assert f"gradient checkpointing in {expected} of 2 decoder layers" in "\n".join(job.snapshot().log_tail)


def test_a_steps_run_keeps_only_the_rows_it_can_train_on(tmp_path, tiny_dir, monkeypatch):
    """Issue 23: 2 steps x 2 rows x 1 accumulation use at most 4 rows; only those are kept and tokenized."""
    from kft.data import rows as data_rows
    from kft.training.job import rows_needed

    cfg = tiny_config(2, per_device_train_batch_size=2, gradient_accumulation_steps=1)
    assert rows_needed(cfg) == 4
    assert rows_needed(tiny_config(0)) is None  # an epochs run trains on every row
    assert rows_needed(tiny_config(2, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                                   eval_share=0.5)) == 9
    seen = []
    real = data_rows.to_text_dataset
    monkeypatch.setattr(data_rows, "to_text_dataset", lambda report, *a: seen.append(len(report.rows)) or
                        real(report, *a))
    job = TrainingJob(cfg, tmp_path / "run").start()
    assert job.join(300) and job.snapshot().status == "completed", job.snapshot().error
    assert seen == [4]
    assert any("use at most 4 rows" in line for line in job.snapshot().log_tail), job.snapshot().log_tail
