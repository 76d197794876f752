import pytest

from kft.config import LORA_TARGETS, ModelArgs, RunConfig, field_docs, resolve_dtype


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
    assert c.data.source == "jojo0217/korean_safe_conversation"


def test_validation_collects_every_problem_at_once():
    c = RunConfig()
    c.train.learning_rate = 0
    c.train.max_steps = 0
    c.train.num_train_epochs = 0
    c.train.per_device_train_batch_size = 0
    c.lora.r = -1
    with pytest.raises(ValueError) as err:
        c.validate()
    msg = str(err.value)
    for needle in ("learning_rate", "max_steps", "per_device_train_batch_size", "lora.r"):
        assert needle in msg
    assert msg.count("\n- ") == 4


def test_valid_config_passes_and_epochs_can_replace_steps():
    c = RunConfig()
    c.train.max_steps = 0
    c.train.num_train_epochs = 2
    assert c.validate() is c


@pytest.mark.parametrize("cap,expected", [((7, 5), "float16"), ((8, 0), "bfloat16"), ((9, 0), "bfloat16"), (None, "float32")])
def test_auto_dtype_by_compute_capability(cap, expected):
    assert resolve_dtype(None, cap) == expected


def test_bf16_on_a_t4_is_refused_and_explicit_dtype_kept():
    with pytest.raises(ValueError, match="float16"):
        resolve_dtype("bfloat16", (7, 5))
    assert resolve_dtype("float16", (9, 0)) == "float16"
    assert resolve_dtype("bfloat16", None) == "float32"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_and_load_round_trip(tmp_path, suffix):
    c = RunConfig()
    c.model.name = "tiny"
    c.lora.r = 8
    c.lora.target_modules = ("q_proj", "v_proj")
    c.train.learning_rate = 1e-4
    path = c.save(tmp_path / f"run{suffix}")
    assert RunConfig.load(path) == c


def test_unknown_keys_are_named(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"train": {"learning_rat": 1}}', encoding="utf-8")
    with pytest.raises(ValueError, match="learning_rat"):
        RunConfig.load(p)


def test_every_field_has_a_docstring():
    from kft.config import SECTIONS

    for cls in SECTIONS.values():
        docs = field_docs(cls)
        missing = [f for f in cls.__dataclass_fields__ if f not in docs]
        assert not missing, (cls.__name__, missing)
    assert "4-bit" in field_docs(ModelArgs)["load_in_4bit"]


def test_a_hand_written_yaml_in_the_seeds_notation_loads_and_wrong_types_are_named(tmp_path):
    """YAML 1.1 reads 2e-4 (the seed's way of writing the learning rate) as a string: it must still load as
    a number, and a value of the wrong type must be a ValueError naming the key, not a TypeError later."""
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  name: tiny\ntrain:\n  learning_rate: 2e-4\n  max_steps: 60\n  num_train_epochs: 1\n",
                    encoding="utf-8")
    cfg = RunConfig.load(path).validate()
    assert cfg.train.learning_rate == 2e-4 and isinstance(cfg.train.learning_rate, float)
    assert cfg.train.num_train_epochs == 1.0
    path.write_text("train:\n  max_steps: lots\n  padding_free: maybe\nlora:\n  r: 2.5\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        RunConfig.load(path)
    assert "train.max_steps" in str(err.value) and "train.padding_free" in str(err.value)
    assert "lora.r" in str(err.value)


def test_nan_and_infinite_numbers_are_refused():
    c = RunConfig()
    c.train.weight_decay = float("nan")
    c.train.learning_rate = float("inf")
    c.generation.temperature = float("nan")
    msg = "\n".join(c.problems())
    assert "train.weight_decay must be a finite number" in msg
    assert "train.learning_rate must be a finite number" in msg
    assert "generation.temperature must be a finite number" in msg


def test_target_modules_written_as_one_string_are_names_not_characters(tmp_path):
    """`target_modules: q_proj` in a hand-written YAML became ('q', '_', 'p', ...), passed validation
    and failed only after the base model had loaded."""
    p = tmp_path / "c.yaml"
    p.write_text("lora:\n  target_modules: q_proj\n", encoding="utf-8")
    assert RunConfig.load(p).lora.target_modules == ("q_proj",)
    p.write_text("lora:\n  target_modules: 'q_proj, v_proj'\n", encoding="utf-8")
    assert RunConfig.load(p).lora.target_modules == ("q_proj", "v_proj")
    p.write_text("lora:\n  target_modules: [q_proj, 7]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lora.target_modules must be layer names"):
        RunConfig.load(p)


def test_a_settings_file_cannot_blow_up_memory_or_crash_the_import(tmp_path):
    """Settings files come from anyone (the import button is open in read-only mode too). Nested YAML
    aliases grew ninefold per level once quoted in a message; wrong value types raised TypeError, which
    the UI does not catch, or put a list into the model field."""
    levels = ['a0: &a0 ["xxxxxxxxxx"]'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\nmodel:\n  name: *a7\n", encoding="utf-8")
    with pytest.raises(ValueError, match="aliases"):
        RunConfig.load(bomb)
    big = tmp_path / "big.json"
    big.write_text('{"model": {"name": "' + "x" * 1_100_000 + '"}}', encoding="utf-8")
    with pytest.raises(ValueError, match="the limit is 1,000,000"):
        RunConfig.load(big)
    for body, field_name in [("data:\n  source: 2024\n", "data.source"), ("lora:\n  target_modules: 5\n", "lora.target_modules"),
                             ("model:\n  name: [a, b]\n", "model.name")]:
        p = tmp_path / "c.yaml"
        p.write_text(body, encoding="utf-8")
        with pytest.raises(ValueError, match=f"{field_name} must be"):
            RunConfig.load(p)
    long = tmp_path / "long.yaml"
    long.write_text("model:\n  name: [" + ", ".join(["[" + ", ".join(["y"] * 50) + "]"] * 50) + "]\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        RunConfig.load(long)
    assert len(str(info.value)) < 400  # the value is quoted cut short, not in full


def test_loftq_is_refused_where_peft_cannot_run_it():
    """On CPU (or with a 4-bit base, or without its two keys) the run loaded the model and then failed:
    PEFT's LoftQ needs CUDA and scipy and quantizes the full-precision base itself."""
    cfg = RunConfig()
    cfg.lora.loftq_config = {"loftq_bits": 4}
    problems = " ".join(cfg.problems())
    assert "needs both loftq_bits and loftq_iter" in problems and "load_in_4bit false" in problems
    assert "needs a CUDA GPU" in problems  # this machine has none
    cfg.lora.loftq_config = None
    assert not [p for p in cfg.problems() if "loftq" in p]
