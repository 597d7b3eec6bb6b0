"""The task registry: what each task's labels are, how text maps to labels and back, and how it is scored.

Tagging tasks give one label per character of the text (Python code point). Labels are strings everywhere
outside a model; ids exist only between a tokenizer and a logits tensor.

Each entry also carries what the later stages need of it, so that adding a task is one entry here plus its own
code: ``kind`` (the trainer, runtime, parity evaluation and PyTorch reference of its kind), ``route`` (the HTTP
endpoint; None = not served), ``answer`` (the answer shape, ``serving.answers.SHAPES``), ``call`` (the method of a
runtime or reference that gives the outputs the parity gate and the benchmark compare), ``render`` (how a result
is written as text, where the task has one), ``title`` and ``examples`` (the demo page's tab).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from tagsmith import marks
from tagsmith.metrics import punctuation_metrics, segmentation_metrics

SEGMENT_SEPARATOR = " | "


@dataclass
class ParsedText:
    """Characters of a punctuated text with the label-set mark that follows each (None = no mark)."""

    chars: str
    following: list[str | None]
    dropped: dict[str, int] = field(default_factory=dict)  # what the parser removed, by reason

    def count(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


def parse_punctuated(text: str) -> ParsedText:
    """Split punctuated raw text into characters and the mark after each.

    Whitespace and quote / book-title marks are removed; half-width and variant marks are normalised; when
    several marks follow one character the first is kept (``乎？！`` -> ``？``); a mark before any character
    is dropped. Every removal is counted in ``dropped`` so converters can report it.
    """
    parsed = ParsedText(chars="", following=[])
    chars: list[str] = []
    for char in text:
        mark = marks.normalise_mark(char)
        if mark is not None:
            if not chars:
                parsed.count("leading mark")
            elif parsed.following[-1] is None:
                parsed.following[-1] = mark
            else:
                parsed.count("repeated mark")
        elif marks.is_space(char):
            parsed.count("whitespace")
        elif marks.is_dropped(char):
            parsed.count("quote or book-title mark")
        elif _is_other_punctuation(char):
            parsed.count(f"other mark {char}")
        else:
            chars.append(char)
            parsed.following.append(None)
    parsed.chars = "".join(chars)
    return parsed


def _is_other_punctuation(char: str) -> bool:
    import unicodedata

    return unicodedata.category(char).startswith("P")


@dataclass(frozen=True)
class TaggingTask:
    name: str
    labels: tuple[str, ...]
    #: labels whose logits the tuned decision bias raises (the rare "something happens here" classes)
    bias_labels: tuple[str, ...]
    from_parsed: Callable[[ParsedText], list[str]]
    render: Callable[[str, Sequence[str]], str]
    score: Callable[[Sequence[Sequence[str]], Sequence[Sequence[str]]], dict]
    main_metric: str
    kind: str = "tagging"
    route: str | None = None
    answer: str | None = None
    title: str = ""
    examples: tuple[str, ...] = ()
    call: str = "char_logits"

    def labels_from_punctuated(self, text: str) -> tuple[str, list[str]]:
        parsed = parse_punctuated(text)
        return parsed.chars, self.from_parsed(parsed)

    def validate_record(self, record: dict) -> list[str]:
        """Reasons this record is unusable for the task (empty list = fine)."""
        problems = _check_text(record)
        if problems:
            return problems
        labels = record.get("labels")
        if not isinstance(labels, list):
            return [f"'labels' must be a list of strings, got {type(labels).__name__}"]
        text = record["text"]
        if len(labels) != len(text):
            problems.append(f"length mismatch: text has {len(text)} characters, labels has {len(labels)}")
        unknown = sorted({str(label) for label in labels if label not in self.labels})
        if unknown:
            problems.append(f"unknown label(s) {', '.join(map(repr, unknown))}; expected one of {' '.join(self.labels)}")
        return problems


def _check_text(record: object) -> list[str]:
    if not isinstance(record, dict):
        return [f"record must be a JSON object, got {type(record).__name__}"]
    if "text" not in record:
        return ["missing field 'text'"]
    text = record["text"]
    if not isinstance(text, str):
        return [f"'text' must be a string, got {type(text).__name__}"]
    if not text.strip():
        return ["empty text"]
    if "\ufffd" in text:
        return ["text contains U+FFFD (invalid UTF-8 upstream)"]
    return []


# --- segmentation: B M E S, boundaries at any mark -------------------------------------------------------


def segmentation_labels(parsed: ParsedText) -> list[str]:
    n = len(parsed.chars)
    return labels_from_ends([parsed.following[i] is not None for i in range(n)])


def labels_from_ends(ends: Sequence[bool]) -> list[str]:
    """B/M/E/S labels from "a sentence ends after character i" flags; the text's last character always ends one."""
    n = len(ends)
    ends = [bool(e) or i == n - 1 for i, e in enumerate(ends)]
    labels = []
    for i in range(n):
        starts = i == 0 or ends[i - 1]
        labels.append({(True, True): "S", (True, False): "B", (False, True): "E", (False, False): "M"}[starts, ends[i]])
    return labels


