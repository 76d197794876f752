"""Training rows: load (Hub id | local file | bundled sample), map columns, validate with row numbers.

Row numbers are 1-based record positions in the source (for .jsonl the line, for .csv the data row after the header).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SAMPLE_DATA, DataArgs
from .prompts import DEFAULT_TEMPLATE, PromptTemplate
from .validation import INVALID_UNICODE, valid_text

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"  # package data
SAMPLE_PATH = ASSETS / "data" / "korean_safe_sample.jsonl"
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
REQUIRED = ("instruction", "output")
MAX_CHARS_PER_FIELD = 100_000
MAX_LISTED = 20
_EXTRA_CELLS = "\x00extra"
TOO_DEEP = "nested too deeply to read as JSON (a row is an object of text fields)"  # DictReader's key for cells beyond the header


class DataError(ValueError):
    """The data cannot be used; the message lists what to fix."""


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

    def summary(self) -> dict[str, Any]:
        """Row count and token-length percentiles."""
        return {"source": self.source, "rows_in_source": self.total_rows, "rows_used": len(self.rows),
                "errors": len(self.errors), "warnings": len(self.warnings), "tokens": percentiles(self.token_lengths)}

    def problem_lines(self, limit: int = MAX_LISTED) -> list[str]:
        lines = [f"error: {p}" for p in self.errors[:limit]] + [f"warning: {p}" for p in self.warnings[:limit]]
        more = max(0, len(self.errors) - limit) + max(0, len(self.warnings) - limit)
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
    if source == SAMPLE_DATA:
        return _read_file(SAMPLE_PATH)
    path = Path(source).expanduser()
    if path.suffix.lower() in FILE_SUFFIXES or path.exists():
        if not path.is_file():
            raise DataError(f"Data file not found: {source}")
        return _read_file(path)
    return _read_hub(source, split)


def _read_hub(dataset_id: str, split: str) -> list[Any]:
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
    return [dict(r) for r in ds]


def _decode(raw: bytes, name: str) -> tuple[str, bool]:
    """Text of the file (BOM removed) and whether some bytes were not valid UTF-8."""
    try:
        return raw.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8-sig", errors="replace"), True


def _read_file(path: Path) -> list[Any]:
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(f"{path.name}: unsupported file type {suffix or '(none)'}; use one of {', '.join(FILE_SUFFIXES)}")
    if suffix == ".parquet":
        return _read_parquet(path)
    raw = path.read_bytes()
    if not raw.strip() or raw.strip() == b"\xef\xbb\xbf":
        raise DataError(f"{path.name} is empty: it holds no rows")
    if b"\x00" in raw[:65536]:  # no UTF-8 text holds NUL bytes: UTF-16 text, or not text at all
        raise DataError(f"{path.name} is not UTF-8 text: it holds NUL bytes, so it is binary data or text saved as "
                        f"UTF-16. Save it as UTF-8 {suffix} (in Excel: CSV UTF-8).")
    text, lossy = _decode(raw, path.name)
    if lossy and suffix == ".csv" and "\ufffd" in text.split("\n", 1)[0]:
        raise DataError(f"{path.name} is not UTF-8 text (its header holds bytes that are not UTF-8): save it as "
                        "CSV UTF-8")
    if suffix == ".jsonl":
        return _read_jsonl(raw, path.name)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path.name} is not valid JSON (line {exc.lineno}): {exc.msg}") from exc
        except RecursionError:
            raise DataError(f"{path.name}: {TOO_DEEP}") from None
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) == 1:
                data = lists[0]
        if not isinstance(data, list):
            raise DataError(f"{path.name}: expected a JSON list of objects with instruction/input/output")
        return _mark_lossy(data) if lossy else data
    rows = _read_csv(text, path.name)
    return _mark_lossy(rows) if lossy else rows


def _read_csv(text: str, name: str) -> list[Any]:
    """CSV rows as dicts; a row with more cells than the header is a row error, not cut (an unquoted comma)."""
    # above the per-field limit, so an over-long cell is reported by the row check with its row number
    csv.field_size_limit(max(csv.field_size_limit(), 4 * MAX_CHARS_PER_FIELD))
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA_CELLS, strict=True)
    rows: list[Any] = []
    try:
        for i, row in enumerate(reader, start=1):
            extra = row.pop(_EXTRA_CELLS, None)
            if extra is not None:
                header = len(reader.fieldnames or [])
                rows.append(_BadRecord(i, f"has {header + len(extra)} cells but the header has {header}: "
                                          "quote cells that contain commas"))
            else:
                rows.append(row)
    except csv.Error as exc:
        if "end of data" in str(exc):  # a quote opened and never closed swallows every row after it
            raise DataError(f"{name}: a quote (\") opened near line {reader.line_num} is never closed, so the rest "
                            "of the file reads as one cell: close it, or write a quote inside a cell as \"\"") from exc
        raise DataError(f"{name}: unreadable CSV at line {reader.line_num}: {exc}") from exc
    if reader.fieldnames is None:
        raise DataError(f"{name} is empty: it holds no header and no rows")
    return rows


class _Undecodable(str):
    """A value that held bytes which are not UTF-8."""


def _mark_lossy(rows: list[Any]) -> list[Any]:
    return [{k: (_Undecodable(v) if isinstance(v, str) and "\ufffd" in v else v) for k, v in r.items()}
            if isinstance(r, dict) else r for r in rows]


def iter_jsonl(raw: bytes) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, value, problem) per non-blank JSON Lines line (BOM ignored); problem is None when it parsed."""
    lines = raw.split(b"\n")
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            yield i, None, "text is not valid UTF-8 (save the file as UTF-8)"
            continue
        try:
            yield i, json.loads(text), None
        except json.JSONDecodeError as exc:
            yield i, None, f"not valid JSON: {exc.msg}"
        except RecursionError:
            yield i, None, TOO_DEEP


