"""Scores, as fractions in [0, 1]: the tagging tasks' (summed over all texts (micro) before dividing) and a
classifier's (single-label and multi-label; probabilities in, plain Python values out).

Segmentation is scored on sentence boundaries: the positions after which a sentence ends (label E or S).
The end of the text is always a boundary, so it is left out: counting it would reward a model that never
predicts anything. Punctuation is scored per mark and micro-averaged over the marks (O is not a mark); a
wrong mark at the right place counts as one false positive and one false negative.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np


def prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}


def _check_pairs(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sequences but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold labels but {len(p)} predicted")


def boundaries(labels: Sequence[str]) -> set[int]:
    """Indices i such that a sentence ends after character i, the text's last character excluded."""
    return {i for i, label in enumerate(labels[:-1]) if label in ("E", "S")}


def segmentation_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    _check_pairs(gold, pred)
    tp = fp = fn = correct = total = 0
    for g, p in zip(gold, pred):
        gb, pb = boundaries(g), boundaries(p)
        tp += len(gb & pb)
        fp += len(pb - gb)
        fn += len(gb - pb)
        correct += sum(a == b for a, b in zip(g, p))
        total += len(g)
    scores = prf(tp, fp, fn)
    scores["label_accuracy"] = correct / total if total else 0.0
    return scores


def punctuation_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    _check_pairs(gold, pred)
    tp, fp, fn = Counter(), Counter(), Counter()
    any_tp = any_fp = any_fn = 0
    for g_seq, p_seq in zip(gold, pred):
        for g, p in zip(g_seq, p_seq):
            if g == p:
                if g != "O":
                    tp[g] += 1
                continue
            if p != "O":
                fp[p] += 1
            if g != "O":
                fn[g] += 1
        # "any mark here" regardless of which: the segmentation a punctuation model implies
        gb = {i for i, x in enumerate(g_seq) if x != "O"}
        pb = {i for i, x in enumerate(p_seq) if x != "O"}
        any_tp += len(gb & pb)
        any_fp += len(pb - gb)
        any_fn += len(gb - pb)
    marks = sorted(set(tp) | set(fp) | set(fn))
    per_mark = {m: prf(tp[m], fp[m], fn[m]) for m in marks}
    micro = prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    macro = [v["f1"] for v in per_mark.values() if v["support"]]
    any_mark = prf(any_tp, any_fp, any_fn)
    return {
        "micro_precision": micro["precision"],
        "micro_recall": micro["recall"],
        "micro_f1": micro["f1"],
        "macro_f1": sum(macro) / len(macro) if macro else 0.0,
        "any_mark_f1": any_mark["f1"],
        "per_mark": per_mark,
    }


# --- classifiers --------------------------------------------------------------------------------------------


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
