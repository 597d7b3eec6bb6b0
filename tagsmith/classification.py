"""Torch-free classification utilities: class weights, decision thresholds and metrics.

Everything here works on plain numpy arrays (model outputs already converted with
``softmax(...).numpy()``) and returns plain Python floats / ints / lists, so results can be
written with ``json.dump`` as they are.

Decision rule used throughout for binary tasks: predict the positive class iff
``p_positive >= threshold`` (the same ``>=`` convention as sklearn's ``precision_recall_curve``,
so a threshold returned by :func:`tune_threshold` reproduces its reported metrics exactly when
passed to :func:`classification_metrics`).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np

__all__ = [
    "TOXICITY_LABELS",
    "WEIGHT_SCHEMES",
    "class_weights",
    "tune_threshold",
    "classification_metrics",
    "multilabel_metrics",
]

TOXICITY_LABELS = ("non-toxic", "toxic")
WEIGHT_SCHEMES = ("balanced", "sqrt", "none")


# --------------------------------------------------------------------------------------------------
# class weights


def class_weights(labels: Sequence[str], label_names: Sequence[str], scheme: str = "balanced") -> list[float]:
    """Per-class loss weights, in ``label_names`` order.

    * ``"balanced"``: ``n_samples / (n_classes * count_c)`` (= sklearn ``compute_class_weight``)
    * ``"sqrt"``: the square root of the balanced weight (a milder correction)
    * ``"none"``: all 1.0

    A label not in ``label_names`` is a ValueError naming it; so is a class with no examples
    (whatever the scheme: it means the label set and the data disagree).
    """
    if scheme not in WEIGHT_SCHEMES:
        raise ValueError(f"unknown class-weight scheme {scheme!r}; expected one of {list(WEIGHT_SCHEMES)}")
    names = list(label_names)
    if not names:
        raise ValueError("label_names is empty")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"label_names has duplicates: {dup}")
    counts = Counter(labels)
    unknown = sorted((str(k) for k in counts if k not in set(names)))
    if unknown:
        shown = unknown[:10]
        more = f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise ValueError(f"labels not in label_names {names}: {shown}{more}")
    empty = [n for n in names if counts.get(n, 0) == 0]
    if empty:
        raise ValueError(
            f"class(es) {empty} have no examples among {sum(counts.values())} labels; "
            "cannot weight a class that never occurs - check the label set or the data split"
        )
    if scheme == "none":
        return [1.0] * len(names)
    n, k = sum(counts.values()), len(names)
    balanced = [n / (k * counts[c]) for c in names]
    if scheme == "sqrt":
        return [float(math.sqrt(w)) for w in balanced]
    return [float(w) for w in balanced]


# --------------------------------------------------------------------------------------------------
# threshold tuning


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


# --------------------------------------------------------------------------------------------------
# metrics


def _confusion(gold: np.ndarray, pred: np.ndarray, names: Sequence[str]) -> dict:
    from sklearn.metrics import confusion_matrix

    m = confusion_matrix(gold, pred, labels=list(range(len(names))))
    return {"labels": list(names), "matrix": [[int(x) for x in row] for row in m]}


def classification_metrics(
    probs: np.ndarray,
    gold: np.ndarray,
    label_names: Sequence[str],
    threshold: float | None = None,
    positive: str | None = None,
) -> dict:
    """Metrics for single-label classification.

    ``probs``: (n, n_classes) class probabilities (softmax), columns in ``label_names`` order;
    ``gold``: (n,) integer class ids.

    Binary (2 classes): predict ``positive`` (default ``label_names[1]``) iff its probability is
    >= ``threshold`` (default 0.5). Keys: accuracy, macro_f1, weighted_f1, precision, recall, f1
    (positive class), roc_auc, pr_auc (average precision), threshold, positive.
    ``roc_auc`` is None when gold has a single class; ``pr_auc`` is None when gold has no
    positives.

    Multiclass: argmax prediction; keys accuracy, macro_f1, weighted_f1. ``threshold`` /
    ``positive`` are errors there.

    Always: ``per_class`` ({label: {precision, recall, f1, support}}), ``support``
    ({label: gold count}), ``n``, and ``confusion_matrix`` = ``{"labels": [...], "matrix":
    [[...]]}`` with rows = gold, columns = predicted. All values are plain Python types.
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        f1_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    names = list(label_names)
    k = len(names)
    if k < 2:
        raise ValueError(f"need at least 2 labels, got {names}")
    if len(set(names)) != k:
        raise ValueError(f"label_names has duplicates: {names}")
    P = np.asarray(probs, dtype=float)
    if P.ndim != 2 or P.shape[1] != k:
        raise ValueError(f"probs must have shape (n, {k}) for labels {names}, got {P.shape}")
    G = np.asarray(gold)
    if G.ndim != 1 or G.shape[0] != P.shape[0]:
        raise ValueError(f"gold must have shape ({P.shape[0]},), got {G.shape}")
    if P.shape[0] == 0:
        raise ValueError("no examples")
    if not np.all(np.isfinite(P)):
        raise ValueError("probs contains NaN or infinite values")
    if not np.issubdtype(G.dtype, np.integer):
        if np.issubdtype(G.dtype, np.floating) and np.all(np.mod(G, 1) == 0):
            G = G.astype(int)
        else:
            raise ValueError(f"gold must be integer class ids, got dtype {G.dtype}")
    if G.min() < 0 or G.max() >= k:
        raise ValueError(f"gold class ids must be in [0, {k - 1}], found range [{G.min()}, {G.max()}]")

    out: dict[str, Any] = {"n": int(P.shape[0])}
    if k == 2:
        pos = 1 if positive is None else names.index(positive) if positive in names else None
        if pos is None:
            raise ValueError(f"positive={positive!r} is not one of {names}")
        neg = 1 - pos
        thr = 0.5 if threshold is None else float(threshold)
        p_pos = P[:, pos]
        pred = np.where(p_pos >= thr, pos, neg)
        y = (G == pos).astype(int)
        n_pos = int(y.sum())
        out.update(
            positive=names[pos],
            threshold=thr,
            roc_auc=float(roc_auc_score(y, p_pos)) if 0 < n_pos < len(y) else None,
            pr_auc=float(average_precision_score(y, p_pos)) if n_pos > 0 else None,
        )
    else:
        if threshold is not None:
            raise ValueError("threshold only applies to binary classification")
        if positive is not None:
            raise ValueError("positive only applies to binary classification")
        pred = P.argmax(axis=1)

    ids = list(range(k))
    prec, rec, f1, sup = precision_recall_fscore_support(G, pred, labels=ids, zero_division=0)
    out["accuracy"] = float(accuracy_score(G, pred))
    out["macro_f1"] = float(f1_score(G, pred, labels=ids, average="macro", zero_division=0))
    out["weighted_f1"] = float(f1_score(G, pred, labels=ids, average="weighted", zero_division=0))
    if k == 2:
        out["precision"] = float(prec[pos])
        out["recall"] = float(rec[pos])
        out["f1"] = float(f1[pos])
    out["per_class"] = {
        names[i]: {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(sup[i]),
        }
        for i in ids
    }
    out["support"] = {names[i]: int(sup[i]) for i in ids}
    out["confusion_matrix"] = _confusion(G, pred, names)
    return out


