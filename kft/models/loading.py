"""Loading models: the ONE place that picks Unsloth or transformers + PEFT, and says why.

``load_base`` gives a ``LoadedModel`` without LoRA; ``attach_lora`` adds a new adapter, ``load_adapter`` a trained one.
Import order matters: Unsloth must be imported before transformers/peft/trl are used (``preload_backend`` does it
at the start of the app and of ``kft train``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.args import TINY_MODEL, LoraArgs, ModelArgs
from ..runs.store import RunDir
from ..system.distributed import is_distributed, local_rank, world_size
from ..system.hardware import cuda_capability, gpu_name, has_cuda, has_package, resolve_dtype
from .padding import PadChoice, apply_pad, choose_pad

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says what to do."""


@dataclass
class LoadedModel:
    """A base model (with or without adapters) and everything known about how it was loaded."""

    model: Any
    tokenizer: Any
    backend: str
    reason: str
    dtype: str
    name: str
    path: str
    quantized: bool
    max_seq_length: int
    pad: PadChoice | None = None  # the pad chosen at load (kft.models.padding); saved in the run's template.json

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def describe(self) -> str:
        q = "4-bit" if self.quantized else self.dtype
        return f"{self.name} on {self.backend} ({q}, {self.device}): {self.reason}"


def choose_backend(requested: str = "auto") -> tuple[str, str]:
    """(backend, reason). The only place in kft that decides between Unsloth and transformers."""
    cuda, has_unsloth = has_cuda(), has_package("unsloth")
    if requested == "unsloth":
        if not cuda:
            raise ModelLoadError("backend 'unsloth' needs a CUDA GPU and none was found; use backend 'auto' or 'transformers'")
        if not has_unsloth:
            raise ModelLoadError("backend 'unsloth' requested but the package is missing: pip install -r requirements-gpu.txt")
        return "unsloth", "requested explicitly"
    if requested == "transformers":
        return "transformers", "requested explicitly"
    if not cuda:
        ddp = f" (distributed over {world_size()} processes)" if is_distributed() else ""
        return "transformers", f"no CUDA GPU found, so Unsloth cannot run; using transformers + PEFT on the CPU in full precision{ddp}"
    if is_distributed():
        return "transformers", (f"distributed data parallel over {world_size()} processes: kft runs DDP on "
                                "transformers + PEFT (Unsloth's multi-GPU mode is not used)")
    if not has_unsloth:
        return "transformers", "CUDA GPU found but unsloth is not installed (pip install -r requirements-gpu.txt); using transformers + PEFT + bitsandbytes"
    return "unsloth", f"CUDA GPU ({gpu_name()}) and unsloth are present"


def preload_backend(requested: str = "auto") -> str | None:
    """Import Unsloth now if it will be the backend: before transformers, peft and trl (it patches them), and when
    the process starts rather than after the user presses Start (the import took about 40 s on the H200 host, and
    the first training step is meant to come within 60 s of Start). The backend, or None when the request cannot be
    served (loading the model says why, in the user's terms)."""
    try:
        backend, _ = choose_backend(requested)
    except ModelLoadError:
        return None
    if backend == "unsloth":
        import time

        t0 = time.monotonic()
        import unsloth  # noqa: F401

        logger.info("unsloth imported in %.0f s", time.monotonic() - t0)
    return backend


def resolve_model_path(name: str) -> str:
    """'tiny' -> the cached tiny model dir; an existing directory stays; anything else is a Hub id."""
    if name == TINY_MODEL:
        from .tiny import tiny_model_dir

        return str(tiny_model_dir())
    p = Path(name).expanduser()
    try:
        is_model, exists = (p / "config.json").is_file(), p.exists()
    except (OSError, ValueError):  # a name too long for a path, a NUL byte: not a directory here either
        is_model, exists = False, True
    if is_model:
        return str(p)
    if exists or name.startswith((".", "/", "~")):
        # one answer whether the path exists or not: the model field must not tell a caller which server paths exist
        raise ModelLoadError(f"Model directory not found: {name[:200]} (a model directory holds config.json); give "
                             f"a model directory, a Hub id or '{TINY_MODEL}'")
    return name


def _load_error(name: str, exc: Exception, path: str | None = None) -> ModelLoadError:
    """The load failure in words: a local directory's own cause (its files), never the network; a Hub id's may be."""
    cause = str(exc)[:300].rstrip(". ")
    if path is not None and Path(path).is_dir():
        hint = "Check its config.json, its tokenizer files and its weights (*.safetensors)"
        try:
            json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            hint = f"Its config.json could not be read ({err})"
        except ValueError as err:
            hint = f"Its config.json is not valid JSON ({err})"
        return ModelLoadError(f"Could not load the local model directory {name!r}: {cause}. {hint}; the "
                              "directory is read as it is, nothing is downloaded for it.")
    return ModelLoadError(f"Could not load model {name!r}: {cause}. If it is a "
                          "Hub id, this machine needs network access or the model in its Hugging Face cache; "
                          "otherwise give a local model directory, or 'tiny' for the offline tiny model.")


