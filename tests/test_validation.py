"""kft.config.validation (the rules, read from each setting's facts in kft.config.args) and kft.config.files (settings
files from anyone: sizes, aliases, types)."""


import pytest

from kft.config.args import MAX_NEW_TOKENS_CAP, RunConfig, spec, specs
from kft.config.files import MAX_CONFIG_BYTES, coerce, config_from_dict, load_config, parse_yes_no, save_config
from kft.config.validation import Problem, SettingsError, check, validate


def _problems(cfg: RunConfig, *sections: str) -> str:
    return "\n".join(map(str, check(cfg, *sections)))


# ---- Problem and SettingsError ----------------------------------------------------------------------------
def test_a_problem_names_its_setting_and_says_what_is_wrong():
    p = Problem("train.seed", "must be between 0 and 4294967295, got -1")
    assert (p.field, p.message) == ("train.seed", "must be between 0 and 4294967295, got -1")
    assert str(p) == "train.seed must be between 0 and 4294967295, got -1"
    assert str(Problem("", "the request is empty")) == "the request is empty"  # the request as a whole
    err = SettingsError([p, Problem("lora.r", "must be at least 1, got 0")])
    assert isinstance(err, ValueError) and err.problems[1].field == "lora.r"
    assert str(err) == ("Invalid settings:\n- train.seed must be between 0 and 4294967295, got -1\n"
                        "- lora.r must be at least 1, got 0")


def test_validation_collects_every_problem_at_once():
    c = RunConfig()
    c.train.learning_rate = 0
    c.train.max_steps = 0
    c.train.num_train_epochs = 0
    c.train.per_device_train_batch_size = 0
    c.lora.r = -1
    with pytest.raises(SettingsError) as err:
        validate(c)
    msg = str(err.value)
    for needle in ("learning_rate", "max_steps", "per_device_train_batch_size", "lora.r"):
        assert needle in msg
    assert msg.count("\n- ") == 4
    assert {p.field for p in err.value.problems} == {"train.learning_rate", "train.max_steps",
                                                     "train.per_device_train_batch_size", "lora.r"}
    with pytest.raises(SettingsError) as same:
        validate(c)  # the module function and the method are one check
    assert same.value.problems == err.value.problems == check(c)


def test_valid_config_passes_and_epochs_can_replace_steps():
    c = RunConfig()
    assert check(c) == [] and validate(c) is c
    c.train.max_steps = 0
    c.train.num_train_epochs = 2
    assert validate(c) is c


def test_only_the_named_sections_are_checked():
    """generate and eval check model + generation only: a training-only mistake in a --config file does
    not stop a generation."""
    c = RunConfig()
    c.train.learning_rate = -1
    c.generation.top_p = 0
    assert {p.field for p in check(c)} == {"train.learning_rate", "generation.top_p"}
    assert [p.field for p in check(c, "model", "generation")] == ["generation.top_p"]
    assert [p.field for p in check(c, "train")] == ["train.learning_rate"]
    assert validate(c, "model", "lora", "data") is c


