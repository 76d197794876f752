"""Training rows: load (Hub id | local file | bundled sample), map columns, validate with row numbers.

Row numbers are 1-based record positions in the source (for .jsonl the line, for .csv the data row after the header).
Files are read row by row (``iter_records``; a .json file, which has no rows before it is parsed, up to
``kft.data.files.JSON_MAX_BYTES``), and a report keeps at most ``MAX_KEPT_PROBLEMS`` problems and, when asked, only the first rows,
so checking a large upload takes bounded memory.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.args import SAMPLE_DATA, DataArgs
from ..config.validation import INVALID_UNICODE, valid_text
from .files import (
    FILE_SUFFIXES,
    MAX_CHARS_PER_FIELD,
    BadRecord,
    DataError,
    Numbered,
    Undecodable,
    count_rows,
    iter_file,
)
from .template import DEFAULT_TEMPLATE, PromptTemplate

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"  # package data (kft/assets)
SAMPLE_PATH = ASSETS / "data" / "korean_safe_sample.jsonl"
REQUIRED = ("instruction", "output")
MAX_LISTED = 20
MAX_KEPT_PROBLEMS = 1000  # problems a report keeps for listing; the others are only counted
TOKENIZE_BATCH = 512  # rows tokenized at once when measuring lengths




@dataclass
class RowProblem:
    row: int
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


@dataclass
class DataReport:
    """Rows ready for training plus everything found on the way."""

    source: str
    rows: list[dict[str, str]]
    errors: list[RowProblem] = field(default_factory=list)
    warnings: list[RowProblem] = field(default_factory=list)
    token_lengths: list[int] = field(default_factory=list)
    total_rows: int = 0
    used: int = 0  # rows that passed every check (``rows`` may keep only the first of them)
    error_count: int = 0  # ``errors`` and ``warnings`` keep the first MAX_KEPT_PROBLEMS; these count all
    warning_count: int = 0
    checked: int = 0  # when only the first rows were read and checked: how many (0: every row)

    def error(self, row: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_KEPT_PROBLEMS:
            self.errors.append(RowProblem(row, message))

    def warning(self, row: int, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_KEPT_PROBLEMS:
            self.warnings.append(RowProblem(row, message))

    def summary(self) -> dict[str, Any]:
        """Row count and token-length percentiles."""
        return {"source": self.source, "rows_in_source": self.total_rows, "rows_used": self.used,
                "rows_checked": self.checked or self.total_rows, "errors": self.error_count,
                "warnings": self.warning_count, "tokens": percentiles(self.token_lengths)}

    def problem_lines(self, limit: int = MAX_LISTED) -> list[str]:
        lines = [f"error: {p}" for p in self.errors[:limit]] + [f"warning: {p}" for p in self.warnings[:limit]]
        more = max(0, self.error_count - limit) + max(0, self.warning_count - limit)
        if more:
            lines.append(f"... and {more} more")
        return lines


def percentiles(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)

    def pct(q: float) -> float:
        return float(s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))])

    return {"min": float(s[0]), "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": float(s[-1]),
            "mean": round(sum(s) / len(s), 1)}


def read_records(source: str, split: str = "train") -> list[Any]:
    """Raw records from the bundled sample, a local file or a Hub dataset (no validation yet)."""
    return list(iter_records(source, split))


def iter_records(source: str, split: str = "train") -> Iterator[Any]:
    """Raw records one at a time (a local file is read row by row); problems are raised as DataError."""
    if source == SAMPLE_DATA:
        return iter_file(SAMPLE_PATH)
    path = Path(source).expanduser()
    if path.suffix.lower() in FILE_SUFFIXES or path.exists():
        if not path.is_file():
            raise DataError(f"Data file not found: {source}")
        return iter_file(path)
    return _read_hub(source, split)


def count_records(source: str, split: str = "train") -> int:
    """How many records the source holds: a local file's rows counted from its metadata or lines
    (``kft.data.files.count_rows``: no row is parsed), a Hub dataset's counted by reading them."""
    if source == SAMPLE_DATA:
        return count_rows(SAMPLE_PATH)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() in FILE_SUFFIXES:
        return count_rows(path)
    return sum(1 for _ in iter_records(source, split))


