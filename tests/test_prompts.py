from kft.data.template import KOREAN_ALPACA, PromptTemplate

SEED = """아래에는 작업을 설명하는 지시 사항과 추가적인 컨텍스트를 제공하는 입력이 있습니다. 요청을 적절하게 완료하는 응답을 작성하세요.

### instruction:
{}

### input:
{}

### output:
{}"""


def test_template_is_the_seed_character_for_character():
    assert KOREAN_ALPACA == SEED


def test_training_text_appends_eos_and_generation_prompt_leaves_output_empty():
    t = PromptTemplate()
    assert t.training_text("지시", "입력", "답변", "<eos>") == SEED.format("지시", "입력", "답변") + "<eos>"
    assert t.generation_prompt("지시") == SEED.format("지시", "", "")
    assert t.generation_prompt("지시").endswith("### output:\n")


def test_training_without_eos_is_refused():
    import pytest

    with pytest.raises(ValueError, match="EOS"):
        PromptTemplate().training_text("a", "", "b", "")


def test_template_round_trips_next_to_an_adapter(tmp_path):
    custom = PromptTemplate(name="x", text="Q: {}\nC: {}\nA: {}")
    custom.save(tmp_path)
    assert PromptTemplate.load(tmp_path) == custom
    assert PromptTemplate.load(tmp_path / "nowhere") == PromptTemplate()
