"""This server's limits (kft/services/limits.py): what a request may ask for, checked where it enters."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conftest import tiny_config
from kft.config.args import GenerationArgs
from kft.services.limits import READ_ONLY, Limits, planned_steps, step_cap


def test_epoch_runs_on_hub_data_are_capped_when_training_begins():
    """Their length is known only once the data is loaded: the Trainer's plan is checked then."""
    with pytest.raises(ValueError, match="would take 600 steps; this server's limit is 50"):
        step_cap(50).on_train_begin(None, SimpleNamespace(max_steps=600), None)
    step_cap(50).on_train_begin(None, SimpleNamespace(max_steps=50), None)
    hub = tiny_config(0)
    hub.data.source = "someone/dataset"
    assert planned_steps(hub) is None  # not known before the data is loaded
    assert planned_steps(tiny_config(7)) == 7


def test_run_problems_name_every_limit_a_request_breaks():
    limits = Limits(max_steps=50, allowed_models=("tiny",), read_only=True)
    cfg = tiny_config(10**7)
    cfg.model.name, cfg.data.split = "someone/big-model", "y" * 3000
    text = " ".join(map(str, limits.run_problems(cfg)))
    for expected in (READ_ONLY, "max_steps 10000000 is above this server's limit of 50 steps",
                     "data.split is 3,000 characters long", "'someone/big-model' is not allowed here"):
        assert expected in text, expected
    assert Limits().run_problems(tiny_config(2)) == []
    epochs = tiny_config(0, num_train_epochs=100)
    assert "the epochs asked for make about" in " ".join(map(str, Limits(max_steps=50).run_problems(epochs)))


def test_generation_problems_apply_this_servers_cap_on_new_tokens():
    assert Limits(max_new_tokens=64).generation_problems(GenerationArgs(max_new_tokens=64)) == []
    [problem] = Limits(max_new_tokens=64).generation_problems(GenerationArgs(max_new_tokens=65))
    assert "max new tokens 65 is above this server's limit of 64" in str(problem)
    with pytest.raises(ValueError, match="read-only"):
        Limits(read_only=True).refuse_if_read_only()
    with pytest.raises(ValueError, match="is not allowed here"):
        Limits(allowed_models=("tiny",)).check_model_allowed("/etc")
