"""Punctuated raw text -> tagging records, and script normalisation (traditional / simplified) with OpenCC."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Iterator

from tagsmith.tasks import get_task, parse_punctuated

SCRIPTS = ("keep", "simplified", "traditional")
_OPENCC_CONFIG = {"simplified": "t2s", "traditional": "s2t"}


@lru_cache(maxsize=None)
def _converter(script: str):
    import opencc

    return opencc.OpenCC(_OPENCC_CONFIG[script])


def to_script(text: str, script: str) -> str:
    """Convert text to a script, keeping its length so per-character labels stay aligned.

    OpenCC converts whole phrases for accuracy; in the rare case a phrase changes length the text is
    converted character by character instead.
    """
    if script not in SCRIPTS:
        raise ValueError(f"unknown script {script!r}; expected one of {', '.join(SCRIPTS)}")
    if script == "keep" or not text:
        return text
    converter = _converter(script)
    converted = converter.convert(text)
    if len(converted) == len(text):
        return converted
    out = []
    for char in text:
        single = converter.convert(char)
        out.append(single if len(single) == 1 else char)
    return "".join(out)


@dataclass
class ConversionReport:
    """What conversion did to the input, so nothing is altered silently."""

    records: int = 0
    characters: int = 0
    marks: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    skipped_empty: int = 0

    def add(self, other: "ConversionReport") -> None:
        self.records += other.records
        self.characters += other.characters
        self.marks.update(other.marks)
        self.dropped.update(other.dropped)
        self.skipped_empty += other.skipped_empty

    def as_dict(self) -> dict:
        return {
            "records": self.records,
            "characters": self.characters,
            "marks": dict(self.marks.most_common()),
            "dropped": dict(self.dropped.most_common()),
            "skipped_without_characters": self.skipped_empty,
        }


def punctuated_to_record(text: str, task_name: str, script: str = "keep", report: ConversionReport | None = None) -> dict | None:
    """One punctuated text -> ``{"text", "labels"}`` for the task, or None when no character is left."""
    return record_from_parsed(parse_punctuated(to_script(text, script)), task_name, report)


def record_from_parsed(parsed, task_name: str, report: ConversionReport | None = None) -> dict | None:
    """A parsed text (:func:`tagsmith.tasks.parse_punctuated`) -> ``{"text", "labels"}``, or None when empty."""
    if report is not None:
        report.dropped.update(parsed.dropped)
    if not parsed.chars:
        if report is not None:
            report.skipped_empty += 1
        return None
    labels = get_task(task_name).from_parsed(parsed)
    if report is not None:
        report.records += 1
        report.characters += len(parsed.chars)
        report.marks.update(m for m in parsed.following if m)
    return {"text": parsed.chars, "labels": labels}


def convert_lines(
    lines: Iterable[str], task_name: str, script: str = "keep", report: ConversionReport | None = None, **extra
) -> Iterator[dict]:
    """Each non-blank line of punctuated text becomes one record; ``extra`` fields are copied onto each."""
    for line in lines:
        if not line.strip():
            continue
        record = punctuated_to_record(line, task_name, script, report)
        if record is not None:
            yield {**record, **extra}
