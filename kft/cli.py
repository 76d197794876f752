"""Headless command line: python -m kft train | generate | eval. The same code the UI uses."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from .config.args import FieldSpec, RunConfig, specs
from .config.files import coerce, load_config, parse_yes_no, save_config
from .config.validation import validate
from .runs.integrity import os_reason
from .system.distributed import is_main


def _parser_for(s: FieldSpec) -> Any:
    """The argparse type of one setting: text to the setting's type, or a usage error that names it."""

    def parse(text: str) -> Any:
        try:
            if s.base == "bool" or (s.base == "str | bool" and text != "unsloth"):
                flag = parse_yes_no(text)
                if flag is None:
                    raise ValueError(f"must be true or false (also yes/no, on/off, 1/0), got {text!r}")
                return flag
            if s.base.startswith("dict"):
                try:
                    value = json.loads(text)
                except (ValueError, RecursionError):  # not JSON, nested too deeply, a number of 4300+ digits
                    raise ValueError(f"must be a JSON object such as '{{\"loftq_bits\": 4}}', got {text!r}") from None
                return coerce(s, value)
            return coerce(s, text)
        except ValueError as exc:  # worded as the form and settings files word it (kft.config.files)
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _add_setting_flags(parser: argparse.ArgumentParser, sections: Sequence[str]) -> None:
    """One flag per setting, with its help and type from kft.config.args (--flag-name, or the setting's ``flag``)."""
    for section in sections:
        group = parser.add_argument_group(f"{section} settings")
        for s in specs(section):
            kw: dict[str, Any] = {"dest": s.key, "default": None, "help": f"{s.help} (default: {s.default})"}
            if s.name == "target_modules":
                kw.update(nargs="+")
            else:
                kw.update(type=_parser_for(s), metavar="true|false" if s.base == "bool" else None)
            group.add_argument("--" + (s.flag or s.name.replace("_", "-")), **kw)


def config_from_args(ns: argparse.Namespace, sections: Sequence[str]) -> RunConfig:
    """Config file (if any) first, then every flag that was given."""
    config = load_config(ns.config) if getattr(ns, "config", None) else RunConfig()
    preset = getattr(ns, "train.preset", None)
    if preset is not None and "train" in sections:  # the preset first, then every explicit flag over it
        from .config.presets import apply_preset

        apply_preset(config, preset)
    for key, value in vars(ns).items():
        if "." in key and value is not None:
            section, name = key.split(".", 1)
            if section in sections:
                setattr(getattr(config, section), name, tuple(value) if name == "target_modules" else value)
    return config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kft", description="Korean safety LoRA fine-tuning, headless.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a LoRA adapter")
    t.add_argument("--config", help="YAML or JSON run configuration; flags override it")
    t.add_argument("--output-dir", help="new run directory (default: runs/<timestamp>)")
    t.add_argument("--save-config", help="write the resolved configuration here and continue")
    _add_setting_flags(t, ["model", "lora", "data", "train"])
    g = sub.add_parser("generate", help="base and LoRA answers for one prompt")
    g.add_argument("--adapter", required=True, help="run directory (or its adapter/ folder)")
    g.add_argument("--instruction", required=True)
    g.add_argument("--input", default="")
    g.add_argument("--json", action="store_true", help='print {"base": ..., "lora": ...}')
    _add_setting_flags(g, ["model", "generation"])
    e = sub.add_parser("eval", help="refusal scorecard of base vs LoRA over a prompt set")
    e.add_argument("--adapter", required=True, help="run directory (or its adapter/ folder)")
    e.add_argument("--prompts", default="presets", help="a .jsonl with prompt and label per row, or 'presets'")
    e.add_argument("--json", action="store_true", help="print one JSON object with the rates and rows")
    e.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    _add_setting_flags(e, ["model", "generation"])
    return p


def _adapter_dir(ns: argparse.Namespace) -> Path:
    """--adapter as an adapter folder: a run directory means its adapter/ folder."""
    adapter_dir = Path(ns.adapter)
    if not adapter_dir.exists():
        raise ValueError(f"Adapter not found: {adapter_dir}")
    return adapter_dir / "adapter" if (adapter_dir / "adapter").is_dir() else adapter_dir


def _model_from_adapter(ns: argparse.Namespace, config: RunConfig) -> None:
    """Model settings the adapter was trained with (kft.models.loading.trained_base), for every model flag not given."""
    from .models.loading import ModelLoadError, trained_base

    try:
        trained = trained_base(_adapter_dir(ns))
    except ModelLoadError:
        if getattr(ns, "model.name", None) is None:
            raise
        return  # --model says which base; nothing else to take over
    for f in fields(config.model):
        if getattr(ns, f"model.{f.name}", None) is None:
            setattr(config.model, f.name, getattr(trained, f.name))


