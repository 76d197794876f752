"""Data files read row by row: .jsonl, .json (whole, up to JSON_MAX_BYTES), .csv and .parquet. Every problem is a
DataError that says what the file is and how to fix it, or a BadRecord that names its row (checked in kft.data.rows)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.files import parse_problem

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
MAX_CHARS_PER_FIELD = 100_000
JSON_MAX_BYTES = 50 * 1024**2  # a .json file is parsed whole; bigger ones must be .jsonl (read row by row)
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by errors="surrogateescape"
_EXTRA_CELLS = "\x00extra"  # DictReader's key for cells beyond the header
TOO_DEEP = "nested too deeply to read as JSON (a row is an object of text fields)"


class DataError(ValueError):
    """The data cannot be used; the message lists what to fix."""


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


def iter_file(path: Path) -> Iterator[Any]:
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


def count_rows(path: Path) -> int:
    """How many rows the file holds, without reading them: a .parquet file's metadata, a .jsonl file's non-blank
    lines, a .csv file's records after the header (line ends outside quotes), a .json file's list
    (read whole, up to JSON_MAX_BYTES). Bounded by the file's size, never by its row count's work."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{path.name} could not be read as Parquet: {exc}") from exc
    if suffix == ".json":
        return len(_read_json(path))
    with path.open("rb") as f:
        if suffix == ".jsonl":
            return sum(1 for line in f if line.strip())
        records, quoted = 0, False
        for line in f:  # a record ends at a line end outside quotes ("" inside a cell keeps the count even)
            if not quoted and not line.strip():
                continue  # the CSV reader skips blank lines
            quoted ^= line.count(b'"') % 2 == 1
            records += not quoted
        return max(0, records + quoted - 1)  # an unclosed quote: one record to its end; less the header


def _read_json(path: Path) -> list[Any]:
    size = path.stat().st_size
    if size > JSON_MAX_BYTES:
        raise DataError(f"{path.name} is {size / 1024**2:,.0f} MB: a .json file is read whole, so this server reads "
                        f"them up to {JSON_MAX_BYTES // 1024**2} MB. Save it as .jsonl (one object per line), "
                        "which is read row by row.")
    text, lossy = _decode(path.read_bytes(), path.name)
    try:
        data = json.loads(text)
    except RecursionError:
        raise DataError(f"{path.name}: {TOO_DEEP}") from None
    except ValueError as exc:  # not JSON, a number of more than 4300 digits
        raise DataError(f"{path.name} is not valid JSON: {parse_problem(exc)}") from None
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
        return Undecodable(value.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
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
                    yield BadRecord(i, f"has {header + len(extra)} cells but the header has {header}: "
                                        "quote cells that contain commas")
                else:
                    yield {k: _clean(v) for k, v in row.items()}
        except csv.Error as exc:
            if "end of data" in str(exc):  # a quote opened and never closed swallows every row after it
                raise DataError(f"{name}: a quote (\") opened near line {reader.line_num} is never closed, so the "
                                "rest of the file reads as one cell: close it, or write a quote inside a cell as "
                                "\"\"") from exc
            raise DataError(f"{name}: unreadable CSV at line {reader.line_num}: {exc}") from exc


class Undecodable(str):
    """A value that held bytes which are not UTF-8."""


def _mark_lossy(rows: list[Any]) -> list[Any]:
    return [{k: (Undecodable(v) if isinstance(v, str) and "\ufffd" in v else v) for k, v in r.items()}
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
            yield i, json.loads(text.rstrip("\r\n")), None
        except RecursionError:
            yield i, None, TOO_DEEP
        except ValueError as exc:  # not JSON, a number of more than 4300 digits
            yield i, None, f"not valid JSON: {parse_problem(exc, line=False)}"


def _read_jsonl(path: Path) -> Iterator[Any]:
    with path.open("rb") as f:
        for i, value, problem in iter_jsonl(f):
            yield BadRecord(i, problem) if problem else Numbered(i, value)


@dataclass
class Numbered:
    row: int
    value: Any


@dataclass
class BadRecord:
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