def segmentation_sentences(text: str, labels: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences; a sentence ends at E or S, or at the text's end."""
    spans, start = [], 0
    for i, label in enumerate(labels):
        if label in ("E", "S") or i == len(text) - 1:
            spans.append((start, i + 1))
            start = i + 1
    return spans


def render_segmentation(text: str, labels: Sequence[str]) -> str:
    return SEGMENT_SEPARATOR.join(text[a:b] for a, b in segmentation_sentences(text, labels))


# --- punctuation: the mark that follows each character ---------------------------------------------------


def punctuation_labels(parsed: ParsedText) -> list[str]:
    return [mark or "O" for mark in parsed.following]


def render_punctuation(text: str, labels: Sequence[str]) -> str:
    return "".join(char + (label if label != "O" else "") for char, label in zip(text, labels))


SEGMENTATION = TaggingTask(
    name="segmentation",
    labels=("B", "M", "E", "S"),
    bias_labels=("E", "S"),
    from_parsed=segmentation_labels,
    render=render_segmentation,
    score=segmentation_metrics,
    main_metric="f1",
    route="/segment",
    answer="segmented",
    title="断句 Segmentation",
    examples=("天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏", "学而时习之不亦说乎有朋自远方来不亦乐乎",
              "大学之道在明明德在亲民在止于至善"),
)

PUNCTUATION = TaggingTask(
    name="punctuation",
    labels=("O",) + marks.PUNCTUATION_MARKS,
    bias_labels=marks.PUNCTUATION_MARKS,
    from_parsed=punctuation_labels,
    render=render_punctuation,
    score=punctuation_metrics,
    main_metric="micro_f1",
    route="/punctuate",
    answer="punctuated",
    title="标点 Punctuation",
    examples=("天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏", "学而时习之不亦说乎有朋自远方来不亦乐乎人不知而不愠不亦君子乎",
              "雲騰致雨露結為霜金生麗水玉出崑岡"),
)

@dataclass(frozen=True)
class ClassificationTask:
    """Text classification. ``labels`` empty = taken from the training data (any label set)."""

    name: str
    labels: tuple[str, ...] = ()
    positive_label: str | None = None  # binary: the class whose threshold is tuned
    main_metric: str = "macro_f1"
    kind: str = "classification"
    route: str | None = None
    answer: str | None = None
    title: str = ""
    examples: tuple[str, ...] = ()
    call: str = "logits"
    render: Callable[[str, Sequence[str]], str] | None = None

    def validate_record(self, record: dict) -> list[str]:
        problems = _check_text(record)
        if problems:
            return problems
        if "label" in record:
            label = record["label"]
            if not isinstance(label, str):
                return [f"'label' must be a string, got {type(label).__name__}"]
            if self.labels and label not in self.labels:
                return [f"unknown label {label!r}; expected one of {', '.join(self.labels)}"]
            return []
        if isinstance(record.get("labels"), dict):
            bad = {k: v for k, v in record["labels"].items() if v not in (0, 1)}
            return [f"'labels' values must be 0 or 1, got {bad}"] if bad else []
        return ["missing field 'label' (or a 'labels' mapping for multi-label)"]


@dataclass(frozen=True)
class MlmTask:
    """Masked-LM continued pretraining: records are just text."""

    name: str = "mlm"
    labels: tuple[str, ...] = ()
    main_metric: str = "perplexity"
    kind: str = "mlm"
    route: str | None = "/fill_mask"
    answer: str | None = "filled_mask"
    title: str = "Fill-mask"
    examples: tuple[str, ...] = ("天地玄[MASK]，宇宙洪荒。", "学而时习之，不亦[MASK]乎？", "大学之道，在明明[MASK]。")
    call: str = "mask_logits"
    render: Callable[[str, Sequence[str]], str] | None = None

    def validate_record(self, record: dict) -> list[str]:
        return _check_text(record)


TOXICITY = ClassificationTask(name="toxicity", labels=("non-toxic", "toxic"), positive_label="toxic", route="/toxicity",
                              answer="toxicity", title="Toxicity",
                              examples=("you are a lovely person, thanks for the help", "shut up, you pathetic idiot",
                                        "the game starts at 7 pm tonight"))
CLASSIFICATION = ClassificationTask(name="classification")
MLM = MlmTask()

TASKS: dict[str, object] = {
    task.name: task for task in (SEGMENTATION, PUNCTUATION, TOXICITY, CLASSIFICATION, MLM)
}


class UnknownTaskError(KeyError):
    def __str__(self) -> str:
        return f"unknown task {self.args[0]!r}; known tasks: {', '.join(sorted(TASKS))}"


def get_task(name: str):
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(name) from None


def register(task) -> None:
    TASKS[task.name] = task


def served_tasks() -> list:
    """The tasks with an HTTP endpoint (a ``route``), in registry order."""
    return [task for task in TASKS.values() if task.route]


def kind_of(task_name: str) -> str | None:
    """The kind of a registered task (None for a name the registry does not know)."""
    task = TASKS.get(task_name)
    return task.kind if task is not None else None