def multilabel_metrics(
    probs: np.ndarray,
    gold: np.ndarray,
    label_names: Sequence[str],
    thresholds: float | Sequence[float] = 0.5,
) -> dict:
    """Metrics for multi-label classification (e.g. the six Jigsaw columns).

    ``probs``: (n, n_labels) independent (sigmoid) probabilities; ``gold``: (n, n_labels) 0/1.
    ``thresholds``: one for all labels or one per label; predict 1 iff p >= threshold.

    Returns micro/macro F1, subset accuracy (exact match) and per-label precision, recall, F1,
    support and roc_auc (None when a label has a single class in gold). Plain Python types.
    """
    from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

    names = list(label_names)
    P = np.asarray(probs, dtype=float)
    G = np.asarray(gold)
    if P.ndim != 2 or P.shape[1] != len(names) or G.shape != P.shape:
        raise ValueError(f"probs and gold must both have shape (n, {len(names)}); got {P.shape} and {G.shape}")
    if not np.isin(G, (0, 1)).all():
        raise ValueError("gold must be 0/1")
    G = G.astype(int)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(names),))
    pred = (P >= thr[None, :]).astype(int)
    prec, rec, f1, sup = precision_recall_fscore_support(G, pred, zero_division=0)
    per = {}
    for i, n in enumerate(names):
        col = G[:, i]
        auc = float(roc_auc_score(col, P[:, i])) if 0 < col.sum() < len(col) else None
        per[n] = {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(sup[i]),
            "roc_auc": auc,
            "threshold": float(thr[i]),
        }
    return {
        "n": int(P.shape[0]),
        "micro_f1": float(f1_score(G, pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(G, pred, average="macro", zero_division=0)),
        "subset_accuracy": float((pred == G).all(axis=1).mean()),
        "per_label": per,
    }
