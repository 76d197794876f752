"""Training rows: load (Hub id | local file | bundled sample), map columns, validate with row numbers.

Row numbers are 1-based record positions in the source (for .jsonl the line, for .csv the data row after the header).
Files are read row by row (``iter_records``; a .json file, which has no rows before it is parsed, up to
``JSON_MAX_BYTES``), and a report keeps at most ``MAX_KEPT_PROBLEMS`` problems and, when asked, only the first rows,
so checking a large upload takes bounded memory.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator, Sequence
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
MAX_KEPT_PROBLEMS = 1000  # problems a report keeps for listing; the others are only counted
JSON_MAX_BYTES = 50 * 1024**2  # a .json file is parsed whole; bigger ones must be .jsonl (read row by row)
TOKENIZE_BATCH = 512  # rows tokenized at once when measuring lengths
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by errors="surrogateescape"
_EXTRA_CELLS = "\x00extra"  # DictReader's key for cells beyond the header
TOO_DEEP = "nested too deeply to read as JSON (a row is an object of text fields)"


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
    used: int = 0  # rows that passed every check (``rows`` may keep only the first of them)
    error_count: int = 0  # ``errors`` and ``warnings`` keep the first MAX_KEPT_PROBLEMS; these count all
    warning_count: int = 0

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
                "errors": self.error_count, "warnings": self.warning_count, "tokens": percentiles(self.token_lengths)}

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
        return _iter_file(SAMPLE_PATH)
    path = Path(source).expanduser()
    if path.suffix.lower() in FILE_SUFFIXES or path.exists():
        if not path.is_file():
            raise DataError(f"Data file not found: {source}")
        return _iter_file(path)
    return _read_hub(source, split)


def count_records(source: str, split: str = "train") -> int:
    """How many records the source holds, counted without keeping them."""
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


def _blank(path: Path) -> bool:
    """Whether the file holds nothing but whitespace (and a BOM), read in chunks."""
    with path.open("rb") as f:
        head = True
        while chunk := f.read(1 << 20):
            if head and chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
            head = False
            if chunk.strip():
                return False
    return True


def _iter_file(path: Path) -> Iterator[Any]:
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(f"{path.name}: unsupported file type {suffix or '(none)'}; use one of {', '.join(FILE_SUFFIXES)}")
    if suffix == ".parquet":
        return _read_parquet(path)
    if _blank(path):
        raise DataError(f"{path.name} is empty: it holds no rows")
    with path.open("rb") as f:
        if b"\x00" in f.read(65536):  # no UTF-8 text holds NUL bytes: UTF-16 text, or not text at all
            raise DataError(f"{path.name} is not UTF-8 text: it holds NUL bytes, so it is binary data or text saved "
                            f"as UTF-16. Save it as UTF-8 {suffix} (in Excel: CSV UTF-8).")
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return iter(_read_json(path))
    return _read_csv(path.open("rb"), path.name)


def _read_json(path: Path) -> list[Any]:
    size = path.stat().st_size
    if size > JSON_MAX_BYTES:
        raise DataError(f"{path.name} is {size / 1024**2:,.0f} MB: a .json file is read whole, so this server reads "
                        f"them up to {JSON_MAX_BYTES // 1024**2} MB. Save it as .jsonl (one object per line), "
                        "which is read row by row.")
    text, lossy = _decode(path.read_bytes(), path.name)
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


def _decode(raw: bytes, name: str) -> tuple[str, bool]:
    """Text of the file (BOM removed) and whether some bytes were not valid UTF-8."""
    try:
        return raw.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8-sig", errors="replace"), True


def _clean(value: Any) -> Any:
    """A cell read with errors="surrogateescape": bytes that were not UTF-8 become U+FFFD, and the value is marked."""
    if isinstance(value, str) and _SURROGATE.search(value):
        return _Undecodable(value.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    return value


def _read_csv(raw: io.BufferedIOBase, name: str) -> Iterator[Any]:
    """CSV rows as dicts, read row by row; a row with more cells than the header is a row error, not cut
    (an unquoted comma)."""
    # above the per-field limit, so an over-long cell is reported by the row check with its row number
    csv.field_size_limit(max(csv.field_size_limit(), 4 * MAX_CHARS_PER_FIELD))
    with io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
        reader = csv.DictReader(text, restkey=_EXTRA_CELLS, strict=True)
        try:
            if reader.fieldnames is None:
                raise DataError(f"{name} is empty: it holds no header and no rows")
            if any(_SURROGATE.search(str(n)) for n in reader.fieldnames):
                raise DataError(f"{name} is not UTF-8 text (its header holds bytes that are not UTF-8): save it as "
                                "CSV UTF-8")
            reader.fieldnames = [str(_clean(n)) for n in reader.fieldnames]
            for i, row in enumerate(reader, start=1):
                extra = row.pop(_EXTRA_CELLS, None)
                if extra is not None:
                    header = len(reader.fieldnames or [])
                    yield _BadRecord(i, f"has {header + len(extra)} cells but the header has {header}: "
                                        "quote cells that contain commas")
                else:
                    yield {k: _clean(v) for k, v in row.items()}
        except csv.Error as exc:
            if "end of data" in str(exc):  # a quote opened and never closed swallows every row after it
                raise DataError(f"{name}: a quote (\") opened near line {reader.line_num} is never closed, so the "
                                "rest of the file reads as one cell: close it, or write a quote inside a cell as "
                                "\"\"") from exc
            raise DataError(f"{name}: unreadable CSV at line {reader.line_num}: {exc}") from exc


class _Undecodable(str):
    """A value that held bytes which are not UTF-8."""


def _mark_lossy(rows: list[Any]) -> list[Any]:
    return [{k: (_Undecodable(v) if isinstance(v, str) and "\ufffd" in v else v) for k, v in r.items()}
            if isinstance(r, dict) else r for r in rows]


def iter_jsonl(raw: bytes | Iterable[bytes]) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, value, problem) per non-blank JSON Lines line (BOM ignored); problem is None when it parsed.
    ``raw`` is the file's bytes or its lines (an open binary file, read line by line)."""
    lines = raw.split(b"\n") if isinstance(raw, bytes) else raw
    for i, line in enumerate(lines, start=1):
        if i == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
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