def load_base(args: ModelArgs) -> LoadedModel:
    """Load the base model and tokenizer on the chosen backend (no LoRA yet)."""
    backend, reason = choose_backend(args.backend)
    path = resolve_model_path(args.name)
    capability = cuda_capability()
    dtype = resolve_dtype(args.dtype, capability)
    logger.info("model %s: backend=%s (%s), dtype=%s", args.name, backend, reason, dtype)
    loaded = (_load_unsloth(args, path, dtype) if backend == "unsloth"
              else _load_transformers(args, path, dtype, capability is not None))
    loaded.reason = reason
    return loaded


def _unsloth_pad(args: ModelArgs, path: str, folder: str) -> tuple[PadChoice, str | None]:
    """The pad for Unsloth, chosen before it sees the tokenizer: Unsloth refuses a tokenizer whose pad is its EOS
    when it finds no spare token ("Could not find a valid pad token"). Its from_pretrained takes a tokenizer by name
    only (``tokenizer_name``), so a tokenizer given a reserved token as its pad is saved in ``folder`` and named
    there (None: the model's own tokenizer is fine). A pad that needs a new embedding row cannot be given to Unsloth
    (it loads the model and judges the tokenizer in one call, before kft could resize the embedding): that is
    refused here, in words, with the transformers backend as the way out."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001
        raise _load_error(args.name, exc, path) from exc
    rows = getattr(config.get_text_config(), "vocab_size", None) or len(tokenizer)
    choice = choose_pad(tokenizer, rows)
    if choice.how == "kept":
        return choice, None
    if choice.rows > rows:
        raise ModelLoadError(f"Could not load model {args.name!r} on Unsloth: its tokenizer has no pad token apart "
                             f"from its EOS, no spare special token, and every one of the {rows:,} embedding rows is "
                             "a real token, so a pad needs a new row, which Unsloth refuses. Use --backend "
                             "transformers (it adds the row).")
    apply_pad(tokenizer, None, choice)
    tokenizer.save_pretrained(folder)
    return choice, folder


def _load_unsloth(args: ModelArgs, path: str, dtype: str) -> LoadedModel:
    import tempfile

    import torch
    import unsloth  # noqa: F401  (patches transformers/peft/trl: import first)
    from unsloth import FastLanguageModel

    with tempfile.TemporaryDirectory(prefix="kft-tokenizer-") as folder:
        choice, tokenizer_name = _unsloth_pad(args, path, folder)
        try:
            model, tokenizer = FastLanguageModel.from_pretrained(
                model_name=path, max_seq_length=args.max_seq_length, dtype=getattr(torch, dtype),
                trust_remote_code=False, load_in_4bit=args.load_in_4bit,
                **({"tokenizer_name": tokenizer_name} if tokenizer_name else {}))
        except Exception as exc:  # noqa: BLE001
            raise _load_error(args.name, exc, path) from exc
    apply_pad(tokenizer, model, choice)
    return LoadedModel(model, tokenizer, "unsloth", "", dtype, args.name, path, args.load_in_4bit, args.max_seq_length,
                       choice)


def _load_transformers(args: ModelArgs, path: str, dtype: str, on_gpu: bool) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quant = None
    if on_gpu and args.load_in_4bit:
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=getattr(torch, dtype))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), quantization_config=quant,
                                                     trust_remote_code=False,
                                                     device_map={"": local_rank()} if on_gpu else None)
    except Exception as exc:  # noqa: BLE001
        raise _load_error(args.name, exc, path) from exc
    choice = choose_pad(tokenizer, model.get_input_embeddings().weight.shape[0])
    apply_pad(tokenizer, model, choice)
    return LoadedModel(model, tokenizer, "transformers", "", dtype, args.name, path, quant is not None,
                       args.max_seq_length, choice)


def to_lora_kwargs(args: LoraArgs) -> dict[str, Any]:
    """The seed's get_peft_model keyword arguments."""
    return {"r": args.r, "target_modules": list(args.target_modules), "lora_alpha": args.lora_alpha,
            "lora_dropout": args.lora_dropout, "bias": args.bias, "use_rslora": args.use_rslora,
            "loftq_config": args.loftq_config}


def attach_lora(loaded: LoadedModel, args: LoraArgs) -> LoadedModel:
    """Add a fresh trainable adapter named 'default'."""
    import torch

    kwargs = to_lora_kwargs(args)
    if loaded.backend == "unsloth":
        from unsloth import FastLanguageModel

        loaded.model = FastLanguageModel.get_peft_model(loaded.model, random_state=args.random_state,
                                                        use_gradient_checkpointing=args.use_gradient_checkpointing,
                                                        max_seq_length=loaded.max_seq_length, **kwargs)
        return loaded
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    checkpointing = bool(args.use_gradient_checkpointing)
    if loaded.quantized:
        loaded.model = prepare_model_for_kbit_training(loaded.model, use_gradient_checkpointing=checkpointing,
                                                       gradient_checkpointing_kwargs={"use_reentrant": False})
    elif checkpointing:
        loaded.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        loaded.model.enable_input_require_grads()
    kwargs.pop("loftq_config")
    config = LoraConfig(task_type="CAUSAL_LM", **kwargs,
                        **({"loftq_config": args.loftq_config, "init_lora_weights": "loftq"} if args.loftq_config else {}))
    torch.manual_seed(args.random_state)
    loaded.model = get_peft_model(loaded.model, config)
    return loaded


