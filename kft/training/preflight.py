"""Checks made before a run starts, and the data preview. Nothing here loads model weights.

``check_model_available``: can the model be loaded from here; ``check_data``: local data reads and validates, a Hub
dataset exists; ``preview_data``: a few rows in the exact training text, with lengths and every row problem.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.args import SAMPLE_DATA, TINY_MODEL, DataArgs
from ..config.validation import looks_like_hub_id
from ..data.rows import FILE_SUFFIXES, DataError, count_records, iter_records, load_rows, measure, validate_records
from ..data.template import DEFAULT_TEMPLATE, PromptTemplate

logger = logging.getLogger(__name__)

HUB_TIMEOUT_S = 10.0
PREVIEW_ROWS = 3
PREVIEW_PROBLEMS = 500
PREVIEW_MEASURED_ROWS = 2000  # rows whose tokens the preview counts
CHECKED_ROWS = 10_000  # rows the preview and the check before a run read (the run itself reads and checks every row)


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.HF_HUB_OFFLINE or env.strip().lower() in ("1", "true", "yes", "on")


def _hub_exists(repo_id: str, repo_type: str) -> None:
    """Ask the Hub whether the repository exists; raise ValueError in plain words if not."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    what = "Model" if repo_type == "model" else "Dataset"
    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return  # it exists; downloading it needs a token with access (HF_TOKEN)
    except RepositoryNotFoundError as exc:
        raise ValueError(f"{what} {repo_id!r} was not found on the Hugging Face Hub: check the id") from exc
    except Exception as exc:  # noqa: BLE001 - no network, proxy, timeout: all mean "cannot be found from here"
        raise ValueError(f"{what} {repo_id!r} cannot be found offline: it is not in this machine's Hugging Face "
                         f"cache and the Hub could not be reached ({type(exc).__name__})") from exc


def check_model_available(name: str) -> None:
    """Raise ValueError unless the model can be loaded from here (checked without loading anything)."""
    from ..models.loading import ModelLoadError, resolve_model_path

    name = name.strip()
    if name == TINY_MODEL:
        return
    try:
        path = resolve_model_path(name)
    except ModelLoadError as exc:
        raise ValueError(str(exc)) from exc
    if Path(path).is_dir():
        return
    if not looks_like_hub_id(name):
        raise ValueError(f"Model {name!r} is neither a local model directory nor a Hugging Face Hub id (org/name)")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if _offline():
        raise ValueError(f"Model {name!r} cannot be found offline: it is not in this machine's Hugging Face cache "
                         "and offline mode is on (HF_HUB_OFFLINE). Download it first, give a local model "
                         f"directory, or use '{TINY_MODEL}'.")
    _hub_exists(name, "model")


def _dataset_cached(dataset_id: str) -> bool:
    from datasets import config as ds_config
    from huggingface_hub import constants

    hub_dir = Path(constants.HF_HUB_CACHE) / ("datasets--" + dataset_id.replace("/", "--"))
    ds_dir = Path(ds_config.HF_DATASETS_CACHE) / dataset_id.replace("/", "___")
    return hub_dir.is_dir() or ds_dir.is_dir()


def _local(source: str) -> bool:
    return source == SAMPLE_DATA or Path(source).expanduser().is_file()


def check_data(args: DataArgs) -> None:
    """Local data (sample or file) is read and validated; a Hub dataset must exist. Raises ValueError."""
    source = args.source.strip()
    path = Path(source).expanduser()
    if source == SAMPLE_DATA or path.exists() or path.suffix.lower() in FILE_SUFFIXES:
        # the first CHECKED_ROWS rows only: a file of millions of rows blocked Start for minutes; the run checks the
        # rest as it reads them (and fails listing the bad rows). DataError (a ValueError) lists every bad row seen.
        limit = min(args.max_rows or CHECKED_ROWS, CHECKED_ROWS)
        load_rows(dataclasses.replace(args, max_rows=limit), keep=0)
        return
    if not looks_like_hub_id(source):
        raise DataError(f"Data source {source!r} is not a Hugging Face dataset id (org/name), "
                        f"an uploaded file or '{SAMPLE_DATA}'")
    if _dataset_cached(source):
        return
    if _offline():
        raise DataError(f"Dataset {source!r} cannot be found offline: it is not in this machine's Hugging Face cache "
                        f"and offline mode is on. Upload a file or use the bundled sample ('{SAMPLE_DATA}').")
    _hub_exists(source, "dataset")


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_name: str) -> Any:
    """The tokenizer of a model (no weights), cached per name."""
    from transformers import AutoTokenizer

    from ..models.loading import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(model_name), trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


@dataclass
class DataPreview:
    """What the preview shows before training."""

    source: str
    summary: dict[str, Any]
    examples: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    tokenizer_note: str | None = None
    measured: int = 0  # when not every usable row was measured: how many were (the first ones)


def preview_data(args: DataArgs, model_name: str, max_seq_length: int, n_rows: int = PREVIEW_ROWS,
                 template: PromptTemplate = DEFAULT_TEMPLATE) -> DataPreview:
    """Read and validate the first CHECKED_ROWS rows like a run (one at a time), measure the first
    PREVIEW_MEASURED_ROWS usable rows, and list the bad rows; the source's row count comes from the file's metadata or
    lines (``count_records``), so a file of millions of rows is not read whole. DataError only if it is unreadable."""
    checked = min(args.max_rows or CHECKED_ROWS, CHECKED_ROWS)
    report = validate_records(itertools.islice(iter_records(args.source, args.split), checked), args.source,
                              keep=PREVIEW_MEASURED_ROWS)
    if report.total_rows >= checked:  # more rows than were read: counted without parsing them
        total = count_records(args.source, args.split) if _local(args.source) else report.total_rows
        report.checked, report.total_rows = report.total_rows, min(total, args.max_rows or total)
    measured = len(report.rows) if report.used > len(report.rows) else 0  # 0: every usable row
    tokenizer, note = None, None
    try:
        tokenizer = load_tokenizer(model_name.strip())
    except Exception as exc:  # noqa: BLE001 - the preview still shows rows and problems without lengths
        note = f"token lengths not measured: the tokenizer of {model_name[:200]!r} could not be loaded ({str(exc)[:200]})"
        logger.info("%s (%s)", note, type(exc).__name__)
    if tokenizer is not None:
        measure(report, tokenizer, template, max_seq_length, args.too_long)
    eos = tokenizer.eos_token if tokenizer is not None and tokenizer.eos_token else "<eos>"
    examples = [template.training_text(r["instruction"], r["input"], r["output"], eos) for r in report.rows[:n_rows]]
    problems = sorted(report.errors, key=lambda p: p.row)
    lines = [f"error: {p}" for p in problems] + [f"warning: {p}" for p in sorted(report.warnings, key=lambda p: p.row)]
    return DataPreview(source=args.source, summary=report.summary(), examples=examples,
                       problems=lines[:PREVIEW_PROBLEMS], problem_count=report.error_count + report.warning_count,
                       tokenizer_note=note, measured=measured)
