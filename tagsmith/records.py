"""Reading and validating record files (docs/architecture.md, "Records").

Formats: a JSON array, JSONL (one object per line) or, for mlm, plain .txt (one document per line).
Validation names the file, the record number (1-based; the line number for JSONL and .txt) and the reason,
for every bad record, and nothing trains until a file is clean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping


@dataclass(frozen=True)
class Problem:
    file: str
    record: int  # 1-based record number; 0 = the file as a whole
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.record}" if self.record else self.file
        return f"{where}: {self.reason}"


class DataValidationError(ValueError):
    """Raised with every problem found; str() gives one line per bad record."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


@dataclass
class RecordFile:
    path: Path
    records: list  # parsed JSON values, good or bad; numbers[i] is where records[i] came from
    numbers: list[int]
    problems: list[Problem]


def decode_lines(path: Path, raw_lines: Iterable[bytes], problems: list[Problem]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line that is valid UTF-8; each invalid one becomes a problem naming it."""
    for number, raw in enumerate(raw_lines, start=1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as error:
            problems.append(Problem(str(path), number, f"invalid UTF-8 at byte {error.start} of the line"))


def read_record_file(path: str | Path) -> RecordFile:
    """Parse a record file without judging the records; unreadable lines become problems."""
    path = Path(path)
    problems: list[Problem] = []
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such record file")
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = list(decode_lines(path, data.split(b"\n"), problems))
    records, numbers = [], []
    if path.suffix == ".txt":
        for number, line in lines:
            if line.strip():
                records.append({"text": line.rstrip("\r")})
                numbers.append(number)
        return RecordFile(path, records, numbers, problems)
    first = next((line.lstrip() for _, line in lines if line.strip()), "")
    if first.startswith("[") and not problems:
        try:
            array = json.loads("\n".join(line for _, line in lines))
        except json.JSONDecodeError as error:
            problems.append(Problem(str(path), 0, f"invalid JSON array at line {error.lineno}: {error.msg}"))
            return RecordFile(path, [], [], problems)
        return RecordFile(path, array, list(range(1, len(array) + 1)), problems)
    for number, line in lines:
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
            numbers.append(number)
        except json.JSONDecodeError as error:
            problems.append(Problem(str(path), number, f"invalid JSON: {error.msg} (column {error.colno})"))
    if not records and not problems:
        problems.append(Problem(str(path), 0, "file holds no records"))
    return RecordFile(path, records, numbers, problems)


def validate_file(path: str | Path, task) -> RecordFile:
    """Read and check every record against the task; problems are collected, not raised."""
    parsed = read_record_file(path)
    for record, number in zip(parsed.records, parsed.numbers):
        for reason in task.validate_record(record):
            parsed.problems.append(Problem(str(parsed.path), number, reason))
    parsed.problems.sort(key=lambda p: p.record)
    return parsed


def validate_splits(paths: Mapping[str, str | Path | None], task) -> dict[str, list[dict]]:
    """Validate train/validation/test files together; returns the records or raises DataValidationError.

    Besides each record's own checks, a text that appears in two splits is a problem (test leakage).
    """
    problems: list[Problem] = []
    loaded: dict[str, RecordFile] = {}
    seen: dict[str, tuple[str, int]] = {}
    for split, path in paths.items():
        if path is None:
            continue
        parsed = validate_file(path, task)
        loaded[split] = parsed
        problems.extend(parsed.problems)
        for record, number in zip(parsed.records, parsed.numbers):
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                continue
            where = seen.get(record["text"])
            if where is not None and where[0] != split:
                problems.append(
                    Problem(str(parsed.path), number, f"duplicate text across splits: also {where[0]} record {where[1]}")
                )
            else:
                seen.setdefault(record["text"], (split, number))
    if problems:
        raise DataValidationError(problems)
    return {split: parsed.records for split, parsed in loaded.items()}


class JsonlWriter:
    """Records written one at a time to a temporary file, renamed into place by :meth:`commit`; a writer that
    is not committed (an error, an interrupt) leaves the old file as it was: call :meth:`discard` in a finally."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.out = self.tmp.open("w", encoding="utf-8")
        self.count = 0

    def write(self, record: dict) -> None:
        self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def commit(self) -> int:
        self.out.close()
        self.tmp.replace(self.path)
        return self.count

    def discard(self) -> None:
        if not self.out.closed:
            self.out.close()
        self.tmp.unlink(missing_ok=True)


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Write records as UTF-8 JSONL atomically (a temporary file renamed into place); returns the count."""
    writer = JsonlWriter(path)
    try:
        for record in records:
            writer.write(record)
        return writer.commit()
    finally:
        writer.discard()