def _adapter_folder(path: str | Path) -> Path:
    """The folder holding adapter_config.json: ``path`` itself, or a run directory's ``adapter/``."""
    path = Path(path)
    if RunDir(path).adapter.is_dir():  # a run directory
        path = RunDir(path).adapter
    if not (path / "adapter_config.json").is_file():
        raise ModelLoadError(f"No adapter found at {path}: expected adapter_config.json (a run's adapter/ folder)")
    return path


def _refuse_non_finite(adapter_dir: Path) -> None:
    """ModelLoadError for an adapter holding NaN or inf: sampling from it fails, greedy text from it is noise."""
    import torch
    from safetensors import safe_open

    file = adapter_dir / "adapter_model.safetensors"
    if not file.is_file():
        return
    with safe_open(str(file), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open is not a dict
            if not torch.isfinite(f.get_tensor(key)).all():
                raise ModelLoadError(f"the adapter of {adapter_dir.parent.name} holds weights that are not finite "
                                     "(NaN or inf): its training diverged. Train again with a lower learning rate "
                                     "or weight decay")


def load_adapter(loaded: LoadedModel, adapter_dir: str | Path, name: str = "default") -> LoadedModel:
    """Put a trained adapter (PEFT format) onto the base model under ``name`` and make it active."""
    adapter_dir = _adapter_folder(adapter_dir)
    _refuse_non_finite(adapter_dir)
    _apply_saved_pad(loaded, adapter_dir)
    from peft import PeftModel

    if isinstance(loaded.model, PeftModel):
        if name in loaded.model.peft_config:
            raise ModelLoadError(f"An adapter named {name!r} is already loaded; pick another name")
        loaded.model.load_adapter(str(adapter_dir), adapter_name=name)
    else:
        loaded.model = PeftModel.from_pretrained(loaded.model, str(adapter_dir), adapter_name=name)
        if loaded.backend == "unsloth":
            # Unsloth's own LoRA path, as get_peft_model sets it for training: without it PEFT computes the LoRA in
            # fp32 and the answers differ from the trained model's (0.35 on logits up to 10 on an H200, 2026-11-30)
            from unsloth import FastLanguageModel

            loaded.model = FastLanguageModel.patch_peft_model(loaded.model, use_gradient_checkpointing=False)
    loaded.model.set_adapter(name)
    return loaded


def _apply_saved_pad(loaded: LoadedModel, adapter_dir: Path) -> None:
    """The pad the adapter was trained with (its template.json), on the base model before the adapter goes on: an
    added pad's embedding row must exist before PEFT loads the adapter's weights."""
    from ..data.template import saved_pad

    choice = PadChoice.from_json(saved_pad(adapter_dir))
    if choice is None or choice == loaded.pad:
        return
    try:
        apply_pad(loaded.tokenizer, loaded.model, choice)
    except ValueError as exc:
        raise ModelLoadError(f"the adapter at {adapter_dir} does not fit this base model: {exc}") from exc
    loaded.pad = choice


def trained_base(adapter_dir: str | Path) -> ModelArgs:
    """The base model an adapter needs: its run's model settings (run.json beside adapter/), else adapter_config's."""
    adapter_dir = _adapter_folder(adapter_dir)
    raw = RunDir(adapter_dir.parent).read_json()
    if raw is not None:
        config = raw.get("config")
        model = config.get("model") if isinstance(config, dict) else None
        if isinstance(model, dict):
            return ModelArgs(**{k: v for k, v in model.items() if k in ModelArgs.__dataclass_fields__})
    base = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{adapter_dir}: adapter_config.json does not say which base model it belongs to")
    return ModelArgs(name=base)


def for_inference(loaded: LoadedModel) -> None:
    """Switch to inference mode (Unsloth's fast path on that backend)."""
    if loaded.backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(loaded.model)
    else:
        loaded.model.eval()


def limit_checkpointing(model: Any, layers: int | None) -> tuple[int, int]:
    """Let only the first ``layers`` decoder layers recompute activations (gradient checkpointing); the others keep
    them. Call after the trainer turned checkpointing on (Unsloth's train() turns it on in every layer).
    Returns (layers checkpointing, decoder layers)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    blocks = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    on = [m for m in blocks if getattr(m, "gradient_checkpointing", False)]
    if layers is not None:
        for m in on[layers:]:
            m.gradient_checkpointing = False
        on = on[:layers]
    return len(on), len(blocks)


def for_training(loaded: LoadedModel) -> None:
    if loaded.backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_training(loaded.model)
    else:
        loaded.model.train()
