"""From model outputs to decisions, shared by training, the export parity gate and serving: softmax / sigmoid,
the tuned decision bias of taggers, and the threshold of binary classifiers. Torch-free (numpy)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def softmax(values: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.asarray(values, dtype=np.float32) - np.max(values, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float32)))


# --- tagging: the tuned decision bias --------------------------------------------------------------------------


def bias_indices(labels: Sequence[str], bias_labels: Sequence[str], where: str, error: type[Exception] = ValueError) -> list[int]:
    """The positions of a manifest's ``bias_labels`` among its ``labels``; a name that is not a label is a corrupt
    or mismatched manifest, reported as ``error`` naming ``where``."""
    unknown = [label for label in bias_labels if label not in labels]
    if unknown:
        raise error(f"{where}: bias_labels {unknown} are not among the model's labels {list(labels)}")
    return [list(labels).index(label) for label in bias_labels]


def biased(char_logits: np.ndarray, bias_ids: Sequence[int] = (), bias: float = 0.0) -> np.ndarray:
    """A float32 copy of per-character logits with the tuned decision ``bias`` added to the rare labels' logits:
    the scores every tagging decision (and its confidence) is taken on."""
    scores = np.array(char_logits, dtype=np.float32, copy=True)
    if bias and len(scores):
        scores[:, list(bias_ids)] += bias
    return scores


def decode_scores(scores: np.ndarray, labels: Sequence[str]) -> list[str]:
    """Per-character (already biased) scores -> labels."""
    return [labels[i] for i in np.asarray(scores).argmax(-1)] if len(scores) else []


def decode(char_logits: np.ndarray, labels: Sequence[str], bias_ids: Sequence[int] = (), bias: float = 0.0) -> list[str]:
    """Per-character logits -> labels, after adding the tuned decision ``bias`` to the rare labels' logits."""
    return decode_scores(biased(char_logits, bias_ids, bias), labels)


# --- classification: the tuned threshold -----------------------------------------------------------------------


def decide_classes(probabilities: np.ndarray, labels: Sequence[str], threshold=None, positive: str | None = None,
                   multi_label: bool = False) -> np.ndarray:
    """The decision for each row of probabilities: multi-label, a 0/1 row (each label at or above its
    threshold, default 0.5); binary, the index of ``positive`` (default the second label) when its probability
    is >= threshold (default 0.5), else the other; more classes, the argmax."""
    probabilities = np.asarray(probabilities)
    if multi_label:
        return (probabilities >= (0.5 if threshold is None else np.asarray(threshold, dtype=np.float32))).astype(int)
    if len(labels) == 2:
        chosen = list(labels).index(positive) if positive in labels else 1
        return np.where(at_threshold(probabilities[:, chosen], threshold), chosen, 1 - chosen)
    return probabilities.argmax(-1)


def at_threshold(probability, threshold=None):
    """Whether a binary model's positive probability decides for the positive label (>= threshold, default 0.5)."""
    return probability >= (0.5 if threshold is None else float(threshold))


def decide_label(probabilities: Sequence[float], labels: Sequence[str], threshold=None, positive: str | None = None) -> str:
    """One (single-label) row's label: :func:`decide_classes` for one row."""
    return labels[int(decide_classes(np.asarray([probabilities]), labels, threshold, positive)[0])]