# ---- bounds and choices, read from the field facts ----------------------------------------------------------
@pytest.mark.parametrize("key,value,says", [
    ("lora.lora_dropout", 1.0, "lora.lora_dropout must be in [0, 1), got 1.0"),
    ("lora.lora_dropout", -0.1, "lora.lora_dropout must be in [0, 1), got -0.1"),
    ("train.seed", -1, "train.seed must be between 0 and 4294967295, got -1"),
    ("train.seed", 2**32, "train.seed must be between 0 and 4294967295, got 4294967296"),
    ("lora.random_state", -5, "lora.random_state must be between 0 and 4294967295"),
    ("lora.random_state", 2**32, "lora.random_state must be between 0 and 4294967295"),
    ("model.max_seq_length", 8, "model.max_seq_length must be at least 16, got 8"),
    ("lora.r", 0, "lora.r must be at least 1, got 0"),
    ("lora.lora_alpha", 0, "lora.lora_alpha must be greater than 0, got 0"),
    ("data.max_rows", 0, "data.max_rows must be greater than 0, got 0"),
    ("train.warmup_steps", -1, "train.warmup_steps must be 0 or more, got -1"),
    ("train.learning_rate", 0, "train.learning_rate must be greater than 0, got 0"),
    ("train.learning_rate", 5, "train.learning_rate 5 is far too large (the seed uses 2e-4)"),
    ("train.weight_decay", -0.01, "train.weight_decay must be between 0 and 1, got -0.01"),
    ("train.save_steps", -1, "train.save_steps must be 0 or more, got -1"),
    ("generation.max_new_tokens", MAX_NEW_TOKENS_CAP + 1,
     f"generation.max_new_tokens must be between 1 and {MAX_NEW_TOKENS_CAP}, got {MAX_NEW_TOKENS_CAP + 1}"),
    ("generation.top_p", 0, "generation.top_p must be in (0, 1], got 0"),
    ("generation.top_p", 1.5, "generation.top_p must be in (0, 1], got 1.5"),
    ("generation.repetition_penalty", 0, "generation.repetition_penalty must be in (0, 10], got 0"),
    ("model.dtype", "bf16", "model.dtype must be one of bfloat16, float16, float32, got 'bf16'"),
    ("model.backend", "jax", "model.backend must be one of auto, unsloth, transformers, got 'jax'"),
    ("lora.bias", "some", "lora.bias must be one of none, all, lora_only, got 'some'"),
    ("data.too_long", "wrap", "data.too_long must be one of drop, truncate, error, got 'wrap'"),
    ("train.preset", "turbo", "train.preset must be one of seed, fast, got 'turbo'"),
    ("train.optim", "adamw_9bit", "train.optim 'adamw_9bit' is not a name transformers knows"),
    ("train.lr_scheduler_type", "zigzag", "train.lr_scheduler_type 'zigzag' is not a name transformers knows"),
])
def test_bounds_and_choices_come_from_the_field_facts(key, value, says):
    c = RunConfig()
    c.set(key, value)
    problems = check(c)
    assert [p.field for p in problems] == [key], problems
    assert str(problems[0]).startswith(says), str(problems[0])


def test_the_edges_of_every_bound_are_where_the_field_facts_say():
    """For every setting with a bound: the bound itself is accepted when inclusive (min/max) and refused
    when exclusive (gt/lt), and a value past it is refused naming the setting."""
    checked = 0
    for s in specs():
        for fact, inside, step in (("min", True, -1), ("max", True, 1), ("gt", False, -1), ("lt", False, 1)):
            edge = getattr(s, fact)
            if edge is None:
                continue
            c = RunConfig()
            c.set(s.key, int(edge) if s.base == "int" else float(edge))
            assert (s.key in _problems(c)) is not inside, (s.key, fact, edge)
            c.set(s.key, edge + step)
            assert f"{s.key} must be" in _problems(c), (s.key, fact, edge + step)
            checked += 1
    assert checked >= 20


def test_nan_and_infinite_numbers_are_refused():
    c = RunConfig()
    c.train.weight_decay = float("nan")
    c.train.learning_rate = float("inf")
    c.generation.temperature = float("nan")
    msg = _problems(c)
    assert "train.weight_decay must be a finite number" in msg
    assert "train.learning_rate must be a finite number" in msg
    assert "generation.temperature must be a finite number" in msg


def test_rules_that_tie_settings_together():
    c = RunConfig()
    c.lora.target_modules = ()
    c.train.padding_free = True
    c.data.too_long = "truncate"
    c.generation.do_sample = True
    c.generation.temperature = 0
    c.model.name = "  "
    c.data.source = ""
    fields = {p.field: p.message for p in check(c)}
    assert fields["lora.target_modules"].startswith("is empty")
    assert "needs data.too_long 'drop' or 'error'" in fields["train.padding_free"]
    assert fields["generation.temperature"] == "must be greater than 0 when sampling, got 0"
    assert fields["model.name"].startswith("is empty: give a Hub id")
    assert fields["data.source"].startswith("is empty: give a Hub dataset id")
    c.generation.do_sample = False
    assert "generation.temperature" not in {p.field for p in check(c)}  # greedy: the temperature is unused


