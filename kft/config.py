"""Typed settings for a kft run. Defaults are the seed recipe; every field has a one-line docstring.

Hyperparameters live here once: the CLI flags and the UI widgets read their defaults from these
dataclasses. ``RunConfig.validate()`` collects every problem and raises one ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import reprlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "unsloth/Meta-Llama-3.1-8B-bnb-4bit"
DEFAULT_DATASET = "jojo0217/korean_safe_conversation"
TINY_MODEL = "tiny"
SAMPLE_DATA = "sample"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DTYPES = ("bfloat16", "float16", "float32")
BACKENDS = ("auto", "unsloth", "transformers")
TOO_LONG_POLICIES = ("drop", "truncate", "error")
PRESETS = ("seed", "fast")


@dataclass
class ModelArgs:
    """Which base model to load and how."""

    name: str = DEFAULT_MODEL
    """Hub id, local directory, or "tiny" for the offline tiny Llama."""
    max_seq_length: int = 2048
    """Longest sequence (prompt + answer) in tokens."""
    dtype: str | None = None
    """None = auto: bf16 on compute capability >= 8, fp16 below (T4), fp32 on CPU."""
    load_in_4bit: bool = True
    """Quantize the base weights to 4-bit (GPU only; ignored on CPU)."""
    backend: str = "auto"
    """auto | unsloth | transformers. auto picks Unsloth when CUDA and unsloth are present."""


@dataclass
class LoraArgs:
    """LoRA adapter settings (the seed's ``get_peft_model`` arguments)."""

    r: int = 16
    """Rank of the LoRA update matrices."""
    target_modules: tuple[str, ...] = LORA_TARGETS
    """Linear layers that get an adapter."""
    lora_alpha: int = 16
    """Scaling numerator: the update is scaled by alpha / r (alpha / sqrt(r) with rsLoRA)."""
    lora_dropout: float = 0.0
    """Dropout on the adapter input."""
    bias: str = "none"
    """Which biases to train: none | all | lora_only."""
    use_gradient_checkpointing: str | bool = "unsloth"
    """"unsloth" (offloaded checkpointing), True, or False."""
    random_state: int = 3407
    """Seed for the adapter's initial weights."""
    use_rslora: bool = False
    """Rank-stabilised LoRA scaling."""
    loftq_config: dict[str, Any] | None = None
    """LoftQ initialisation settings, or None."""


@dataclass
class DataArgs:
    """Where the training rows come from."""

    source: str = DEFAULT_DATASET
    """Hub dataset id, a local .jsonl/.json/.csv/.parquet file, or "sample" for the bundled rows."""
    split: str = "train"
    """Split of a Hub dataset."""
    max_rows: int | None = None
    """Use only the first N rows (None = all)."""
    too_long: str = "drop"
    """Rows longer than max_seq_length tokens: drop | truncate | error."""


@dataclass
class TrainArgs:
    """SFT settings (the seed's ``TrainingArguments``)."""

    per_device_train_batch_size: int = 2
    """Rows per micro-batch."""
    gradient_accumulation_steps: int = 4
    """Micro-batches per optimizer step."""
    warmup_steps: int = 5
    """Linear warm-up steps of the learning rate."""
    max_steps: int = 60
    """Optimizer steps; 0 or less means: train num_train_epochs epochs instead."""
    num_train_epochs: float = 1.0
    """Epochs, used only when max_steps <= 0."""
    learning_rate: float = 2e-4
    """Peak learning rate."""
    logging_steps: int = 1
    """Record loss and learning rate every N steps."""
    optim: str = "adamw_8bit"
    """Optimizer name understood by transformers (adamw_8bit falls back to adamw_torch on CPU)."""
    weight_decay: float = 0.01
    """Decoupled weight decay."""
    lr_scheduler_type: str = "linear"
    """Learning-rate schedule."""
    seed: int = 3407
    """Seed for data order and dropout."""
    save_steps: int = 0
    """Save a checkpoint every N steps (0 = only the final adapter)."""
    padding_free: bool = False
    """Concatenate a micro-batch's rows into one sequence with no pad tokens; positions and attention restart at every row."""
    preset: str = "seed"
    """Name of the preset these settings came from (seed | fast); see kft/presets.py."""


@dataclass
class GenerationArgs:
    """Decoding settings for the side-by-side comparison."""

    max_new_tokens: int = 256
    """Tokens to generate per answer (capped by MAX_NEW_TOKENS_CAP on the server)."""
    do_sample: bool = False
    """False = greedy decoding."""
    temperature: float = 0.7
    """Sampling temperature (only with do_sample)."""
    top_p: float = 0.9
    """Nucleus sampling mass (only with do_sample)."""
    repetition_penalty: float = 1.0
    """>1 discourages repeating tokens."""


MAX_NEW_TOKENS_CAP = 1024
MAX_PROMPT_CHARS = 4000


@dataclass
class RunConfig:
    """Everything one training run needs."""

    model: ModelArgs = field(default_factory=ModelArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    generation: GenerationArgs = field(default_factory=GenerationArgs)

    # ---- validation -------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Every problem with this configuration, in plain words (empty when valid)."""
        p: list[str] = []
        m, lo, d, t, g = self.model, self.lora, self.data, self.train, self.generation
        if not str(m.name).strip():
            p.append("model.name is empty: give a Hub id, a local directory or 'tiny'")
        if m.max_seq_length < 16:
            p.append(f"model.max_seq_length must be at least 16, got {m.max_seq_length}")
        if m.dtype is not None and m.dtype not in DTYPES:
            p.append(f"model.dtype must be one of {DTYPES} or empty for auto, got {m.dtype!r}")
        if m.backend not in BACKENDS:
            p.append(f"model.backend must be one of {BACKENDS}, got {m.backend!r}")
        if lo.r <= 0:
            p.append(f"lora.r must be a positive integer, got {lo.r}")
        if lo.lora_alpha <= 0:
            p.append(f"lora.lora_alpha must be positive, got {lo.lora_alpha}")
        if not 0 <= lo.lora_dropout < 1:
            p.append(f"lora.lora_dropout must be in [0, 1), got {lo.lora_dropout}")
        if lo.bias not in ("none", "all", "lora_only"):
            p.append(f"lora.bias must be none, all or lora_only, got {lo.bias!r}")
        if not lo.target_modules:
            p.append("lora.target_modules is empty: name at least one layer such as q_proj")
        p += _loftq_problems(m, lo)
        if lo.use_gradient_checkpointing not in ("unsloth", True, False):
            p.append("lora.use_gradient_checkpointing must be 'unsloth', true or false")
        if not str(d.source).strip():
            p.append("data.source is empty: give a Hub dataset id, a file or 'sample'")
        if d.max_rows is not None and d.max_rows <= 0:
            p.append(f"data.max_rows must be positive or empty, got {d.max_rows}")
        if d.too_long not in TOO_LONG_POLICIES:
            p.append(f"data.too_long must be one of {TOO_LONG_POLICIES}, got {d.too_long!r}")
        if t.optim not in optimizer_names():  # else the run fails only after the model has loaded
            p.append(f"train.optim {_SHORT.repr(t.optim)} is not an optimizer transformers knows "
                     "(e.g. adamw_8bit, adamw_torch)")
        if t.lr_scheduler_type not in scheduler_names():
            p.append(f"train.lr_scheduler_type {_SHORT.repr(t.lr_scheduler_type)} is not a schedule transformers "
                     "knows (e.g. linear, cosine)")
        if t.per_device_train_batch_size <= 0:
            p.append(f"train.per_device_train_batch_size must be at least 1, got {t.per_device_train_batch_size}")
        if t.gradient_accumulation_steps <= 0:
            p.append(f"train.gradient_accumulation_steps must be at least 1, got {t.gradient_accumulation_steps}")
        if t.max_steps <= 0 and t.num_train_epochs <= 0:
            p.append("train.max_steps is 0 or less and train.num_train_epochs is not positive: set one of them")
        if not t.learning_rate > 0:
            p.append(f"train.learning_rate must be greater than 0, got {t.learning_rate}")
        elif t.learning_rate > 1:
            p.append(f"train.learning_rate {t.learning_rate} is far too large (the seed uses 2e-4)")
        if t.warmup_steps < 0:
            p.append(f"train.warmup_steps must be 0 or more, got {t.warmup_steps}")
        if t.logging_steps <= 0:
            p.append(f"train.logging_steps must be at least 1, got {t.logging_steps}")
        if t.weight_decay < 0:
            p.append(f"train.weight_decay must be 0 or more, got {t.weight_decay}")
        if t.save_steps < 0:
            p.append(f"train.save_steps must be 0 or more, got {t.save_steps}")
        if t.padding_free and d.too_long == "truncate":
            p.append("train.padding_free needs data.too_long 'drop' or 'error' (rows are not truncated when padding-free)")
        if t.preset not in PRESETS:
            p.append(f"train.preset must be one of {PRESETS}, got {t.preset!r}")
        for section, obj in (("lora", lo), ("train", t), ("generation", g)):
            for f in fields(obj):
                value = getattr(obj, f.name)
                if isinstance(value, float) and not math.isfinite(value):
                    p.append(f"{section}.{f.name} must be a finite number, got {value}")
        p.extend(generation_problems(g))
        return p

    def validate(self) -> RunConfig:
        """Raise one ValueError listing every problem; return self when valid."""
        problems = self.problems()
        if problems:
            raise invalid_settings(problems)
        return self

    # ---- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lora"]["target_modules"] = list(self.lora.target_modules)
        return d

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Build from a plain dict; unknown sections or keys are an error that names them."""
        sections = {f.name: f.type for f in fields(cls)}
        unknown = [k for k in raw if k not in sections]
        if unknown:
            raise ValueError(f"Unknown config section(s) {unknown}; expected {sorted(sections)}")
        kwargs = {}
        wrong: list[str] = []
        for f in fields(cls):
            sub = f.default_factory()  # type: ignore[misc]
            values = raw.get(f.name) or {}
            if not isinstance(values, dict):
                raise ValueError(f"Config section {f.name!r} must be a mapping, got {type(values).__name__}")
            names = {sf.name for sf in fields(sub)}
            bad = [k for k in values if k not in names]
            if bad:
                raise ValueError(f"Unknown key(s) {bad} in section {f.name!r}; known: {sorted(names)}")
            kinds = {sf.name: str(sf.type) for sf in fields(sub)}
            for k, v in values.items():
                if k == "target_modules" and v is not None:
                    # "q_proj" or "q_proj,v_proj" is a list of names, not a sequence of characters
                    if isinstance(v, str):
                        v = tuple(x.strip() for x in v.split(",") if x.strip())
                    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
                        wrong.append(f"{f.name}.{k} must be layer names such as q_proj, got {_SHORT.repr(values[k])}")
                        continue
                    v = tuple(v)
                try:
                    v = _coerce(kinds[k], v)
                except ValueError:
                    wrong.append(f"{f.name}.{k} must be {kinds[k]}, got {_SHORT.repr(v)}")
                    continue
                setattr(sub, k, v)
            kwargs[f.name] = sub
        if wrong:
            raise invalid_settings(wrong)
        return cls(**kwargs)

    def save(self, path: str | Path) -> Path:
        """Write as YAML (.yaml/.yml) or JSON (anything else)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            path.write_text(yaml.safe_dump(self.to_dict(), allow_unicode=True, sort_keys=False), encoding="utf-8")
        else:
            path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a YAML or JSON file written by ``save`` (or by hand)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"Config file not found: {path}")
        if path.stat().st_size > MAX_CONFIG_BYTES:  # a settings file is a few kB; imports come from anyone
            raise ValueError(f"Config file {path.name} is {path.stat().st_size:,} bytes; the limit is "
                             f"{MAX_CONFIG_BYTES:,}")
        text = path.read_text(encoding="utf-8-sig")
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                raw = _load_yaml(text) or {}
            else:
                raw = json.loads(text)
        except Exception as exc:  # noqa: BLE001 - report any parse error in plain words
            raise ValueError(f"Could not parse config file {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"Config file {path} must hold a mapping of sections")
        return cls.from_dict(raw)


MAX_CONFIG_BYTES = 1_000_000
# values are quoted in messages with bounded size: a nested value is cut, never expanded in full
_SHORT = reprlib.Repr()  # (keyword arguments to Repr need Python 3.12)
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 4, 60, 60


def _load_yaml(text: str) -> Any:
    """yaml.safe_load without aliases: nested aliases (&a / *a) expand a file of a few hundred bytes into
    gigabytes once the value is used (a "billion laughs" settings file, uploaded by anyone)."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError("aliases (*name) are not allowed in a settings file")
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=NoAliases)  # noqa: S506 - a SafeLoader subclass


def invalid_settings(problems: list[str]) -> ValueError:
    """The one error for settings that cannot be used: every problem on its own line."""
    return ValueError("Invalid settings:\n- " + "\n- ".join(problems))


def parse_yes_no(text: str) -> bool | None:
    """A yes/no word (1/true/yes/on, 0/false/no/off; any case, spaces ignored) as a bool; None for
    anything else, which each caller refuses in its own words. Used for environment settings and for
    checkbox values sent as text through the API."""
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    return None


def _coerce(kind: str, value: Any) -> Any:
    """A value read from a file as its field's type (``kind`` is the annotation: "int", "float | None", ...).

    YAML 1.1 reads 2e-4 (no dot) as a string, so numbers written as text are parsed; ValueError otherwise."""
    base = kind.replace(" | None", "")
    if value is None:
        if kind.endswith("| None"):
            return None
        raise ValueError(kind)
    if base in ("int", "float"):
        if isinstance(value, bool):
            raise ValueError(kind)
        number = float(value) if isinstance(value, str) else value
        if not isinstance(number, (int, float)):
            raise ValueError(kind)
        if base == "int":
            if not float(number).is_integer():
                raise ValueError(kind)
            return int(number)
        return float(number)
    if base == "bool" and not isinstance(value, bool):
        raise ValueError(kind)
    if base == "str" and not isinstance(value, str):
        raise ValueError(kind)
    if base == "str | bool" and not isinstance(value, (str, bool)):
        raise ValueError(kind)
    return value


def _loftq_problems(m: ModelArgs, lo: LoraArgs) -> list[str]:
    """LoftQ initialises the LoRA from the full-precision weights and quantizes the base itself: PEFT runs
    it on CUDA only, needs scipy, and must not be given a model already loaded in 4-bit."""
    cfg = lo.loftq_config
    if not cfg:
        return []
    import importlib.util

    import torch

    p = []
    if not isinstance(cfg, dict) or not {"loftq_bits", "loftq_iter"} <= set(cfg):
        p.append("lora.loftq_config needs both loftq_bits and loftq_iter, e.g. {\"loftq_bits\": 4, \"loftq_iter\": 1}")
    if m.load_in_4bit:
        p.append("lora.loftq_config needs model.load_in_4bit false: LoftQ quantizes the base itself")
    if not torch.cuda.is_available():
        p.append("lora.loftq_config needs a CUDA GPU (PEFT runs LoftQ on CUDA only); leave it empty here")
    if importlib.util.find_spec("scipy") is None:
        p.append("lora.loftq_config needs scipy: pip install scipy")
    return p


@functools.cache
def optimizer_names() -> tuple[str, ...]:
    """Names transformers accepts for ``train.optim``."""
    from transformers.training_args import OptimizerNames

    return tuple(o.value for o in OptimizerNames)


@functools.cache
def scheduler_names() -> tuple[str, ...]:
    """Names transformers accepts for ``train.lr_scheduler_type``."""
    from transformers.trainer_utils import SchedulerType

    return tuple(s.value for s in SchedulerType)


def generation_problems(g: GenerationArgs) -> list[str]:
    """Problems with decoding settings (used by the comparison tab and the CLI too)."""
    p: list[str] = []
    if not 1 <= g.max_new_tokens <= MAX_NEW_TOKENS_CAP:
        p.append(f"generation.max_new_tokens must be between 1 and {MAX_NEW_TOKENS_CAP}, got {g.max_new_tokens}")
    if g.do_sample and not g.temperature > 0:
        p.append(f"generation.temperature must be greater than 0 when sampling, got {g.temperature}")
    if not 0 < g.top_p <= 1:
        p.append(f"generation.top_p must be in (0, 1], got {g.top_p}")
    if not g.repetition_penalty > 0:
        p.append(f"generation.repetition_penalty must be greater than 0, got {g.repetition_penalty}")
    return p


def resolve_dtype(requested: str | None, capability: tuple[int, int] | None) -> str:
    """The dtype to compute in. capability is the CUDA compute capability, None on CPU.

    bf16 needs compute capability 8.0 (Ampere) or newer. On a T4 (7.5)
    ``torch.cuda.is_bf16_supported()`` can answer True (emulation), so it is not asked.
    """
    if requested:
        if capability is None and requested != "float32":
            logger.info("dtype %s requested on CPU; using float32", requested)
            return "float32"
        if requested == "bfloat16" and capability is not None and capability < (8, 0):
            raise ValueError(f"bfloat16 needs compute capability 8.0 or newer; this GPU has {capability[0]}.{capability[1]}. Use float16.")
        return requested
    if capability is None:
        return "float32"
    return "bfloat16" if capability >= (8, 0) else "float16"


def cuda_capability() -> tuple[int, int] | None:
    """Compute capability of GPU 0, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability(0))  # type: ignore[return-value]


def field_docs(cls: type) -> dict[str, str]:
    """The one-line docstring under each dataclass field (for CLI help and UI info text)."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = nxt.value.value.strip()
    return docs


SECTIONS: dict[str, type] = {"model": ModelArgs, "lora": LoraArgs, "data": DataArgs, "train": TrainArgs,
                             "generation": GenerationArgs}
