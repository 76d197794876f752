"""Checkpoints by default (issue 16): save_steps empty = auto, from the run's length, so a default run can resume."""

from __future__ import annotations

import pytest

from conftest import as_killed_after, tiny_config
from kft.config.args import RunConfig, TrainArgs
from kft.config.files import config_from_dict
from kft.config.validation import check
from kft.training.sft import save_kwargs, sft_kwargs
from kft.ui import train_form as form


@pytest.mark.parametrize(("max_steps", "save_steps", "expected"), [
    (60, None, {"save_strategy": "steps", "save_steps": 10}),  # the seed: every 10 steps
    (1000, None, {"save_strategy": "steps", "save_steps": 100}),
    (4, None, {"save_strategy": "steps", "save_steps": 10}),  # short runs: at least 10 apart
    (0, None, {"save_strategy": "steps", "save_steps": 0.1}),  # epochs: a tenth of the total
    (60, 0, {"save_strategy": "no", "save_steps": 500}),  # 0 = only the final adapter, as before
    (60, 7, {"save_strategy": "steps", "save_steps": 7}),  # as given
])
def test_save_steps_auto_follows_the_runs_length(max_steps, save_steps, expected):
    assert save_kwargs(TrainArgs(max_steps=max_steps, save_steps=save_steps)) == expected


def test_the_default_run_checkpoints_and_keeps_the_seed_settings(tmp_path):
    assert TrainArgs().save_steps is None
    kw = sft_kwargs(RunConfig(), tmp_path, None)
    assert (kw["save_strategy"], kw["save_steps"], kw["seed"], kw["max_steps"]) == ("steps", 10, 3407, 60)
    assert kw["save_total_limit"] == 3  # train.save_total_limit: only the newest checkpoints are kept
    values = form.config_to_values(RunConfig())
    assert values["save_steps"] == "auto"  # not None: an empty widget makes the API parameter required
    for shown, parsed in ((None, None), ("", None), ("auto", None), (0, 0), (25, 25), ("25", 25)):
        assert form.values_to_config({**values, "save_steps": shown}, "tiny").train.save_steps == parsed
    assert check(RunConfig(), "train") == []


@pytest.mark.slow
def test_a_default_run_can_be_resumed(tmp_path, tiny_dir):
    """A run with the default save_steps, interrupted after its first checkpoint, resumes from it."""
    from kft.runs.store import RunDir, resume_plan
    from kft.training.job import TrainingJob

    job = TrainingJob(tiny_config(12), tmp_path / "run").start()  # save_steps left at its default
    assert job.join(300) and job.snapshot().status == "completed", job.snapshot().error
    run = RunDir(tmp_path / "run")
    assert [c.name for c in run.checkpoints()] == ["checkpoint-10", "checkpoint-12"]
    as_killed_after(run, 10)
    plan = resume_plan(run)
    assert (plan.step, plan.checkpoint.name) == (10, "checkpoint-10")
    resumed = TrainingJob(config_from_dict(plan.config), plan.run.path, resume=plan).start()
    assert resumed.join(300) and resumed.snapshot().status == "completed" and resumed.snapshot().step == 12


def test_save_steps_is_optional_through_the_api_and_takes_a_number(tmp_path):
    """An empty (None) widget made /start_training require save_steps."""
    from gradio_client import Client

    from conftest import free_port, running_app
    from kft.config.app_settings import AppSettings

    settings = AppSettings(port=free_port(), data_dir=str(tmp_path / "data"), lang="en")
    with running_app(settings) as (url, ws):
        client = Client(url, verbose=False)
        params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/start_training"]
        save = next(p for p in params["parameters"] if p["parameter_name"] == "save_steps")
        assert save["parameter_has_default"] and save["parameter_default"] == "auto"
        refused = client.predict(model="tiny", data_kind="sample", save_steps="1.5", api_name="/start_training")
        assert "save_steps" in refused and "whole number" in refused
        started = client.predict(model="tiny", data_kind="sample", max_steps=1, save_steps=3, max_seq_length=256,
                                 api_name="/start_training")
        assert "Training started" in started and ws.training.job.config.train.save_steps == 3
        assert ws.training.job.join(300)
