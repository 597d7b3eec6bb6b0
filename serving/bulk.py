"""Whole files through a tagging package: ``tagsmith punctuate FILE`` and ``tagsmith segment FILE``.

Torch-free, on the same runtime as the server (``serving.runtime``: ONNX Runtime, the package's overlapping
windows, its tuned decision bias). What a run promises:

* **Every character, in order.** The model reads a paragraph's *content* (what remains after whitespace and
  punctuation: exactly the characters a training record holds), and the output is the input paragraph with the
  model's marks put after content characters. ``existing="strip"`` (default) first drops whitespace and the
  marks the model predicts (，。：、；？！ and their half-width / variant forms); quotes, book-title marks and
  every other character stay where they were. ``existing="keep"`` keeps the paragraph whole and adds a mark only
  where none follows already. One output paragraph per input paragraph, in the input's order.
* **Bad input is refused before the model runs**, in one line naming the file and line: not UTF-8, a JSONL line
  that is not an object with a string ``text``, an empty file.
* **Resume.** Output goes to the file in chunks; after each chunk the file is flushed and a record beside it
  (``OUT.tagsmith.json``) notes how many paragraphs, bytes and which sha256 the output holds so far. A stopped
  run (signal, kill, crash, preemption) started again with the same command checks the input and the kept
  output against that record, cuts off a half-written tail and goes on; nothing already written is rewritten.
  When the run completes, the record stays as the output's provenance (package, settings, input hash, speed).
* **Shards** (``--shard K/N``) split one large file into N blocks of consecutive paragraphs of about equal
  characters, or a folder into N sets of whole files of about equal bytes; ``--merge N`` checks that every
  paragraph (every file) was done exactly once and joins the blocks in the input's order. This is what
  ``containers/slurm/punctuate.sbatch`` runs as a job array.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
import unicodedata
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from tagsmith import marks
from tagsmith.hashing import sha256_digest, sha256_file

#: exit status of a run stopped by a signal after its last chunk was saved: "run me again to resume"
EXIT_RESUMABLE = 75
FORMATS = ("auto", "text", "jsonl")
EXISTING = ("strip", "keep")
#: how an unsure mark is shown in text output; {mark} is the mark, {confidence} the model's probability of it
FLAG_STYLES = {
    "bracket": "[{mark}]",
    "markdown": "=={mark}==",
    "html": '<mark title="{confidence:.2f}">{mark}</mark>',
}
RECORD_SUFFIX = ".tagsmith.json"
RECORD_FORMAT = "tagsmith-bulk-output"
INPUT_SUFFIXES = (".txt", ".jsonl")
COMMANDS = {"punctuation": "punctuate", "segmentation": "segment"}


class BulkError(RuntimeError):
    """Input, output or options that a run cannot go on with; the message names the file (and line)."""

    exit_code = 1  # bad input or output content


class UsageError(BulkError):
    """Options that do not fit together, a path that is not there: the command line's fault."""

    exit_code = 2


class Stopped(Exception):
    """A signal asked the run to stop; everything up to the last chunk is saved and resumable."""

    def __init__(self, signal_name: str, done: int, total: int):
        super().__init__(f"stopped by {signal_name} after {done} of {total} paragraphs; "
                         "run the same command again to resume")


# --- input ----------------------------------------------------------------------------------------------------


