"""kft.models.loading / kft.models.padding: tokenizers whose pad is missing or is their EOS get a pad that cannot
collide with a real token, the choice travels with the adapter, and load failures name their real cause."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_config, tiny_qwen_dir
from kft.config.args import ModelArgs


@pytest.fixture(scope="module")
def qwen_eos_pad(tmp_path_factory):
    """Pad = EOS, with Qwen's never-used <|fim_pad|> in the vocabulary and no spare embedding row."""
    return tiny_qwen_dir(tmp_path_factory.mktemp("qwen-eos-pad"), pad="eos")


@pytest.fixture(scope="module")
def no_pad(tmp_path_factory):
    """No pad at all, no reserved token, no spare embedding row."""
    return tiny_qwen_dir(tmp_path_factory.mktemp("qwen-no-pad"), pad=None, reserved=False)


def _load(path):
    from kft.models.loading import load_base

    return load_base(ModelArgs(name=str(path), backend="transformers"))


def test_pad_equal_to_eos_becomes_an_existing_never_used_token(qwen_eos_pad):
    loaded = _load(qwen_eos_pad)
    tok, model = loaded.tokenizer, loaded.model
    assert tok.pad_token == "<|fim_pad|>" and tok.pad_token_id != tok.eos_token_id
    assert model.get_input_embeddings().weight.shape[0] == len(tok)  # no row added
    assert model.config.pad_token_id == tok.pad_token_id == model.generation_config.pad_token_id
    assert loaded.pad.how == "reserved" and loaded.pad.id == tok.pad_token_id


def test_a_missing_pad_with_no_spare_token_adds_one_token_and_one_row(no_pad):
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(str(no_pad)).get_input_embeddings().weight
    loaded = _load(no_pad)
    tok, model = loaded.tokenizer, loaded.model
    rows = model.get_input_embeddings().weight
    assert tok.pad_token == "<|kft_pad|>" and tok.pad_token_id == before.shape[0] != tok.eos_token_id
    assert rows.shape[0] == before.shape[0] + 1 == len(tok)
    assert torch.equal(rows[:-1], before)  # the real tokens keep their rows
    assert torch.allclose(rows[-1], before.mean(dim=0))
    assert tok.pad_token_id in model.generation_config.suppress_tokens  # never sampled
    assert loaded.pad.how == "added" and loaded.pad.rows == len(tok)


def test_a_tokenizer_with_its_own_pad_keeps_it(tiny_dir):
    loaded = _load("tiny")
    assert loaded.pad.how == "kept" and loaded.tokenizer.pad_token == "<|finetune_right_pad_id|>"


def test_the_choice_is_saved_in_template_json_and_applied_when_the_adapter_loads(tmp_path, no_pad):
    from kft.data.template import saved_pad
    from kft.models.loading import LoadedModel, load_adapter
    from kft.training.job import TrainingJob

    cfg = tiny_config(2)
    cfg.model.name = str(no_pad)
    job = TrainingJob(cfg, tmp_path / "run").start()
    assert job.join(300) and job.snapshot().status == "completed", job.snapshot().error
    adapter = job.run.adapter
    assert saved_pad(adapter) == job.loaded.pad.to_json()
    assert json.loads((adapter / "template.json").read_text(encoding="utf-8"))["pad"]["token"] == "<|kft_pad|>"

    # a base loaded without kft's choice (as an older kft, or another loader, would) gets it from the adapter
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(no_pad))
    model = AutoModelForCausalLM.from_pretrained(str(no_pad))
    bare = LoadedModel(model, tok, "transformers", "", "float32", str(no_pad), str(no_pad), False, 512)
    loaded = load_adapter(bare, adapter)
    assert loaded.pad == job.loaded.pad and tok.pad_token == "<|kft_pad|>"
    assert loaded.model.get_input_embeddings().weight.shape[0] == job.loaded.pad.rows


def test_unsloth_is_given_a_tokenizer_whose_pad_is_not_its_eos(tmp_path, qwen_eos_pad, no_pad):
    """Unsloth cannot run here: the step before its from_pretrained, which names the re-padded tokenizer to it."""
    from transformers import AutoTokenizer

    from kft.models.loading import ModelLoadError, _unsloth_pad

    choice, folder = _unsloth_pad(ModelArgs(name=str(qwen_eos_pad)), str(qwen_eos_pad), str(tmp_path))
    tok = AutoTokenizer.from_pretrained(folder)
    assert choice.how == "reserved" and tok.pad_token == "<|fim_pad|>" and tok.pad_token_id != tok.eos_token_id
    with pytest.raises(ModelLoadError, match="--backend transformers"):
        _unsloth_pad(ModelArgs(name=str(no_pad)), str(no_pad), str(tmp_path / "b"))


@pytest.mark.parametrize("config", ['{"model_type": "qwen2", "hidden_size": ', '{"model_type": "no-such-model"}'])
def test_a_local_directory_that_fails_to_load_is_not_blamed_on_the_network(tmp_path, config):
    from kft.models.loading import ModelLoadError, load_base

    (tmp_path / "config.json").write_text(config, encoding="utf-8")
    with pytest.raises(ModelLoadError) as err:
        load_base(ModelArgs(name=str(tmp_path), backend="transformers"))
    message = str(err.value)
    assert "network" not in message and "Hub id" not in message
    assert str(tmp_path) in message and "config.json" in message


def test_a_hub_id_that_fails_to_load_still_mentions_the_network():
    from kft.models.loading import ModelLoadError, load_base

    with pytest.raises(ModelLoadError, match="network"):
        load_base(ModelArgs(name="no-such-org/no-such-model", backend="transformers"))