def cmd_train(ns: argparse.Namespace) -> int:
    from .models.loading import preload_backend
    from .runs.store import claim
    from .system.distributed import is_distributed
    from .training.preflight import check_data, check_model_available

    config = validate(config_from_args(ns, ["model", "lora", "data", "train"]), "model", "lora", "data", "train")
    preload_backend(config.model.backend)  # Unsloth before kft.training.job imports transformers
    from .training.job import TrainingJob

    if is_distributed() and not ns.output_dir:
        raise ValueError("under torchrun / accelerate launch give --output-dir (every rank must agree on it)")
    check_model_available(config.model.name)  # bad input (exit 2), before any run directory is made
    check_data(config.data)  # as the app's Start does: a missing file or a bad row leaves no failed run behind
    out = Path(ns.output_dir) if ns.output_dir else claim(Path("runs")).path
    job = TrainingJob(config, out).start()
    if ns.save_config:  # after start: a config kept inside --output-dir must not make it 'already hold files'
        try:
            save_config(config, ns.save_config)
        except OSError as exc:
            print(f"warning: could not save the configuration to {ns.save_config}: {exc}", file=sys.stderr)
    signal.signal(signal.SIGINT, lambda *_: job.stop())
    seen = 0
    say = is_main()  # under torchrun only rank 0 prints
    while True:
        finished = job.join(0.5)
        snap = job.snapshot()
        new = snap.log_count - seen  # log_tail holds only the last lines: count, don't index
        for line in snap.log_tail[-new:] if new > 0 else []:
            if say:
                print(line, flush=True)
        seen = snap.log_count
        if finished:
            break
    snap = job.snapshot()
    if say:
        print(f"status: {snap.status}; run directory: {out}")
    if snap.status == "failed":
        print(f"error: {snap.error}", file=sys.stderr)
        return 1
    return 0 if snap.status == "completed" else 130


def _generator(ns: argparse.Namespace, config: RunConfig):
    from .data.template import PromptTemplate
    from .inference.generate import SideBySideGenerator
    from .models.loading import load_adapter, load_base

    # before loading weights; only these sections, so a training-only setting in --config does not stop it
    validate(config, "model", "generation")
    adapter_dir = _adapter_dir(ns)
    _model_from_adapter(ns, config)
    loaded = load_adapter(load_base(config.model), adapter_dir)
    return SideBySideGenerator(loaded, PromptTemplate.load(adapter_dir))


def cmd_generate(ns: argparse.Namespace) -> int:
    from .inference.generate import PromptError, generate_pair, prompt_problems

    config = config_from_args(ns, ["model", "generation"])
    problems = prompt_problems(ns.instruction, ns.input)
    if problems:
        raise PromptError("; ".join(problems))
    generator = _generator(ns, config)
    result = generate_pair(generator, ns.instruction, ns.input, config.generation)
    print(json.dumps({"base": result.base, "lora": result.lora}, ensure_ascii=False) if ns.json
          else f"=== base ===\n{result.base}\n\n=== LoRA ===\n{result.lora}")
    return 0


def cmd_eval(ns: argparse.Namespace) -> int:
    from .inference.generate import PromptError, prompt_problems
    from .inference.safety import load_prompt_set, run_scorecard

    config = config_from_args(ns, ["model", "generation"])
    if ns.limit is not None and ns.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {ns.limit}")
    prompts = load_prompt_set(ns.prompts)[: ns.limit]
    for p in prompts:  # the prompt text is checked here, where it comes in (encode checks only the fit)
        problems = prompt_problems(p["prompt"], p.get("input") or "")
        if problems:
            raise PromptError("; ".join(problems))
    generator = _generator(ns, config)
    card = run_scorecard(generator, prompts, config.generation)
    print(json.dumps(card.to_dict(), ensure_ascii=False) if ns.json else card.summary_text())
    return 0


QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def quiet_libraries() -> None:
    """kft's lines only (without --verbose): no progress bars from the Hub, datasets and transformers (which follows
    the Hub's switch), and no bitsandbytes import-time warning ("pip install kernels": a CPU kernel kft never uses).
    Set before those libraries are imported (the commands import them lazily)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not ns.verbose:
        quiet_libraries()
    handlers = {"train": cmd_train, "generate": cmd_generate, "eval": cmd_eval}
    try:
        return handlers[ns.command](ns)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # an output directory that cannot be made, a full disk: kft's words, not Python's
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: could not write{where}: {os_reason(exc)}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