@dataclass
class Source:
    """One input file, checked whole before the model runs: where each paragraph (line) starts, its length in
    characters, and the file's sha256 (a resumed run refuses an input that changed)."""

    path: Path
    format: str  # "text" or "jsonl"
    starts: array  # byte offset of each line, then the file's size
    chars: array  # characters of each paragraph's text
    sha256: str

    @property
    def paragraphs(self) -> int:
        return len(self.chars)

    def characters(self, first: int = 0, end: int | None = None) -> int:
        return sum(self.chars[first:end])

    def chunk_bounds(self, chunk_chars: int) -> list[int]:
        """The first line of each chunk, then the number of lines: a chunk ends with the line at which it reaches
        ``chunk_chars`` characters. Fixed by the file alone, so that a resumed run and every shard hand the model
        exactly the batches an uninterrupted run does (int8 activations are quantised per batch, so a different
        batch could tip a close decision)."""
        bounds, seen = [0], 0
        for index, n in enumerate(self.chars):
            seen += n
            if seen >= chunk_chars and index + 1 < len(self.chars):
                bounds.append(index + 1)
                seen = 0
        bounds.append(len(self.chars))
        return bounds

    def read(self, first: int, end: int) -> Iterator[tuple[int, str | None, dict | None]]:
        """(line index, text or None for a blank JSONL line, the JSONL object or None) of lines [first, end)."""
        with open(self.path, "rb") as handle:
            handle.seek(self.starts[first])
            for index in range(first, end):
                raw = handle.readline()
                line = _strip_newline(raw).decode("utf-8")
                if index == 0:
                    line = line.removeprefix("\ufeff")
                if self.format == "text":
                    yield index, line, None
                elif not line.strip():
                    yield index, None, None
                else:
                    record = json.loads(line)
                    yield index, record["text"], record


def input_format(path: Path, fmt: str = "auto") -> str:
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "text"


def scan(path: str | Path, fmt: str = "auto") -> Source:
    """Read the whole file once: every line decodes (and, for JSONL, is an object with a string ``text``), and
    there is some text. Errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    fmt = input_format(path, fmt)
    starts, chars = array("q"), array("q")
    digest = hashlib.sha256()
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            digest.update(raw)
            starts.append(offset)
            offset += len(raw)
            try:
                line = _strip_newline(raw).decode("utf-8")
            except UnicodeDecodeError as error:
                raise BulkError(f"{path}:{number}: not UTF-8 (invalid byte at byte {error.start + 1} of the line); "
                                "convert the file to UTF-8 first (e.g. iconv -f GB18030 -t UTF-8)") from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            if fmt == "jsonl":
                chars.append(_jsonl_text_length(path, number, line))
            else:
                chars.append(len(line))
    starts.append(offset)
    if not chars or not any(chars):
        raise BulkError(f"{path}: empty file (no text to {'process' if chars else 'read'})")
    return Source(path, fmt, starts, chars, digest.hexdigest())


def _strip_newline(raw: bytes) -> bytes:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    return raw[:-1] if raw.endswith(b"\r") else raw


def _jsonl_text_length(path: Path, number: int, line: str) -> int:
    if not line.strip():
        return 0  # a blank line is copied through
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise BulkError(f"{path}:{number}: not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise BulkError(f"{path}:{number}: expected a JSON object with a 'text' field, got {type(record).__name__}")
    if "text" not in record:
        raise BulkError(f"{path}:{number}: no 'text' field (fields: {', '.join(record) or 'none'})")
    if not isinstance(record["text"], str):
        raise BulkError(f"{path}:{number}: 'text' must be a string, got {type(record['text']).__name__}")
    return len(record["text"])


def folder_files(folder: Path) -> list[Path]:
    """The input files of a folder, in a fixed order: every ``*.txt`` and ``*.jsonl`` below it."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES
                   and not p.name.startswith("."))
    if not files:
        raise BulkError(f"{folder}: no {' or '.join('*' + s for s in INPUT_SUFFIXES)} files in the folder")
    return files


# --- shards ---------------------------------------------------------------------------------------------------


