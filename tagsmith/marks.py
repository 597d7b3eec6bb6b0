"""Punctuation marks of Classical Chinese text: the label set, and how raw marks map onto it.

Raw text mixes full-width and half-width marks, quote and book-title marks, ellipses and dashes. Everything
that reaches a model is normalised here, once, so the converter, the metrics and serving agree.
"""

from __future__ import annotations

import unicodedata

#: The punctuation label set (docs/architecture.md, "Label semantics"): the mark that FOLLOWS a character, or O for none.
PUNCTUATION_MARKS = ("，", "。", "：", "、", "；", "？", "！")

#: Half-width and variant forms mapped onto the label set.
MARK_ALIASES = {
    ",": "，", "﹐": "，", "､": "、", "﹑": "、",
    ".": "。", "．": "。", "｡": "。",
    ":": "：", "﹕": "：",
    ";": "；", "﹔": "；",
    "?": "？", "﹖": "？",
    "!": "！", "﹗": "！",
    # An ellipsis ends a thought; a dash in this corpus mostly separates clauses.
    "…": "。", "⋯": "。",
    "—": "，", "─": "，", "－": "，",
}

#: Quote and book-title marks: dropped from the text, never labels.
DROPPED_MARKS = frozenset("“”‘’「」『』《》〈〉\"'〔〕［］【】()（）·•")


def normalise_mark(char: str) -> str | None:
    """Return the label-set mark a raw character stands for, or None when it is not a label mark."""
    if char in PUNCTUATION_MARKS:
        return char
    return MARK_ALIASES.get(char)


def is_dropped(char: str) -> bool:
    return char in DROPPED_MARKS


def is_space(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in ("Zs", "Cc", "Cf")
