"""Overlapping windows over long texts, and merging per-window predictions back into one sequence.

Texts longer than a model's context are never truncated: they are cut into windows that overlap by
``overlap`` characters, and each character takes its prediction from the window in which it sits farthest
from an edge (it saw the most context there). Training and serving share this code so they agree.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tagsmith.decision import bias_indices, decode  # noqa: F401 (the decision lives in tagsmith.decision; re-exported)


def window_spans(length: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most ``size`` characters covering ``range(length)``."""
    if size < 1:
        raise ValueError(f"window size must be >= 1, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, {size}), got {overlap}")
    if length <= size:
        return [(0, length)]
    spans, start, step = [], 0, size - overlap
    while True:
        end = min(start + size, length)
        spans.append((start, end))
        if end == length:
            return spans
        start += step


def merge_windows(length: int, spans: Sequence[tuple[int, int]], window_values: Sequence[np.ndarray]) -> np.ndarray:
    """Per-character values (e.g. logits, shape ``(end-start, k)``) of each window -> ``(length, k)``."""
    if len(spans) != len(window_values):
        raise ValueError(f"{len(spans)} spans but {len(window_values)} window outputs")
    first = np.asarray(window_values[0])
    merged = np.zeros((length,) + first.shape[1:], dtype=first.dtype)
    best = np.full(length, -1)
    for (start, end), values in zip(spans, window_values):
        values = np.asarray(values)
        if values.shape[0] != end - start:
            raise ValueError(f"window {start}:{end} has {values.shape[0]} outputs")
        positions = np.arange(start, end)
        margin = np.minimum(positions - start, end - 1 - positions)
        take = margin > best[start:end]
        merged[positions[take]] = values[take]
        best[start:end] = np.where(take, margin, best[start:end])
    return merged


def first_token_positions(word_ids: Sequence[int | None], n_chars: int) -> list[int]:
    """The token position of each of a window's ``n_chars`` characters (its first token; -1 = it produced none),
    from the tokenizer's ``word_ids`` (each character is given to the tokenizer as its own word)."""
    positions = [-1] * n_chars
    for position, word in enumerate(word_ids):
        if word is not None and positions[word] == -1:
            positions[word] = position
    return positions


def first_token_logits(positions: Sequence[int], token_logits: np.ndarray) -> np.ndarray:
    """Each character's logits from its first token (``positions`` from :func:`first_token_positions`); zeros
    for a character that produced no token."""
    positions = np.asarray(positions, dtype=int)
    values = np.zeros((len(positions), token_logits.shape[-1]), dtype=np.float32)
    present = positions >= 0
    values[present] = token_logits[positions[present]]
    return values


def merge_record_windows(owners: Sequence[tuple[int, int, int]], lengths: Sequence[int],
                         window_values: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per-character values of every window (``owners``: its (record index, start, end)) -> one ``(length, k)``
    array per record (:func:`merge_windows`)."""
    per_record: dict[int, list] = {}
    for (index, start, end), values in zip(owners, window_values):
        per_record.setdefault(index, []).append(((start, end), values))
    return [merge_windows(length, [span for span, _ in per_record[index]], [v for _, v in per_record[index]])
            for index, length in enumerate(lengths)]