def parse_shard(value: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N."""
    try:
        k, n = (int(part) for part in value.split("/"))
    except ValueError:
        raise UsageError(f"--shard {value!r}: expected K/N, e.g. 0/4 (shard K of N, counted from 0)") from None
    if not 0 <= k < n:
        raise UsageError(f"--shard {value!r}: K must be in 0..N-1")
    return k, n


def line_blocks(chars: Sequence[int], n: int) -> list[tuple[int, int]]:
    """N blocks [first, end) of consecutive items (lines, chunks) of about equal characters (a block may be empty)."""
    total = sum(chars)
    bounds, seen, line = [0], 0, 0
    for k in range(1, n):
        target = total * k / n
        while line < len(chars) and seen + chars[line] / 2 < target:
            seen += chars[line]
            line += 1
        bounds.append(line)
    bounds.append(len(chars))
    return [(bounds[k], bounds[k + 1]) for k in range(n)]


def shard_lines(source: Source, settings: Settings, n: int) -> list[tuple[int, int]]:
    """The N line blocks of one file: whole chunks, about equal characters."""
    bounds = source.chunk_bounds(settings.chunk_chars)
    sizes = [source.characters(a, b) for a, b in zip(bounds, bounds[1:])]
    return [(bounds[a], bounds[b]) for a, b in line_blocks(sizes, n)]


def assign_files(files: Sequence[Path], n: int) -> list[int]:
    """The shard of each file: biggest first to the least loaded shard (ties: the lower shard)."""
    load, shard = [0] * n, [0] * len(files)
    for index in sorted(range(len(files)), key=lambda i: (-files[i].stat().st_size, str(files[i]))):
        k = min(range(n), key=lambda s: (load[s], s))
        shard[index] = k
        load[k] += files[index].stat().st_size
    return shard


# --- what is written: one paragraph -------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything that decides the output's bytes; a resumed run must use the same."""

    task: str  # "punctuation" or "segmentation"
    output: str = "text"  # "text" or "jsonl"
    existing: str = "strip"
    flag_below: float | None = None
    flag_style: str = "bracket"
    separator: str = " | "  # segmentation text output: between sentences
    sentence_lines: bool = False  # segmentation text output: one sentence a line, a blank line after a paragraph
    chunk_chars: int = 32768  # paragraphs go to the model in chunks of about this many characters
    batch_size: int = 32  # windows per ONNX Runtime call

    def __post_init__(self):
        if self.task not in COMMANDS:
            raise UsageError(f"unknown task {self.task!r}; expected one of {', '.join(COMMANDS)}")
        if self.output not in ("text", "jsonl"):
            raise UsageError(f"--output-format {self.output!r}: expected text or jsonl")
        if self.existing not in EXISTING:
            raise UsageError(f"--existing {self.existing!r}: expected one of {', '.join(EXISTING)}")
        if self.flag_style not in FLAG_STYLES:
            raise UsageError(f"--flag-style {self.flag_style!r}: expected one of {', '.join(FLAG_STYLES)}")
        if self.flag_below is not None and not 0.0 < self.flag_below <= 1.0:
            raise UsageError(f"--flag-below {self.flag_below}: expected a probability in (0, 1]")
        if self.chunk_chars < 1 or self.batch_size < 1:
            raise UsageError("--chunk-chars and --batch-size must be >= 1")

    def as_dict(self) -> dict:
        return {"task": self.task, "output": self.output, "existing": self.existing, "flag_below": self.flag_below,
                "flag_style": self.flag_style, "separator": self.separator, "sentence_lines": self.sentence_lines,
                "chunk_chars": self.chunk_chars, "batch_size": self.batch_size}


CONTENT, STRIPPED, CLOSES = 1, 2, 4
_CLASSES: dict[str, int] = {}


def char_class(char: str) -> int:
    """CONTENT: a character the model reads (not whitespace, not a mark, not a quote or other punctuation: the
    characters a training record keeps, tagsmith.tasks.parse_punctuated); STRIPPED: whitespace or a mark the model
    predicts, which ``existing="strip"`` removes; CLOSES: punctuation that belongs to the sentence before it
    (marks, closing quotes and brackets; not openers). Cached: a book has a few thousand distinct characters."""
    found = _CLASSES.get(char)
    if found is None:
        category = unicodedata.category(char)
        stripped = marks.is_space(char) or marks.normalise_mark(char) is not None
        content = not (stripped or marks.is_dropped(char) or category.startswith("P"))
        closes = category.startswith("P") and category not in ("Ps", "Pi")
        found = _CLASSES[char] = CONTENT * content | STRIPPED * stripped | CLOSES * closes
    return found


def is_content(char: str) -> bool:
    return bool(char_class(char) & CONTENT)


def _strip_table(text: str, existing: str) -> dict:
    """str.translate table that removes what ``existing="strip"`` drops from ``text`` (nothing for keep)."""
    if existing != "strip":
        return {}
    return {ord(c): None for c in set(text) if char_class(c) & STRIPPED}


@dataclass
class Paragraph:
    text: str
    positions: list[int]  # index in ``text`` of each content character

    @classmethod
    def of(cls, text: str) -> "Paragraph":
        classes = [char_class(c) for c in text]
        return cls(text, [i for i, k in enumerate(classes) if k & CONTENT])

    @property
    def content(self) -> str:
        return "".join([self.text[i] for i in self.positions])

    def next_position(self, k: int) -> int:
        return self.positions[k + 1] if k + 1 < len(self.positions) else len(self.text)


def render_punctuation(paragraph: Paragraph, labels: Sequence[str], confidence: Sequence[float],
                       settings: Settings) -> tuple[str, str, list[dict]]:
    """(text output, plain output, marks): the paragraph with a mark after each content character the model
    marked, right after it (before a closing quote). ``keep`` adds none where a mark already follows."""
    text, found = paragraph.text, []
    for k, label in enumerate(labels):
        if label == "O":
            continue
        at = paragraph.positions[k]
        if settings.existing == "keep" and any(marks.normalise_mark(c) for c in text[at + 1:paragraph.next_position(k)]):
            continue
        found.append({"after": at, "mark": label, "confidence": confidence[k]})
    table = _strip_table(text, settings.existing)
    plain, shown, start = [], [], 0
    for mark in found:
        piece = text[start:mark["after"] + 1].translate(table)
        plain.append(piece + mark["mark"])
        shown.append(piece + _flagged(mark["mark"], mark["confidence"], settings))
        start = mark["after"] + 1
    tail = text[start:].translate(table)
    return "".join(shown) + tail, "".join(plain) + tail, found


def render_segmentation(paragraph: Paragraph, labels: Sequence[str], confidence: Sequence[float],
                        settings: Settings) -> tuple[list[str], list[str], list[dict]]:
    """(sentences as shown, plain sentences, boundaries): a sentence ends after a content character labelled
    E or S, together with the marks and closing quotes that follow it."""
    text, n = paragraph.text, len(paragraph.positions)
    cuts, boundaries = [], []
    for k, (label, p) in enumerate(zip(labels, confidence)):
        if label not in ("E", "S") or k == n - 1:
            continue
        cut, stop = paragraph.positions[k] + 1, paragraph.next_position(k)
        while cut < stop and char_class(text[cut]) & CLOSES:
            cut += 1
        cuts.append(cut)
        boundaries.append({"after": paragraph.positions[k], "confidence": p})
    table = _strip_table(text, settings.existing)
    plain, shown, start = [], [], 0
    for index, end in enumerate(cuts + [len(text)]):
        sentence = text[start:end].translate(table)
        plain.append(sentence)
        unsure = index < len(boundaries) and _unsure(boundaries[index]["confidence"], settings)
        shown.append(sentence + (_flag("?", boundaries[index]["confidence"], settings) if unsure else ""))
        start = end
    if plain == [""]:  # an empty paragraph (or one of dropped characters only) holds no sentence
        return [], [], []
    return shown, plain, boundaries


def _unsure(p: float, settings: Settings) -> bool:
    return settings.flag_below is not None and p < settings.flag_below


def _flag(mark: str, p: float, settings: Settings) -> str:
    return FLAG_STYLES[settings.flag_style].format(mark=mark, confidence=p)


def _flagged(mark: str, p: float, settings: Settings) -> str:
    return _flag(mark, p, settings) if _unsure(p, settings) else mark


def render_chunk(runtime, items: Sequence[tuple[str | None, dict | None]], settings: Settings) -> bytes:
    """The output bytes of consecutive paragraphs ``(text or None, JSONL object or None)``: their content goes
    through the model in one call (sorted and batched by length there), the output keeps their order."""
    paragraphs = [Paragraph.of(text) if text is not None else None for text, _ in items]
    todo = [p for p in paragraphs if p is not None and p.positions]
    tagged = iter(runtime.predict([p.content for p in todo]) if todo else [])
    lines = []
    for (text, record), paragraph in zip(items, paragraphs):
        if paragraph is None:  # a blank JSONL line
            lines.append("")
            continue
        result = next(tagged) if paragraph.positions else None
        labels = result.labels if result else []
        confidence = result.confidence if result else []
        lines.append(_paragraph_output(paragraph, labels, confidence, record, settings))
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _paragraph_output(paragraph, labels, confidence, record, settings: Settings) -> str:
    out = dict(record) if record is not None else {"text": paragraph.text}
    if settings.task == "punctuation":
        shown, plain, found = render_punctuation(paragraph, labels, confidence, settings)
        if settings.output == "text":
            return shown
        out.update(output=plain, marks=found)
    else:
        shown, plain, found = render_segmentation(paragraph, labels, confidence, settings)
        if settings.output == "text":
            if settings.sentence_lines:  # the sentences, then the blank line that ends the paragraph
                return "".join(sentence + "\n" for sentence in shown)
            return settings.separator.join(shown)
        out.update(output=settings.separator.join(plain), sentences=plain, boundaries=found)
    return json.dumps(out, ensure_ascii=False)


# --- one output file, resumable ------------------------------------------------------------------------------


def record_path(out: Path) -> Path:
    return out.with_name(out.name + RECORD_SUFFIX)


def read_record(out: Path) -> dict | None:
    path = record_path(out)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BulkError(f"{path}: unreadable progress record ({error}); delete it and the output, or --overwrite") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise BulkError(f"{path}: not a tagsmith progress record")
    return record


def _write_record(out: Path, record: dict) -> None:
    path = record_path(out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


class SignalFlag:
    """SIGTERM, SIGINT and SIGUSR1 (SLURM's warning before the time limit) ask the run to stop after the chunk
    it is on; the previous handlers come back afterwards."""

    NAMES = ("SIGTERM", "SIGINT", "SIGUSR1")

    def __init__(self):
        self.name: str | None = None
        self._previous = {}

    def __enter__(self):
        if hasattr(signal, "SIGUSR1") and threading_is_main():
            for name in self.NAMES:
                number = getattr(signal, name)
                self._previous[number] = signal.signal(number, self._set)
        return self

    def _set(self, number, frame):
        self.name = signal.Signals(number).name

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


@dataclass
class Job:
    """One output: lines [first, end) of ``source`` through ``runtime`` into ``out`` (None = stdout)."""

    source: Source
    out: Path | None
    first: int = 0
    end: int | None = None
    shard: str | None = None

    def __post_init__(self):
        if self.end is None:
            self.end = self.source.paragraphs

    @property
    def characters(self) -> int:
        return self.source.characters(self.first, self.end)


@dataclass
class Outcome:
    out: Path | None
    paragraphs: int
    characters: int  # processed by this call (not those a resumed run found done)
    seconds: float
    resumed_at: int = 0  # paragraphs found done
    already_complete: bool = False


@dataclass
class Runner:
    """Runs jobs with one loaded runtime; ``progress`` is a tqdm-like bar (``update(n)``) or None."""

    runtime: object
    settings: Settings
    package: dict  # what the record says about the model (path, task, model sha256)
    overwrite: bool = False
    progress: object | None = None
    say: Callable[[str], None] = lambda line: None
    stop: SignalFlag = field(default_factory=SignalFlag)

    def run(self, job: Job) -> Outcome:
        if job.out is None:
            return self._run_to_stream(job)
        return self._run_to_file(job)

    def _identity(self, job: Job) -> dict:
        return {"input": {"path": str(job.source.path), "sha256": job.source.sha256, "format": job.source.format,
                          "paragraphs": job.source.paragraphs},
                "lines": [job.first, job.end], "settings": self.settings.as_dict(), "package": self.package}

    def _run_to_stream(self, job: Job) -> Outcome:
        started = time.perf_counter()
        stream = sys.stdout.buffer
        for _, data, chars in self._chunks(job, job.first):
            stream.write(data)
            stream.flush()
            self._advance(chars)
            self._check_stop(job, job.end)
        return Outcome(None, job.end - job.first, job.characters, time.perf_counter() - started)

    def _run_to_file(self, job: Job) -> Outcome:
        out, identity = job.out, self._identity(job)
        record = None if self.overwrite else read_record(out)
        if record is None and out.exists() and not self.overwrite:
            raise UsageError(f"{out} exists and was not written by an unfinished tagsmith run (no {record_path(out).name}); "
                            "--overwrite replaces it")
        if record is not None:
            self._check_same(out, record, identity)
            done = record["done"]
            # one read of the kept output: checked against the record, then the running hash the run goes on with
            digest = sha256_digest(out, done["output_bytes"]) if out.is_file() else None
            if digest is None or out.stat().st_size < done["output_bytes"] or digest.hexdigest() != done["output_sha256"]:
                raise BulkError(f"{out}: the output changed since the run stopped (its first {done['output_bytes']} "
                                "bytes no longer match the progress record); --overwrite starts over")
            if record.get("complete"):
                if out.stat().st_size != done["output_bytes"]:
                    raise BulkError(f"{out}: bytes were added after the run completed; --overwrite starts over")
                self._advance(job.characters)
                return Outcome(out, done["paragraphs"], 0, 0.0, done["paragraphs"], already_complete=True)
            with open(out, "r+b") as handle:
                handle.truncate(done["output_bytes"])  # a half-written chunk after the last record
            self.say(f"{out}: resuming after paragraph {job.first + done['paragraphs']} "
                     f"({done['paragraphs']} of {job.end - job.first} done and verified)")
            self._advance(job.source.characters(job.first, job.first + done["paragraphs"]))
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            done = {"paragraphs": 0, "characters": 0, "output_bytes": 0, "output_sha256": hashlib.sha256().hexdigest(),
                    "seconds": 0.0}
            record = {"format": RECORD_FORMAT, "version": 1, "complete": False, **identity, "shard": job.shard,
                      "started": _now(), "done": done}
            out.write_bytes(b"")
            _write_record(out, record)
            digest = hashlib.sha256()
        resumed_at, chars_here, started = done["paragraphs"], 0, time.perf_counter()
        seconds_before = float(done.get("seconds", 0.0))
        with open(out, "ab") as handle:
            for paragraphs, data, chars in self._chunks(job, job.first + done["paragraphs"]):
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
                digest.update(data)
                chars_here += chars
                done = {"paragraphs": done["paragraphs"] + paragraphs, "characters": done["characters"] + chars,
                        "output_bytes": done["output_bytes"] + len(data), "output_sha256": digest.hexdigest(),
                        "seconds": round(seconds_before + time.perf_counter() - started, 3)}
                record.update(done=done, updated=_now())
                _write_record(out, record)
                self._advance(chars)
                self._check_stop(job, job.first + done["paragraphs"])
        seconds = time.perf_counter() - started
        total_seconds = done["seconds"]
        record.update(complete=True, finished=_now(), chars_per_second=round(done["characters"] / total_seconds, 1)
                      if total_seconds else None)
        _write_record(out, record)
        return Outcome(out, done["paragraphs"], chars_here, seconds, resumed_at)

    def _check_same(self, out: Path, record: dict, identity: dict) -> None:
        for key in ("input", "lines", "settings", "package"):
            if record.get(key) != identity[key]:
                what = {"input": "the input file changed (or is another file)", "lines": "another shard",
                        "settings": "other options", "package": "another model package"}[key]
                raise BulkError(f"{out}: was started with {what} ({key}: {json.dumps(record.get(key), ensure_ascii=False)}"
                                f" vs now {json.dumps(identity[key], ensure_ascii=False)}); run the same command as before "
                                "to resume, or --overwrite to start over")

    def _chunks(self, job: Job, first: int) -> Iterator[tuple[int, bytes, int]]:
        """(paragraphs, output bytes, characters) of the file's chunks from line ``first`` to the job's end."""
        bounds = [b for b in job.source.chunk_bounds(self.settings.chunk_chars) if first <= b <= job.end]
        if not bounds or bounds[0] != first or bounds[-1] != job.end:
            raise BulkError(f"{job.source.path}: lines {first}..{job.end} do not start and end at a chunk boundary "
                            f"(--chunk-chars {self.settings.chunk_chars}); --overwrite starts over")
        lines = job.source.read(first, job.end)
        for start, end in zip(bounds, bounds[1:]):
            items = [(text, record) for _, (_, text, record) in zip(range(start, end), lines)]
            yield len(items), render_chunk(self.runtime, items, self.settings), sum(len(t or "") for t, _ in items)

    def _advance(self, chars: int) -> None:
        if self.progress is not None:
            self.progress.update(chars)

    def _check_stop(self, job: Job, at: int) -> None:
        if self.stop.name is not None and at < job.end:
            raise Stopped(self.stop.name, at - job.first, job.end - job.first)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# --- the package --------------------------------------------------------------------------------------------


def load_runtime(task: str, package: Path | None, threads: int | None = None, batch_size: int = 32):
    """(runtime, what the record says about it): ``package`` or the shipped default of the task. A
    punctuation package segments too (any mark ends a sentence), as the server does."""
    from serving.packages import SHIPPED_DIR
    from serving.runtime import BoundaryRuntime, PackageError, load_package

    if package is None:
        shipped = SHIPPED_DIR / task
        package = shipped if (shipped / "tagsmith.json").is_file() else SHIPPED_DIR / "punctuation"
        if not (package / "tagsmith.json").is_file():
            raise BulkError(f"no shipped {task} package in {SHIPPED_DIR}; name one with --package")
    try:
        runtime = load_package(package, verify=True, threads=threads, batch_size=batch_size)
    except PackageError as error:
        raise BulkError(str(error)) from None
    found = runtime.manifest.get("task")
    if runtime.kind != "tagging" or found not in ("punctuation", task):
        raise BulkError(f"{package} holds a {found!r} model; {COMMANDS[task]} needs a {task} or punctuation package")
    if task == "segmentation" and found == "punctuation":
        runtime = BoundaryRuntime(runtime)
    model = runtime.manifest["models"][runtime.variant]
    return runtime, {"path": str(Path(package).resolve()), "task": found, "model": model,
                     "model_sha256": runtime.manifest["files"].get(model), "derived": found != task}


# --- folders, shards and merging ----------------------------------------------------------------------------


def output_name(path: Path, settings: Settings) -> str:
    """The output file of an input inside an output folder: its name, ending .jsonl for JSONL output and .txt
    for text output."""
    return path.with_suffix(".jsonl" if settings.output == "jsonl" else ".txt").name


def part_path(out_dir: Path, source: Path, settings: Settings, k: int, n: int) -> Path:
    return out_dir / "parts" / f"{output_name(source, settings)}.part-{k:05d}-of-{n:05d}"


def shard_summary_path(out_dir: Path, k: int, n: int) -> Path:
    return out_dir / "shards" / f"{k:05d}-of-{n:05d}.json"


def plan(inputs: Path, out: Path | None, settings: Settings, fmt: str, shard: tuple[int, int] | None) -> list[Job]:
    """The jobs of a call: one file to a file (or stdout), a folder into a folder, or one shard of either."""
    if inputs.is_dir():
        if out is None:
            raise UsageError(f"{inputs} is a folder: name an output folder with --out")
        files = folder_files(inputs)
        chosen = assign_files(files, shard[1]) if shard else [0] * len(files)
        label = f"{shard[0]}/{shard[1]}" if shard else None
        return [Job(scan(path, fmt), out / path.relative_to(inputs).parent / output_name(path, settings), shard=label)
                for path, k in zip(files, chosen) if shard is None or k == shard[0]]
    source = scan(inputs, fmt)
    if shard is None:
        if out is not None and out.is_dir():
            out = out / output_name(inputs, settings)
        return [Job(source, out)]
    if out is None:
        raise UsageError("--shard needs --out: the output folder that the shards and the merge share")
    k, n = shard
    first, end = shard_lines(source, settings, n)[k]
    return [Job(source, part_path(out, inputs, settings, k, n), first, end, shard=f"{k}/{n}")]


def write_shard_summary(out_dir: Path, shard: tuple[int, int], outcomes: Sequence[Outcome], package: dict) -> Path:
    """The marker that array task K finished (what the sbatch script waits for), with its speed."""
    path = shard_summary_path(out_dir, *shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    seconds = sum(o.seconds for o in outcomes)
    chars = sum(o.characters for o in outcomes)
    summary = {"shard": f"{shard[0]}/{shard[1]}", "outputs": [str(o.out) for o in outcomes],
               "paragraphs": sum(o.paragraphs for o in outcomes), "characters_this_run": chars,
               "seconds_this_run": round(seconds, 3), "chars_per_second": round(chars / seconds, 1) if seconds else None,
               "package": package, "host": os.uname().nodename, "finished": _now()}
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def merge(inputs: Path, out_dir: Path, n: int, settings: Settings, fmt: str) -> dict:
    """Check that the N shards did every paragraph (file) exactly once, then, for one input file, join the blocks
    in order into ``out_dir/<name>``. Raises BulkError listing what is missing."""
    if inputs.is_dir():
        files = folder_files(inputs)
        owners = assign_files(files, n)
        missing = []
        for path, k in zip(files, owners):
            out = out_dir / path.relative_to(inputs).parent / output_name(path, settings)
            problem = _incomplete(out, f"{k}/{n}", sha256_file(path))
            if problem:
                missing.append(f"{path.relative_to(inputs)} (shard {k}): {problem}")
        if missing:
            raise BulkError(f"{len(missing)} of {len(files)} input files are not done; rerun their array tasks: "
                            + "; ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
        return {"files": len(files), "shards": n, "out": str(out_dir)}
    source = scan(inputs, fmt)
    blocks = shard_lines(source, settings, n)
    problems = []
    for k, (first, end) in enumerate(blocks):
        part = part_path(out_dir, inputs, settings, k, n)
        problem = _incomplete(part, f"{k}/{n}", source.sha256, [first, end])
        if problem:
            problems.append(f"shard {k} (paragraphs {first + 1}-{end}): {problem}")
    if problems:
        raise BulkError(f"{len(problems)} of {n} shards are not done; rerun those array tasks, then merge again: "
                        + "; ".join(problems))
    target = out_dir / output_name(inputs, settings)
    digest, size = hashlib.sha256(), 0
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as merged:
        for k in range(n):
            with open(part_path(out_dir, inputs, settings, k, n), "rb") as part:
                for block in iter(lambda: part.read(1 << 20), b""):
                    merged.write(block)
                    digest.update(block)
                    size += len(block)
    os.replace(tmp, target)
    parts = [read_record(part_path(out_dir, inputs, settings, k, n)) for k in range(n)]
    record = {**parts[0], "lines": [0, source.paragraphs], "shard": None, "merged_from": n, "complete": True,
              "done": {"paragraphs": source.paragraphs, "characters": source.characters(), "output_bytes": size,
                       "output_sha256": digest.hexdigest(), "seconds": round(sum(p["done"]["seconds"] for p in parts), 3)},
              "finished": _now()}
    record.pop("chars_per_second", None)
    _write_record(target, record)
    return {"out": str(target), "paragraphs": source.paragraphs, "characters": source.characters(), "shards": n,
            "sha256": digest.hexdigest()}


def _incomplete(out: Path, shard: str, input_sha256: str, lines: list[int] | None = None) -> str | None:
    """Why ``out`` is not a complete, intact output of this shard (None when it is)."""
    try:
        record = read_record(out)
    except BulkError as error:
        return str(error)
    if record is None:
        return "not started" if not out.exists() else f"no progress record beside {out.name}"
    if record["input"]["sha256"] != input_sha256:
        return "made from another version of the input"
    if lines is not None and record["lines"] != lines:
        return f"holds paragraphs {record['lines']}, expected {lines}"
    if record.get("shard") != shard:
        return f"written by shard {record.get('shard')}, expected {shard}"
    done = record["done"]
    if not record.get("complete"):
        return f"stopped after {done['paragraphs']} paragraphs"
    if not out.is_file() or out.stat().st_size != done["output_bytes"] or sha256_file(out) != done["output_sha256"]:
        return "the output does not match its record (modified after it was written)"
    return None
