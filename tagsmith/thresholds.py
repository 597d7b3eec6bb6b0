"""Decision thresholds for a binary classifier, tuned on held-out data: the threshold of best F1 (or macro-F1),
or the highest one that still keeps a target recall, and the operating points a package records.

Decision rule used throughout: predict the positive class iff ``p_positive >= threshold`` (the same ``>=``
convention as sklearn's ``precision_recall_curve``, and as ``tagsmith.decision.at_threshold``), so a threshold
returned by :func:`tune_threshold` reproduces its reported metrics exactly when passed to
``tagsmith.metrics.classification_metrics``. Torch-free: plain numpy in, plain Python values out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["OPERATING_POINTS", "operating_points", "tune_threshold"]



def _binary_inputs(probs: Any, gold: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=float)
    g = np.asarray(gold)
    if p.ndim != 1:
        raise ValueError(f"probs must be 1-D (probability of the positive class), got shape {p.shape}")
    if g.shape != p.shape:
        raise ValueError(f"probs and gold differ in shape: {p.shape} vs {g.shape}")
    if p.size == 0:
        raise ValueError("probs is empty")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or infinite values")
    if not np.isin(g, (0, 1)).all():
        bad = sorted(set(np.unique(g).tolist()) - {0, 1})[:10]
        raise ValueError(f"gold must be 0/1, found {bad}")
    return p, g.astype(int)


def _logit_midpoint(lower: float, upper: float, eps: float = 1e-7) -> float:
    lo, hi = np.clip([lower, upper], eps, 1 - eps)
    mid = (np.log(lo / (1 - lo)) + np.log(hi / (1 - hi))) / 2
    return float(min(1 / (1 + np.exp(-mid)), upper))


def _macro_f1_at(p: np.ndarray, g: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Macro-F1 (mean over the two classes) of predicting positive when ``p >= t``, for each t."""
    order = np.sort(p[g == 1]), np.sort(p[g == 0])
    positives_above = len(order[0]) - np.searchsorted(order[0], thresholds, side="left")  # true positives
    negatives_above = len(order[1]) - np.searchsorted(order[1], thresholds, side="left")  # false positives
    tp, fp = positives_above, negatives_above
    fn, tn = len(order[0]) - tp, len(order[1]) - fp
    f1_pos = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(len(thresholds)), where=(2 * tp + fp + fn) > 0)
    f1_neg = np.divide(2 * tn, 2 * tn + fp + fn, out=np.zeros(len(thresholds)), where=(2 * tn + fp + fn) > 0)
    return (f1_pos + f1_neg) / 2


#: the operating points a binary classifier's package records: name -> tune_threshold arguments
OPERATING_POINTS = {"macro_f1": {"objective": "macro_f1"}, "f1": {"objective": "f1"},
                    "recall_0.9": {"target_recall": 0.9}}


def operating_points(probs: np.ndarray, gold: np.ndarray) -> dict:
    """Each of OPERATING_POINTS tuned on held-out data: ``{name: {"threshold", "precision", "recall", "f1"}}``
    (precision / recall / F1 of the positive class there), so a user can pick a trade-off per request."""
    points = {}
    for name, arguments in OPERATING_POINTS.items():
        tuned = tune_threshold(probs, gold, **arguments)
        points[name] = {k: round(float(tuned[k]), 6) for k in ("threshold", "precision", "recall", "f1")}
    return points


def tune_threshold(
    probs: np.ndarray,
    gold: np.ndarray,
    objective: str = "f1",
    target_recall: float | None = None,
) -> dict:
    """Pick a decision threshold for a binary classifier on held-out data.

    ``probs``: probability of the positive class, shape (n,); ``gold``: 0/1, shape (n,).

    * ``objective="f1"``: the threshold maximising F1 of the positive class (candidates are the
      distinct scores, via ``sklearn.metrics.precision_recall_curve``); on ties the highest such
      score (fewest positive predictions) wins. The returned threshold lies midway (logit space) between
      that score (``boundary_score``) and the next lower one, so validation predictions are unchanged.
    * ``objective="macro_f1"``: the same, maximising the mean F1 of both classes (the metric OffensEval
      and most toxicity benchmarks rank by); it usually sits higher than the positive-F1 threshold.
    * ``target_recall=r`` (or ``objective="recall"`` with it): the highest threshold whose recall
      is still >= r - i.e. the best precision you can have while catching at least r of the
      positives.

    Returns ``{"threshold", "f1", "precision", "recall", "objective"}`` (plus ``"target_recall"``
    in recall mode). Gold with no positives is a ValueError (every threshold is degenerate).
    """
    from sklearn.metrics import precision_recall_curve

    p, g = _binary_inputs(probs, gold)
    if g.sum() == 0:
        raise ValueError("gold has no positive examples: cannot tune a threshold (precision/recall undefined)")
    if target_recall is not None:
        if objective not in ("f1", "recall", "target_recall"):
            raise ValueError(f"target_recall given together with objective={objective!r}")
        objective = "recall"
        if not (0.0 < float(target_recall) <= 1.0):
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    elif objective not in ("f1", "macro_f1"):
        if objective in ("recall", "target_recall"):
            raise ValueError("objective='recall' needs target_recall=")
        raise ValueError(f"unknown objective {objective!r}; expected 'f1', 'macro_f1' or target_recall=")

    precision, recall, thresholds = precision_recall_curve(g, p)
    # the last (precision=1, recall=0) point has no threshold
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)

    if objective in ("f1", "macro_f1"):
        score = f1 if objective == "f1" else _macro_f1_at(p, g, thresholds)
        best = float(score.max())
        # thresholds ascend; take the highest among (numerically) tied maxima
        idx = int(np.flatnonzero(score >= best - 1e-12)[-1])
        out = {"objective": objective}
        if objective == "macro_f1":
            out["macro_f1"] = best
    else:
        ok = np.flatnonzero(recall >= float(target_recall) - 1e-12)
        # recall is non-increasing in the threshold and recall[0] == 1, so ok is never empty
        idx = int(ok[-1])
        out = {"objective": "recall", "target_recall": float(target_recall)}
    # The chosen score belongs to a validation example: a threshold exactly there flips on the slightest
    # shift. Place it midway (in logit space) to the next lower score instead: every validation prediction
    # stays the same, and unseen texts get the widest margin on both sides.
    upper = float(thresholds[idx])
    lower = float(thresholds[idx - 1]) if idx > 0 else 0.0
    out.update(
        threshold=_logit_midpoint(lower, upper),
        boundary_score=upper,
        f1=float(f1[idx]),
        precision=float(precision[idx]),
        recall=float(recall[idx]),
    )
    return out
