"""kft.config.args: the defaults (the seed recipe), the field facts read through specs(), RunConfig.get/set;
and kft.system.hardware's dtype choice. Validation and settings files: tests/test_validation.py."""

import pytest

from kft.config.args import LORA_TARGETS, SECTIONS, FieldSpec, RunConfig, spec, specs
from kft.system.hardware import resolve_dtype


def test_defaults_are_the_seed_recipe():
    c = RunConfig()
    assert (c.model.max_seq_length, c.model.dtype, c.model.load_in_4bit) == (2048, None, True)
    lo = c.lora
    assert (lo.r, lo.lora_alpha, lo.lora_dropout, lo.bias) == (16, 16, 0.0, "none")
    assert lo.target_modules == LORA_TARGETS == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert (lo.use_gradient_checkpointing, lo.random_state, lo.use_rslora, lo.loftq_config) == ("unsloth", 3407, False, None)
    t = c.train
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps, t.warmup_steps, t.max_steps) == (2, 4, 5, 60)
    assert (t.learning_rate, t.logging_steps, t.optim, t.weight_decay, t.lr_scheduler_type, t.seed) == (
        2e-4, 1, "adamw_8bit", 0.01, "linear", 3407)
    assert t.max_grad_norm == 1.0  # transformers' default, now a setting of its own
    assert c.data.source == "jojo0217/korean_safe_conversation"


def test_every_field_is_described_by_exactly_one_spec():
    """specs() lists every dataclass field once, in order, with its default and annotation."""
    for section, cls in SECTIONS.items():
        got = [s.name for s in specs(section)]
        assert got == list(cls.__dataclass_fields__), section
    assert [s.key for s in specs("model")][:2] == ["model.name", "model.max_seq_length"]
    assert len(list(specs())) == sum(len(cls.__dataclass_fields__) for cls in SECTIONS.values())
    seed = spec("train.seed")
    assert isinstance(seed, FieldSpec) and (seed.section, seed.name, seed.key, seed.kind) == ("train", "seed",
                                                                                            "train.seed", "int")
    assert (seed.default, seed.min, seed.max, seed.sft) == (3407, 0, 2**32 - 1, True)
    dtype = spec("model.dtype")
    assert (dtype.optional, dtype.base, dtype.allowed()) == (True, "str", ("bfloat16", "float16", "float32"))
    assert "adamw_torch" in spec("train.optim").allowed()  # names transformers knows, asked lazily
    assert spec("lora.target_modules").default == LORA_TARGETS
    assert (spec("model.name").flag, spec("model.name").form) == ("model", False)
    with pytest.raises(AttributeError):
        spec("train.seed").no_such_fact  # noqa: B018


def test_get_and_set_by_key():
    c = RunConfig()
    c.set("train.seed", 7)
    c.set("lora.r", 8)
    assert (c.get("train.seed"), c.train.seed, c.get("lora.r")) == (7, 7, 8)
    assert c.get("model.name") == c.model.name


@pytest.mark.parametrize("cap,expected", [((7, 5), "float16"), ((8, 0), "bfloat16"), ((9, 0), "bfloat16"), (None, "float32")])
def test_auto_dtype_by_compute_capability(cap, expected):
    assert resolve_dtype(None, cap) == expected


def test_bf16_on_a_t4_is_refused_and_explicit_dtype_kept():
    with pytest.raises(ValueError, match="float16"):
        resolve_dtype("bfloat16", (7, 5))
    assert resolve_dtype("float16", (9, 0)) == "float16"
    assert resolve_dtype("bfloat16", None) == "float32"