def _read_jsonl(raw: bytes, name: str) -> list[Any]:
    records: list[Any] = [_BadRecord(i, problem) if problem else _Numbered(i, value)
                          for i, value, problem in iter_jsonl(raw)]
    if not records:
        raise DataError(f"{name} is empty: it holds no rows")
    return records


@dataclass
class _Numbered:
    row: int
    value: Any


@dataclass
class _BadRecord:
    row: int
    message: str


def _read_parquet(path: Path) -> list[Any]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path.name} could not be read as Parquet: {exc}") from exc
    rows = table.to_pylist()
    if not rows:
        raise DataError(f"{path.name} is empty: it holds no rows")
    return rows


def _text(value: Any, column: str) -> tuple[str, str | None]:
    """(text, problem) for one cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", None
    if isinstance(value, _Undecodable):
        return str(value), f"{column} holds bytes that are not valid UTF-8 (save the file as UTF-8)"
    if not isinstance(value, str):  # not str(value): a deeply nested list would not print
        return "", f"{column} is a {type(value).__name__}, expected text"
    if not valid_text(value):
        return "", f"{column} {INVALID_UNICODE}"
    if len(value) > MAX_CHARS_PER_FIELD:
        return value, f"{column} is {len(value):,} characters long (limit {MAX_CHARS_PER_FIELD:,})"
    return value, None


def validate_records(records: list[Any], source: str) -> DataReport:
    """Map columns and check every row; nothing is tokenized here."""
    if not records:
        raise DataError(f"{source} is empty: it holds no rows")
    dict_rows = [r.value if isinstance(r, _Numbered) else r for r in records if not isinstance(r, _BadRecord)]
    columns: set[str] = set()
    for r in dict_rows:
        if isinstance(r, dict):
            columns.update(str(k).strip().lstrip("\ufeff") for k in r)
    missing = [c for c in REQUIRED if c not in columns]
    if dict_rows and missing:
        raise DataError(f"{source}: missing required column(s) {missing}. Found columns: {sorted(columns) or 'none'}. "
                        "Each row needs 'instruction' and 'output'; 'input' is optional.")
    report = DataReport(source=source, rows=[], total_rows=len(records))
    for i, rec in enumerate(records, start=1):
        if isinstance(rec, _BadRecord):
            report.errors.append(RowProblem(rec.row, rec.message))
            continue
        row_no = rec.row if isinstance(rec, _Numbered) else i
        value = rec.value if isinstance(rec, _Numbered) else rec
        if not isinstance(value, dict):
            report.errors.append(RowProblem(row_no, f"expected an object with instruction/output, got {type(value).__name__}"))
            continue
        value = {str(k).strip().lstrip("\ufeff"): v for k, v in value.items()}
        row: dict[str, str] = {}
        bad = False
        for col in ("instruction", "input", "output"):
            text, problem = _text(value.get(col), col)
            if problem:
                report.errors.append(RowProblem(row_no, problem))
                bad = True
            row[col] = text
        for col in REQUIRED:
            if not bad and not row[col].strip():
                report.errors.append(RowProblem(row_no, f"{col} is empty"))
                bad = True
        if not bad:
            row["_row"] = str(row_no)
            report.rows.append(row)
    if not report.rows and not report.errors:
        raise DataError(f"{source} is empty: it holds no rows")
    return report


def measure(report: DataReport, tokenizer: Any, template: PromptTemplate, max_seq_length: int,
            too_long: str = "drop") -> DataReport:
    """Tokenize, record lengths and apply the too-long policy: drop (a warning per row), error, or truncate (a warning;
    the cut answer ends without EOS, so teaches no stop; a row with no answer left is dropped)."""
    eos = tokenizer.eos_token or ""
    texts = [template.training_text(r["instruction"], r["input"], r["output"], eos) for r in report.rows]
    if not texts:
        return report
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
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
            report.errors.append(RowProblem(row_no, msg))
        elif too_long == "truncate":
            prompt_len = len(tokenizer(template.generation_prompt(row["instruction"], row["input"]))["input_ids"])
            if prompt_len >= max_seq_length:
                report.warnings.append(RowProblem(row_no, msg + "; dropped: the prompt alone fills the limit, no answer tokens would be left to learn from"))
            else:
                report.warnings.append(RowProblem(row_no, msg + "; truncated (its answer is cut and ends without EOS)"))
                kept.append(row)
                kept_lengths.append(max_seq_length)
        else:
            report.warnings.append(RowProblem(row_no, msg + "; dropped"))
    report.rows, report.token_lengths = kept, kept_lengths
    return report


def load_rows(args: DataArgs, tokenizer: Any | None = None, template: PromptTemplate = DEFAULT_TEMPLATE,
              max_seq_length: int = 2048, skip_invalid: bool = False) -> DataReport:
    """Read, validate and (with a tokenizer) measure; DataError lists every error row unless skip_invalid."""
    records = read_records(args.source, args.split)
    if args.max_rows:
        records = records[: args.max_rows]
    report = validate_records(records, args.source)
    if tokenizer is not None:
        measure(report, tokenizer, template, max_seq_length, args.too_long)
    if report.errors and not skip_invalid:
        raise DataError(f"{args.source}: {len(report.errors)} problem row(s):\n" + "\n".join(report.problem_lines()))
    if not report.rows:
        raise DataError(f"{args.source}: no usable rows left after validation:\n" + "\n".join(report.problem_lines()))
    logger.info("data %s: %s", args.source, report.summary())
    return report


def to_text_dataset(report: DataReport, template: PromptTemplate, eos_token: str):
    """A datasets.Dataset with one 'text' column in the exact training format."""
    from datasets import Dataset

    texts = [template.training_text(r["instruction"], r["input"], r["output"], eos_token) for r in report.rows]
    return Dataset.from_dict({"text": texts})
