"""Overlapping windows over long texts, and merging per-window predictions back into one sequence.

Texts longer than a model's context are never truncated: they are cut into windows that overlap by
``overlap`` characters, and each character takes its prediction from the window in which it sits farthest
from an edge (it saw the most context there). Training and serving share this code so they agree.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


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


def bias_indices(labels: Sequence[str], bias_labels: Sequence[str], where: str, error: type[Exception] = ValueError) -> list[int]:
    """The positions of a manifest's ``bias_labels`` among its ``labels``; a name that is not a label is a corrupt
    or mismatched manifest, reported as ``error`` naming ``where``."""
    unknown = [label for label in bias_labels if label not in labels]
    if unknown:
        raise error(f"{where}: bias_labels {unknown} are not among the model's labels {list(labels)}")
    return [list(labels).index(label) for label in bias_labels]


def decode(char_logits: np.ndarray, labels: Sequence[str], bias_ids: Sequence[int] = (), bias: float = 0.0) -> list[str]:
    """Per-character logits -> labels, after adding the tuned decision ``bias`` to the rare labels' logits."""
    scores = np.array(char_logits, dtype=np.float32, copy=True)
    if bias:
        scores[:, list(bias_ids)] += bias
    return [labels[i] for i in scores.argmax(-1)]
