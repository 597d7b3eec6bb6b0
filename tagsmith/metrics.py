"""Scores for the tagging tasks, as fractions in [0, 1], summed over all texts (micro) before dividing.

Segmentation is scored on sentence boundaries: the positions after which a sentence ends (label E or S).
The end of the text is always a boundary, so it is left out: counting it would reward a model that never
predicts anything. Punctuation is scored per mark and micro-averaged over the marks (O is not a mark); a
wrong mark at the right place counts as one false positive and one false negative.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence


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