def _read_hub(dataset_id: str, split: str) -> Iterator[Any]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a requirement
        raise DataError("The 'datasets' package is missing: pip install -r requirements.txt") from exc
    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, bad split: all end the same way
        raise DataError(f"Could not load dataset {dataset_id!r} (split {split!r}) from the Hugging Face Hub: "
                        f"{str(exc)[:300]}. Check the id and the network, "
                        f"or use the bundled sample ('{SAMPLE_DATA}') or a local .jsonl/.csv/.parquet file.") from exc
    return (dict(r) for r in ds)  # the dataset is memory-mapped from the cache: rows are read as they are used


def _text(value: Any, column: str) -> tuple[str, str | None]:
    """(text, problem) for one cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", None
    if isinstance(value, Undecodable):
        return str(value), f"{column} holds bytes that are not valid UTF-8 (save the file as UTF-8)"
    if not isinstance(value, str):  # not str(value): a deeply nested list would not print
        return "", f"{column} is a {type(value).__name__}, expected text"
    if not valid_text(value):
        return "", f"{column} {INVALID_UNICODE}"
    if len(value) > MAX_CHARS_PER_FIELD:
        return value, f"{column} is {len(value):,} characters long (limit {MAX_CHARS_PER_FIELD:,})"
    return value, None


def validate_records(records: Iterable[Any], source: str, keep: int | None = None,
                     sample: int | None = None, seed: int = 0) -> DataReport:
    """Map columns and check every row, one at a time; ``keep`` = how many usable rows to keep, the first ones (None:
    all); ``sample`` = keep that many usable rows drawn at random from all of them with ``seed`` (a reservoir, in
    file order), so a run that can use only so many holds only those. Nothing is tokenized here."""
    report = DataReport(source=source, rows=[])
    rng = random.Random(seed)
    columns: set[str] = set()
    parsed = False
    for i, rec in enumerate(records, start=1):
        report.total_rows = i
        if isinstance(rec, BadRecord):
            report.error(rec.row, rec.message)
            continue
        parsed = True
        row_no = rec.row if isinstance(rec, Numbered) else i
        value = rec.value if isinstance(rec, Numbered) else rec
        if not isinstance(value, dict):
            report.error(row_no, f"expected an object with instruction/output, got {type(value).__name__}")
            continue
        value = {str(k).strip().lstrip("\ufeff"): v for k, v in value.items()}
        columns.update(value)
        row = _check_row(value, row_no, report)
        if row is not None:
            report.used += 1
            if sample is not None and len(report.rows) >= sample:
                slot = rng.randrange(report.used)  # reservoir sampling: each usable row kept with sample/used
                if slot < sample:
                    report.rows[slot] = row
            elif keep is None or len(report.rows) < keep:
                report.rows.append(row)
    if not report.total_rows:
        raise DataError(f"{source} is empty: it holds no rows")
    if sample is not None:
        report.rows.sort(key=lambda r: int(r["_row"]))
    missing = [c for c in REQUIRED if c not in columns]
    if parsed and missing:
        raise DataError(f"{source}: missing required column(s) {missing}. Found columns: {sorted(columns) or 'none'}. "
                        "Each row needs 'instruction' and 'output'; 'input' is optional.")
    if not report.used and not report.error_count:
        raise DataError(f"{source} is empty: it holds no rows")
    return report


def _check_row(value: dict[str, Any], row_no: int, report: DataReport) -> dict[str, str] | None:
    """The row's instruction/input/output as text, or None after recording its problems."""
    row: dict[str, str] = {}
    bad = False
    for col in ("instruction", "input", "output"):
        text, problem = _text(value.get(col), col)
        if problem:
            report.error(row_no, problem)
            bad = True
        row[col] = text
    for col in REQUIRED:
        if not bad and not row[col].strip():
            report.error(row_no, f"{col} is empty")
            bad = True
    if bad:
        return None
    row["_row"] = str(row_no)
    return row