def test_loftq_is_refused_where_peft_cannot_run_it():
    """On CPU (or with a 4-bit base, or without its two keys) the run loaded the model and then failed:
    PEFT's LoftQ needs CUDA and scipy and quantizes the full-precision base itself."""
    cfg = RunConfig()
    cfg.lora.loftq_config = {"loftq_bits": 4}
    problems = " ".join(map(str, check(cfg)))
    assert "needs both loftq_bits and loftq_iter" in problems and "load_in_4bit false" in problems
    assert "needs a CUDA GPU" in problems  # this machine has none
    assert {p.field for p in check(cfg)} == {"lora.loftq_config"}
    cfg.lora.loftq_config = None
    assert not [p for p in check(cfg) if "loftq" in str(p)]


# ---- adding a setting is one edit ---------------------------------------------------------------------------
def test_every_setting_has_help_text():
    missing = [s.key for s in specs() if not (isinstance(s.help, str) and s.help.strip())]
    assert not missing
    assert "4-bit" in spec("model.load_in_4bit").help


def test_every_form_setting_has_a_korean_and_english_label_and_korean_help():
    from kft.ui.strings import TABLES
    from kft.ui.train_form import FORM_FIELDS, field_info, field_label

    form = [s.name for s in specs("model", "lora", "data", "train") if s.form]
    assert sorted(FORM_FIELDS) == sorted(form) and "max_grad_norm" in form  # the form shows every form=True setting
    ko_table, en_table = TABLES["ko"], TABLES["en"]
    for name in form:
        ko, en = ko_table[f"field_label.{name}"], en_table[f"field_label.{name}"]
        assert ko.strip() and en.strip() and ko != en, name
        assert ko_table[f"field_info.{name}"].strip(), name
        assert field_label(name, "en") == f"{en} ({name})" and field_info(name, "en"), name
    assert spec("train.max_grad_norm").help == field_info("max_grad_norm", "en")  # English info: the setting's help
    labelled = {key.removeprefix("field_label.") for key in ko_table if key.startswith("field_label.")}
    assert labelled == set(form)  # no label left behind for a setting that is gone


def test_max_grad_norm_flows_from_its_one_line_to_the_cli_the_trainer_and_validation(tmp_path, capsys):
    """TrainArgs.max_grad_norm was added with one setting(...) line (and its labels): the CLI flag, the
    SFTConfig argument and the bound all follow from it."""
    from kft.cli import build_parser, config_from_args
    from kft.training.job import sft_kwargs

    parser = build_parser()
    ns = parser.parse_args(["train", "--model", "tiny", "--max-grad-norm", "0.3"])
    cfg = config_from_args(ns, ["model", "lora", "data", "train"])
    assert cfg.train.max_grad_norm == 0.3 and validate(cfg) is cfg
    assert sft_kwargs(cfg, tmp_path, None)["max_grad_norm"] == 0.3
    assert sft_kwargs(RunConfig(), tmp_path, (9, 0))["max_grad_norm"] == 1.0
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    usage = " ".join(capsys.readouterr().out.split())
    assert "--max-grad-norm TRAIN.MAX_GRAD_NORM Clip the gradient norm to this value (0 = no clipping). (default: 1.0)" in usage
    cfg.train.max_grad_norm = -1.0
    [problem] = check(cfg)
    assert str(problem) == "train.max_grad_norm must be between 0 and 10000, got -1.0"
    cfg.train.max_grad_norm = 0.0  # 0 = no clipping
    assert check(cfg) == []
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--max-grad-norm", "lots"])  # not a number: a usage error