def _read_jsonl(path: Path) -> Iterator[Any]:
    with path.open("rb") as f:
        for i, value, problem in iter_jsonl(f):
            yield _BadRecord(i, problem) if problem else _Numbered(i, value)


@dataclass
class _Numbered:
    row: int
    value: Any


@dataclass
class _BadRecord:
    row: int
    message: str


def _read_parquet(path: Path) -> Iterator[Any]:
    try:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path.name} could not be read as Parquet: {exc}") from exc
    if not pf.metadata.num_rows:
        raise DataError(f"{path.name} is empty: it holds no rows")
    return _parquet_rows(pf, path.name)


def _parquet_rows(pf: Any, name: str) -> Iterator[Any]:
    try:
        for batch in pf.iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{name} could not be read as Parquet: {exc}") from exc


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


def validate_records(records: Iterable[Any], source: str, keep: int | None = None) -> DataReport:
    """Map columns and check every row, one at a time; ``keep`` = how many usable rows to keep (None: all).
    Nothing is tokenized here."""
    report = DataReport(source=source, rows=[])
    columns: set[str] = set()
    parsed = False
    for i, rec in enumerate(records, start=1):
        report.total_rows = i
        if isinstance(rec, _BadRecord):
            report.error(rec.row, rec.message)
            continue
        parsed = True
        row_no = rec.row if isinstance(rec, _Numbered) else i
        value = rec.value if isinstance(rec, _Numbered) else rec
        if not isinstance(value, dict):
            report.error(row_no, f"expected an object with instruction/output, got {type(value).__name__}")
            continue
        value = {str(k).strip().lstrip("\ufeff"): v for k, v in value.items()}
        columns.update(value)
        row = _check_row(value, row_no, report)
        if row is not None:
            report.used += 1
            if keep is None or len(report.rows) < keep:
                report.rows.append(row)
    if not report.total_rows:
        raise DataError(f"{source} is empty: it holds no rows")
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
              max_seq_length: int = 2048, skip_invalid: bool = False, keep: int | None = None) -> DataReport:
    """Read, validate and (with a tokenizer) measure; DataError lists every error row unless skip_invalid.
    ``keep=0`` checks every row without keeping any (a check before a run, in bounded memory)."""
    records: Iterable[Any] = iter_records(args.source, args.split)
    if args.max_rows:
        records = itertools.islice(records, args.max_rows)
    report = validate_records(records, args.source, keep)
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