def _token_lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token counts, tokenized a batch at a time (the ids of a large file at once took gigabytes)."""
    lengths: list[int] = []
    for i in range(0, len(texts), TOKENIZE_BATCH):
        ids = tokenizer(texts[i:i + TOKENIZE_BATCH], add_special_tokens=True)["input_ids"]
        lengths += [len(x) for x in ids]
    return lengths


def measure(report: DataReport, tokenizer: Any, template: PromptTemplate, max_seq_length: int,
            too_long: str = "drop") -> DataReport:
    """Tokenize the kept rows, record lengths and apply the too-long policy: drop (a warning per row), error, or
    truncate (a warning; the cut answer ends without EOS, so teaches no stop; a row with no answer left is dropped)."""
    eos = tokenizer.eos_token or ""
    texts = [template.training_text(r["instruction"], r["input"], r["output"], eos) for r in report.rows]
    if not texts:
        return report
    lengths = _token_lengths(tokenizer, texts)
    del texts
    kept: list[dict[str, str]] = []
    kept_lengths: list[int] = []
    for row, n in zip(report.rows, lengths, strict=True):
        row_no = int(row["_row"])
        if n <= max_seq_length:
            kept.append(row)
            kept_lengths.append(n)
            continue
        msg = f"{n} tokens, longer than max_seq_length {max_seq_length}"
        if too_long == "error":
            report.error(row_no, msg)
        elif too_long == "truncate":
            prompt_len = len(tokenizer(template.generation_prompt(row["instruction"], row["input"]))["input_ids"])
            if prompt_len >= max_seq_length:
                report.warning(row_no, msg + "; dropped: the prompt alone fills the limit, no answer tokens would be left to learn from")
            else:
                report.warning(row_no, msg + "; truncated (its answer is cut and ends without EOS)")
                kept.append(row)
                kept_lengths.append(max_seq_length)
        else:
            report.warning(row_no, msg + "; dropped")
    report.used -= len(report.rows) - len(kept)
    report.rows, report.token_lengths = kept, kept_lengths
    return report


def load_rows(args: DataArgs, tokenizer: Any | None = None, template: PromptTemplate = DEFAULT_TEMPLATE,
              max_seq_length: int = 2048, skip_invalid: bool = False, keep: int | None = None,
              sample: int | None = None, seed: int = 0) -> DataReport:
    """Read, validate and (with a tokenizer) measure; DataError lists every error row unless skip_invalid.
    ``keep=0`` checks every row without keeping any (a check before a run, in bounded memory); ``sample``: every row
    is checked, and only that many usable ones, drawn with ``seed``, are kept and measured (``validate_records``)."""
    records: Iterable[Any] = iter_records(args.source, args.split)
    if args.max_rows:
        records = itertools.islice(records, args.max_rows)
    report = validate_records(records, args.source, keep, sample, seed)
    if tokenizer is not None:
        measure(report, tokenizer, template, max_seq_length, args.too_long)
    if report.error_count and not skip_invalid:
        raise DataError(f"{args.source}: {report.error_count} problem row(s):\n" + "\n".join(report.problem_lines()))
    if not report.used:
        raise DataError(f"{args.source}: no usable rows left after validation:\n" + "\n".join(report.problem_lines()))
    logger.info("data %s: %s", args.source, report.summary())
    return report


def to_text_dataset(report: DataReport, template: PromptTemplate, eos_token: str):
    """A datasets.Dataset with one 'text' column in the exact training format."""
    from datasets import Dataset

    texts = [template.training_text(r["instruction"], r["input"], r["output"], eos_token) for r in report.rows]
    return Dataset.from_dict({"text": texts})