# ---- settings files (kft.config.files) --------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_and_load_round_trip(tmp_path, suffix):
    c = RunConfig()
    c.model.name = "tiny"
    c.lora.r = 8
    c.lora.target_modules = ("q_proj", "v_proj")
    c.train.learning_rate = 1e-4
    c.train.max_grad_norm = 0.5
    path = save_config(c, tmp_path / f"run{suffix}")
    assert load_config(path) == c
    assert config_from_dict(c.to_dict()) == c


def test_unknown_keys_are_named(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"train": {"learning_rat": 1}}', encoding="utf-8")
    with pytest.raises(ValueError, match="learning_rat"):
        load_config(p)
    with pytest.raises(ValueError, match="Unknown config section"):
        config_from_dict({"trian": {}})


def test_a_hand_written_yaml_in_the_seeds_notation_loads_and_wrong_types_are_named(tmp_path):
    """YAML 1.1 reads 2e-4 (the seed's way of writing the learning rate) as a string: it must still load as
    a number, and a value of the wrong type must be a ValueError naming the key, not a TypeError later."""
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  name: tiny\ntrain:\n  learning_rate: 2e-4\n  max_steps: 60\n  num_train_epochs: 1\n",
                    encoding="utf-8")
    cfg = validate(load_config(path))
    assert cfg.train.learning_rate == 2e-4 and isinstance(cfg.train.learning_rate, float)
    assert cfg.train.num_train_epochs == 1.0
    path.write_text("train:\n  max_steps: lots\n  padding_free: maybe\nlora:\n  r: 2.5\n", encoding="utf-8")
    with pytest.raises(SettingsError) as err:
        load_config(path)
    assert "train.max_steps" in str(err.value) and "train.padding_free" in str(err.value)
    assert "lora.r" in str(err.value)
    assert {p.field for p in err.value.problems} == {"train.max_steps", "train.padding_free", "lora.r"}


def test_target_modules_written_as_one_string_are_names_not_characters(tmp_path):
    """`target_modules: q_proj` in a hand-written YAML became ('q', '_', 'p', ...), passed validation
    and failed only after the base model had loaded."""
    p = tmp_path / "c.yaml"
    p.write_text("lora:\n  target_modules: q_proj\n", encoding="utf-8")
    assert load_config(p).lora.target_modules == ("q_proj",)
    p.write_text("lora:\n  target_modules: 'q_proj, v_proj'\n", encoding="utf-8")
    assert load_config(p).lora.target_modules == ("q_proj", "v_proj")
    p.write_text("lora:\n  target_modules: [q_proj, 7]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lora.target_modules must be layer names"):
        load_config(p)


