"""Tagging records in compact form: what training holds in memory for a corpus of tens of millions of characters.

Users write JSONL records (``{"text", "labels": [...]}``, docs/architecture.md, "Records"); parsed as Python objects, a
per-character label list costs ~60 bytes a character (13 GB for a 30M-character train file). Here the same
records are read one line at a time, validated exactly as :func:`tagsmith.records.validate_splits` does (every
problem named by file and line, duplicate texts across splits refused), and kept as flat numpy arrays:

* ``chars``: every record's text as UTF-32 code points, concatenated (4 bytes a character);
* ``labels``: each character's label index (1 byte);
* ``offsets``: where record ``i`` starts and ends (``offsets[i]:offsets[i + 1]``);
* ``kind`` / ``collection``: per-record indices into ``kinds`` / ``collections`` (the optional record fields
  that oversampling, caps and the bias tuning read), and ``doc`` is not kept.

So 70M characters take ~0.4 GB. Nothing is dropped or altered: :meth:`TaggingCorpus.record` gives back the
record as it was written (text, labels, kind, collection).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from tagsmith.records import DataValidationError, Problem, decode_lines

NO_FIELD = ""  # kind / collection of a record that has none


@dataclass
class TaggingCorpus:
    labels_set: tuple[str, ...]
    chars: np.ndarray  # uint32 code points
    labels: np.ndarray  # uint8 label indices
    offsets: np.ndarray  # int64, len(records) + 1
    kind: np.ndarray  # int32 index into kinds
    collection: np.ndarray  # int32 index into collections
    kinds: list[str] = field(default_factory=list)
    collections: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def text(self, index: int) -> str:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.chars[start:end].tobytes().decode("utf-32-le")

    def label_names(self, index: int) -> list[str]:
        start, end = self.offsets[index], self.offsets[index + 1]
        return [self.labels_set[i] for i in self.labels[start:end]]

    def record(self, index: int) -> dict:
        out = {"text": self.text(index), "labels": self.label_names(index)}
        for name, values, table in (("kind", self.kind, self.kinds), ("collection", self.collection, self.collections)):
            if table[values[index]] != NO_FIELD:
                out[name] = table[values[index]]
        return out

    def records(self, indices: Iterable[int] | None = None) -> list[dict]:
        return [self.record(int(i)) for i in (range(len(self)) if indices is None else indices)]

    def texts(self) -> Iterator[str]:
        for index in range(len(self)):
            yield self.text(index)

    def field_values(self, name: str) -> list[str]:
        """Per-record ``kind`` or ``collection`` ("" where a record has none)."""
        values, table = (self.kind, self.kinds) if name == "kind" else (self.collection, self.collections)
        return [table[i] for i in values]

    def label_counts(self, copies: np.ndarray | None = None) -> np.ndarray:
        """Characters per label, each record counted ``copies[i]`` times (oversampling) when given."""
        weights = None if copies is None else np.repeat(copies.astype(np.float64), self.lengths)
        return np.bincount(self.labels, weights=weights, minlength=len(self.labels_set))

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.chars, self.labels, self.offsets, self.kind, self.collection))


class _Builder:
    def __init__(self, labels_set: Sequence[str]):
        self.labels_set = tuple(labels_set)
        self.label_index = {label: i for i, label in enumerate(self.labels_set)}
        self.chars: list[np.ndarray] = []
        self.labels: list[bytes] = []
        self.lengths: list[int] = []
        self.kind: list[int] = []
        self.collection: list[int] = []
        self.kinds: dict[str, int] = {}
        self.collections: dict[str, int] = {}
        self.files: list[str] = []

    def add(self, record: dict) -> None:
        text = record["text"]
        self.chars.append(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32))
        self.labels.append(bytes(self.label_index[label] for label in record["labels"]))
        self.lengths.append(len(text))
        self.kind.append(self.kinds.setdefault(str(record.get("kind", NO_FIELD)), len(self.kinds)))
        self.collection.append(self.collections.setdefault(str(record.get("collection", NO_FIELD)), len(self.collections)))

    def build(self) -> TaggingCorpus:
        offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=offsets[1:])
        chars = np.concatenate(self.chars) if self.chars else np.zeros(0, dtype=np.uint32)
        labels = np.frombuffer(b"".join(self.labels), dtype=np.uint8).copy()
        self.chars, self.labels = [], []
        return TaggingCorpus(self.labels_set, chars, labels, offsets, np.asarray(self.kind, dtype=np.int32),
                             np.asarray(self.collection, dtype=np.int32), list(self.kinds), list(self.collections),
                             self.files)


def _lines(path: Path, problems: list[Problem]) -> Iterator[tuple[int, str]]:
    """Non-blank lines of a file, read one at a time (a BOM on the first is dropped)."""
    with path.open("rb") as handle:
        raw = (line[3:] if n == 0 and line.startswith(b"\xef\xbb\xbf") else line for n, line in enumerate(handle))
        for number, line in decode_lines(path, raw, problems):
            if line.strip():
                yield number, line


def _records(path: Path, problems: list[Problem]) -> Iterator[tuple[int, object]]:
    """(record number, parsed value) of a JSONL file, or of a JSON array (read whole: arrays are small files)."""
    from tagsmith.records import read_record_file

    with path.open("rb") as handle:
        head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        parsed = read_record_file(path)
        problems.extend(parsed.problems)
        yield from zip(parsed.numbers, parsed.records)
        return
    found = False
    for number, line in _lines(path, problems):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(Problem(str(path), number, f"invalid JSON: {error.msg} (column {error.colno})"))
            continue
        found = True
        yield number, value
    if not found and not problems:
        problems.append(Problem(str(path), 0, "file holds no records"))


def as_files(value: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """``data.train`` and friends: one path or a list of paths (several record files read as one split)."""
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [Path(value)]
    return [Path(v) for v in value]


def load_tagging_splits(paths: Mapping[str, str | Path | Sequence | None], task,
                        exclude_kinds: Sequence[str] = (), progress: bool = False) -> tuple[dict[str, TaggingCorpus], dict]:
    """Validate and load tagging splits into compact form; raises DataValidationError naming every problem.

    ``exclude_kinds`` leaves out records whose ``kind`` is listed (e.g. ``vernacular``), in every split; the
    second value returned counts what was left out per split and kind, for the log."""
    problems: list[Problem] = []
    seen: dict[bytes, tuple[str, int]] = {}
    excluded = set(exclude_kinds)
    corpora, left_out = {}, {}
    for split, value in paths.items():
        files = as_files(value)
        if not files:
            continue
        builder, skipped = _Builder(task.labels), {}
        for path in files:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such record file ({split})")
            builder.files.append(str(path))
            for number, record in _iter_progress(_records(path, problems), path, progress):
                reasons = task.validate_record(record)
                if reasons:
                    problems.extend(Problem(str(path), number, reason) for reason in reasons)
                    continue
                key = hashlib.blake2b(record["text"].encode("utf-8"), digest_size=12).digest()
                where = seen.get(key)
                if where is not None and where[0] != split:
                    problems.append(Problem(str(path), number, f"duplicate text across splits: also {where[0]} record {where[1]}"))
                    continue
                seen.setdefault(key, (split, number))
                if record.get("kind") in excluded:
                    skipped[record["kind"]] = skipped.get(record["kind"], 0) + 1
                    continue
                if not problems:  # once a problem is found only the checking goes on
                    builder.add(record)
        corpora[split] = builder.build()
        left_out[split] = skipped
    if problems:
        problems.sort(key=lambda p: (p.file, p.record))
        raise DataValidationError(problems)
    return corpora, left_out


def _iter_progress(items, path: Path, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=f"reading {path.name}", unit=" records", unit_scale=True, mininterval=2)
