"""kft.models.padding and kft.models.loading on a REAL tokenizer: Qwen2.5-Coder-1.5B-Instruct's, as rebuilt from its
Q4_K_M GGUF file (tests/data/qwen25_gguf_tokenizer: tokenizer and config only, 5.4 MB, Apache-2.0). Its pad is its
EOS, it lists 151,936 tokens (= embedding rows), and its never-used tokens are plain vocabulary entries, not added
tokens: the tiny tokenizers of tests/test_loading.py made <|fim_pad|> an added token, which hid that."""

from __future__ import annotations

import json

import pytest

from conftest import GGUF_TOKENIZER
from kft.config.args import ModelArgs

ROWS = 151_936  # the real model's embedding rows (config.json's vocab_size)
EOS, IM_END, FIM_PAD = 151_643, 151_645, 151_662


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(GGUF_TOKENIZER))


def test_the_saved_files_are_the_gguf_tokenizer(tokenizer):
    assert len(tokenizer) == ROWS == json.loads((GGUF_TOKENIZER / "config.json").read_text())["vocab_size"]
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == EOS  # the problem: pad = EOS
    assert sorted(tokenizer.added_tokens_decoder) == [EOS, 151_644, IM_END]  # and no added pad token
    assert tokenizer.convert_tokens_to_ids("<|fim_pad|>") == FIM_PAD


def test_the_pad_is_fim_pad_an_existing_row_not_eos_and_not_a_new_row(tokenizer):
    """Before issue 25's fix kft looked at added tokens only, found none, and added <|kft_pad|> as row 151,936: a
    152nd-thousand row, which Unsloth refuses."""
    from kft.models.padding import choose_pad

    choice = choose_pad(tokenizer, ROWS)
    assert (choice.token, choice.id, choice.how, choice.rows) == ("<|fim_pad|>", FIM_PAD, "reserved", ROWS)
    assert choice.id not in (EOS, IM_END)


def _texts() -> list[str]:
    """Every text kft feeds this tokenizer from its own files: the bundled sample as training texts, the presets."""
    from kft.data.rows import SAMPLE_PATH
    from kft.data.template import DEFAULT_TEMPLATE
    from kft.inference.safety import load_prompt_set

    rows = [json.loads(line) for line in SAMPLE_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [DEFAULT_TEMPLATE.training_text(r["instruction"], r.get("input", ""), r["output"], "<|endoftext|>")
             for r in rows]
    return texts + [DEFAULT_TEMPLATE.generation_prompt(p["prompt"], p.get("input", "")) for p in load_prompt_set()]


def test_no_text_gives_the_pad_and_decoding_skips_it(tokenizer):
    from kft.models.padding import apply_pad, choose_pad

    texts = _texts() + ["fim_pad", "<|fim", "pad|>", "[PAD151665]", "<|vision_pad|>", "키패드 keypad"]
    before = [tokenizer.encode(t) for t in texts]
    assert all(FIM_PAD not in ids for ids in before)
    assert tokenizer.encode("<|fim_pad|>") != [FIM_PAD]  # plain text: the pre-tokenizer cuts it into pieces
    apply_pad(tokenizer, None, choose_pad(tokenizer, ROWS))
    assert len(tokenizer) == ROWS and tokenizer.pad_token_id == FIM_PAD
    assert [tokenizer.encode(t) for t in texts] == before  # the kept texts tokenize exactly as before
    batch = tokenizer(["안녕하세요, 반갑습니다. 오늘 날씨가 좋네요", "짧다"], padding=True)
    assert batch["input_ids"][1][-1] == FIM_PAD and batch["attention_mask"][1][-1] == 0
    assert tokenizer.decode(batch["input_ids"][1], skip_special_tokens=True) == "짧다"  # a special token now


def test_the_pad_survives_a_save_and_is_applied_again(tokenizer, tmp_path):
    """What a run does: the tokenizer saved beside the adapter (or handed to Unsloth) reloads with the same pad."""
    from transformers import AutoTokenizer

    from kft.models.padding import PadChoice, apply_pad, choose_pad

    choice = choose_pad(tokenizer, ROWS)
    apply_pad(tokenizer, None, choice)
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(str(tmp_path))
    assert (again.pad_token, again.pad_token_id, len(again)) == ("<|fim_pad|>", FIM_PAD, ROWS)
    fresh = AutoTokenizer.from_pretrained(str(GGUF_TOKENIZER))
    apply_pad(fresh, None, PadChoice.from_json(choice.to_json()))  # template.json's record on the shipped tokenizer
    assert fresh.pad_token_id == FIM_PAD


def test_unsloth_is_given_fim_pad_not_refused(tmp_path):
    """The step before Unsloth's from_pretrained (no GPU here): a pad that needs no new row, so no refusal."""
    from transformers import AutoTokenizer

    from kft.models.loading import _unsloth_pad

    choice, folder = _unsloth_pad(ModelArgs(name=str(GGUF_TOKENIZER)), str(GGUF_TOKENIZER), str(tmp_path))
    assert folder == str(tmp_path) and choice.how == "reserved" and choice.id == FIM_PAD
    assert AutoTokenizer.from_pretrained(folder).pad_token_id == FIM_PAD


def test_the_real_model_directory_without_weights_says_so_not_network(tmp_path):
    """tests/data holds the real config and tokenizer but no weights: the message names the local directory and its
    weights, never the network."""
    from kft.models.loading import ModelLoadError, load_base

    with pytest.raises(ModelLoadError) as err:
        load_base(ModelArgs(name=str(GGUF_TOKENIZER), backend="transformers"))
    message = str(err.value)
    assert "network" not in message and "Hub id" not in message
    assert str(GGUF_TOKENIZER) in message and "safetensors" in message and "nothing is downloaded" in message