def test_a_settings_file_cannot_blow_up_memory_or_crash_the_import(tmp_path):
    """Settings files come from anyone (the import button is open in read-only mode too). Nested YAML
    aliases grew ninefold per level once quoted in a message; wrong value types raised TypeError, which
    the UI does not catch, or put a list into the model field."""
    levels = ['a0: &a0 ["xxxxxxxxxx"]'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\nmodel:\n  name: *a7\n", encoding="utf-8")
    with pytest.raises(ValueError, match="aliases"):
        load_config(bomb)
    big = tmp_path / "big.json"
    big.write_text('{"model": {"name": "' + "x" * 1_100_000 + '"}}', encoding="utf-8")
    assert MAX_CONFIG_BYTES == 1_000_000
    with pytest.raises(ValueError, match="the limit is 1,000,000"):
        load_config(big)
    for body, field_name in [("data:\n  source: 2024\n", "data.source"), ("lora:\n  target_modules: 5\n", "lora.target_modules"),
                             ("model:\n  name: [a, b]\n", "model.name")]:
        p = tmp_path / "c.yaml"
        p.write_text(body, encoding="utf-8")
        with pytest.raises(ValueError, match=f"{field_name} must be"):
            load_config(p)
    long = tmp_path / "long.yaml"
    long.write_text("model:\n  name: [" + ", ".join(["[" + ", ".join(["y"] * 50) + "]"] * 50) + "]\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_config(long)
    assert len(str(info.value)) < 400  # the value is quoted cut short, not in full


def test_values_are_read_as_their_settings_type():
    assert coerce(spec("train.learning_rate"), "2e-4") == 2e-4
    assert coerce(spec("train.max_steps"), 60.0) == 60 and isinstance(coerce(spec("train.max_steps"), 60.0), int)
    assert coerce(spec("data.max_rows"), None) is None  # optional
    assert coerce(spec("lora.use_gradient_checkpointing"), "unsloth") == "unsloth"
    assert coerce(spec("lora.use_gradient_checkpointing"), False) is False
    for key, value in [("train.max_steps", 2.5), ("train.max_steps", True), ("train.padding_free", "yes"),
                       ("train.seed", None), ("lora.loftq_config", [1]), ("model.name", 5)]:
        with pytest.raises(ValueError):
            coerce(spec(key), value)
    with pytest.raises(ValueError, match="must be a finite number, got 'nan'"):  # as the form says it
        coerce(spec("train.weight_decay"), "nan")


@pytest.mark.parametrize("text,expected", [("1", True), (" Yes ", True), ("ON", True), ("true", True),
                                           ("0", False), ("no", False), ("Off", False), ("FALSE", False),
                                           ("maybe", None), ("", None)])
def test_yes_no_words(text, expected):
    assert parse_yes_no(text) is expected


def test_integers_beyond_float_range_and_invalid_unicode_are_problems_not_crashes():
    c = RunConfig()
    c.train.max_steps, c.lora.r, c.train.seed = 10**400, -(10**400), 10**400
    c.data.split, c.generation.do_sample, c.generation.temperature = "tr\ud800", True, 1e-300
    fields = {p.field: p.message for p in check(c)}
    assert fields["train.max_steps"].startswith("must be at most 1000000000, got 1000")
    assert "..." in fields["train.seed"]  # quoted cut short, not 400 digits
    assert fields["lora.r"].startswith("must be at least 1")
    assert fields["data.split"].startswith("holds text that is not valid Unicode")
    assert fields["generation.temperature"] == "must be at least 0.01 when sampling, got 1e-300"


def test_settings_files_keep_huge_integers_exact_and_refuse_them_as_floats():
    cfg = config_from_dict({"train": {"max_steps": 10**400}})
    assert cfg.train.max_steps == 10**400 and "train.max_steps" in {p.field for p in check(cfg)}
    with pytest.raises(ValueError, match="train.learning_rate is far too large"):
        config_from_dict({"train": {"learning_rate": 10**400}})
    with pytest.raises(ValueError, match="train.seed must be a finite number, got nan"):
        config_from_dict({"train": {"seed": float("nan")}})


@pytest.mark.parametrize(("section", "values", "expected"), [
    ("train", {"learning_rate": "abc"}, "train.learning_rate must be a number, got 'abc'"),
    ("lora", {"r": 2.5}, "lora.r must be a whole number, got 2.5"),
    ("lora", {"r": None}, "lora.r must be a whole number, got None"),
    ("train", {"max_steps": "1e400"}, "train.max_steps must be a finite number, got '1e400'"),
    ("train", {"max_steps": True}, "train.max_steps must be a number, got True"),
    ("lora", {"target_modules": 5}, "lora.target_modules must be layer names such as q_proj, got 5"),
    ("data", {"source": 5}, "data.source must be text, got 5"),
])
def test_a_settings_file_and_the_form_refuse_a_value_in_the_same_words(section, values, expected):
    """One parser of numbers for every way in (kft.config.files.parse_number): a file's refusal reads like the form's,
    never like Python's ("could not convert string to float")."""
    with pytest.raises(SettingsError) as err:
        config_from_dict({section: values})
    assert expected in str(err.value)
    assert "could not convert" not in str(err.value) and "must be int" not in str(err.value)
