"""The real Qwen2.5-Coder-1.5B-Instruct through kft's own load and decode on the CPU (issue 25). Opt-in: these load
a 1.78B-parameter model (about 7 GB in fp32, 20-60 s to load here) and run only with

    KFT_REAL_MODEL_DIR=/work/qwen15-hf python -m pytest tests/realmodel

(the directory: /work/shared/realmodel/README.md, gguf_to_hf.py); without it they are skipped, in CI too."""

from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]
FIM_PAD, ROWS = 151_662, 151_936


@pytest.fixture(scope="module")
def loaded():
    from kft.config.args import ModelArgs
    from kft.models.loading import load_base

    return load_base(ModelArgs(name=os.environ["KFT_REAL_MODEL_DIR"], backend="transformers"))


def test_it_loads_on_transformers_with_fim_pad_and_no_new_row(loaded):
    assert loaded.backend == "transformers" and loaded.dtype == "float32" and loaded.device.type == "cpu"
    assert type(loaded.model).__name__ == "Qwen2ForCausalLM"
    assert (loaded.pad.token, loaded.pad.id, loaded.pad.how) == ("<|fim_pad|>", FIM_PAD, "reserved")
    assert loaded.model.get_input_embeddings().weight.shape[0] == ROWS  # no row added
    assert loaded.model.config.pad_token_id == loaded.model.generation_config.pad_token_id == FIM_PAD
    assert not loaded.model.generation_config.suppress_tokens  # nothing to keep out of sampling


def test_the_engine_answers_a_left_padded_batch_in_korean(loaded):
    """Two prompts of different lengths in one batch through kft.engine: the short one is left-padded with
    <|fim_pad|>, and both answers are Korean text (greedy, 12 tokens)."""
    import re

    from kft.config.args import GenerationArgs
    from kft.inference.generate import SideBySideGenerator

    gen = SideBySideGenerator(loaded, adapter=None)
    assert gen.engine
    answers = gen.answer_batch([("한국의 수도는 어디인가요?", ""), ("김치찌개를 맛있게 끓이는 방법을 간단히 알려줘", "")],
                               GenerationArgs(max_new_tokens=12), adapters=[None])
    for (text,) in answers:
        assert re.search("[가-힣]", text) and "<|" not in text, text
