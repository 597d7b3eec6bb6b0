"""Class weights (training.losses), threshold tuning (tagsmith.thresholds) and classifier metrics (tagsmith.metrics)
on hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tagsmith.metrics import classification_metrics, multilabel_metrics
from tagsmith.tasks import TOXICITY
from tagsmith.thresholds import tune_threshold
from training.losses import class_weights

TOXICITY_LABELS = TOXICITY.labels

# --------------------------------------------------------------------------------------------------
# class weights


def test_class_weights_balanced_sqrt_none():
    labels = ["non-toxic"] * 3 + ["toxic"]
    assert class_weights(labels, TOXICITY_LABELS) == pytest.approx([4 / 6, 2.0])
    assert class_weights(labels, TOXICITY_LABELS, "sqrt") == pytest.approx([(4 / 6) ** 0.5, 2.0**0.5])
    assert class_weights(labels, TOXICITY_LABELS, "none") == [1.0, 1.0]
    # order follows label_names, not the data
    assert class_weights(labels, ["toxic", "non-toxic"]) == pytest.approx([2.0, 4 / 6])
    assert all(type(w) is float for w in class_weights(labels, TOXICITY_LABELS))


def test_class_weights_match_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    rng = np.random.default_rng(0)
    names = ["negative", "neutral", "positive"]
    labels = list(rng.choice(names, size=101, p=[0.2, 0.5, 0.3]))
    ref = compute_class_weight("balanced", classes=np.array(names), y=np.array(labels))
    assert class_weights(labels, names) == pytest.approx(ref.tolist())


def test_class_weights_errors():
    with pytest.raises(ValueError, match="'spam'"):
        class_weights(["toxic", "spam"], TOXICITY_LABELS)
    with pytest.raises(ValueError, match=r"\['toxic'\] have no examples"):
        class_weights(["non-toxic", "non-toxic"], TOXICITY_LABELS)
    with pytest.raises(ValueError, match="unknown class-weight scheme"):
        class_weights(["toxic", "non-toxic"], TOXICITY_LABELS, "inverse")


# --------------------------------------------------------------------------------------------------
# threshold tuning

# p(toxic) and gold for 6 examples. Threshold candidates (predict positive iff p >= t):
#   t=0.8 : TP1 FP0 FN2 -> P=1    R=1/3 F1=1/2
#   t=0.7 : TP2 FP0 FN1 -> P=1    R=2/3 F1=4/5
#   t=0.4 : TP2 FP1 FN1 -> P=2/3  R=2/3 F1=2/3
#   t=0.35: TP3 FP1 FN0 -> P=3/4  R=1   F1=6/7   <- best F1
#   t=0.2 : TP3 FP2     -> P=3/5  R=1   F1=3/4
#   t=0.1 : TP3 FP3     -> P=1/2  R=1   F1=2/3
P_TOX = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2])
GOLD = np.array([0, 0, 1, 1, 1, 0])


def test_tune_threshold_f1_hand_computed():
    r = tune_threshold(P_TOX, GOLD)
    assert r["objective"] == "f1"
    assert r["boundary_score"] == pytest.approx(0.35)
    assert 0.2 < r["threshold"] < 0.35  # midway to the next lower score (0.2): same predictions, wider margin
    assert r["f1"] == pytest.approx(6 / 7)
    assert r["precision"] == pytest.approx(3 / 4)
    assert r["recall"] == pytest.approx(1.0)
    assert all(type(r[k]) is float for k in ("threshold", "f1", "precision", "recall"))


@pytest.mark.parametrize(
    "target, thr, p, rec",
    [(0.3, 0.8, 1.0, 1 / 3), (0.5, 0.7, 1.0, 2 / 3), (2 / 3, 0.7, 1.0, 2 / 3), (0.9, 0.35, 0.75, 1.0), (1.0, 0.35, 0.75, 1.0)],
)
def test_tune_threshold_target_recall(target, thr, p, rec):
    r = tune_threshold(P_TOX, GOLD, target_recall=target)
    assert r["objective"] == "recall" and r["target_recall"] == target
    assert r["boundary_score"] == pytest.approx(thr)
    lower = max([x for x in P_TOX if x < thr], default=0.0)
    assert lower < r["threshold"] < thr
    assert r["precision"] == pytest.approx(p)
    assert r["recall"] == pytest.approx(rec)
    assert r["recall"] >= target - 1e-12


def test_tune_threshold_tie_prefers_highest_threshold():
    # t=0.9: P=1 R=1/2 F1=2/3 ; t=0.2: P=1/2 R=1 F1=2/3 (tie) ; lower ones worse
    r = tune_threshold(np.array([0.9, 0.8, 0.7, 0.2]), np.array([1, 0, 0, 1]))
    assert r["boundary_score"] == pytest.approx(0.9) and 0.8 < r["threshold"] < 0.9 and r["f1"] == pytest.approx(2 / 3)


def test_tune_threshold_roundtrips_through_metrics():
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 2, size=200)
    p = np.clip(gold * 0.3 + rng.random(200) * 0.7, 0, 1)
    r = tune_threshold(p, gold)
    m = classification_metrics(np.stack([1 - p, p], axis=1), gold, TOXICITY_LABELS, threshold=r["threshold"])
    assert m["f1"] == pytest.approx(r["f1"])
    assert m["precision"] == pytest.approx(r["precision"])
    assert m["recall"] == pytest.approx(r["recall"])


def test_tune_threshold_macro_f1_is_the_best_of_every_cut():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(5)
    gold = (rng.random(300) < 0.3).astype(int)  # imbalanced, as toxicity sets are
    p = np.clip(gold * 0.25 + rng.random(300) * 0.75, 0, 1)
    r = tune_threshold(p, gold, objective="macro_f1")
    brute = max(f1_score(gold, (p >= t).astype(int), average="macro") for t in np.unique(p))
    assert r["macro_f1"] == pytest.approx(brute)
    m = classification_metrics(np.stack([1 - p, p], axis=1), gold, TOXICITY_LABELS, threshold=r["threshold"])
    assert m["macro_f1"] == pytest.approx(brute)
    # on imbalanced data the macro-F1 cut is not the positive-F1 cut, and scores at least as well on macro-F1
    f1_cut = tune_threshold(p, gold)
    assert f1_score(gold, (p >= f1_cut["threshold"]).astype(int), average="macro") <= brute + 1e-12


def test_tune_threshold_errors():
    with pytest.raises(ValueError, match="no positive"):
        tune_threshold(np.array([0.1, 0.9]), np.array([0, 0]))
    with pytest.raises(ValueError, match="shape"):
        tune_threshold(np.array([0.1, 0.9]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="1-D"):
        tune_threshold(np.array([[0.9, 0.1]]), np.array([0]))
    with pytest.raises(ValueError, match="NaN"):
        tune_threshold(np.array([np.nan, 0.9]), np.array([0, 1]))
    with pytest.raises(ValueError, match="0/1"):
        tune_threshold(np.array([0.2, 0.9]), np.array([0, 2]))
    with pytest.raises(ValueError, match="target_recall"):
        tune_threshold(P_TOX, GOLD, target_recall=0.0)
    with pytest.raises(ValueError, match="unknown objective"):
        tune_threshold(P_TOX, GOLD, objective="accuracy")


# --------------------------------------------------------------------------------------------------
# metrics


def _binary_probs(p_pos):
    return np.stack([1 - p_pos, p_pos], axis=1)


def test_binary_metrics_hand_computed():
    # threshold 0.5 -> pred [0,0,0,1,1,0]; gold [0,0,1,1,1,0]: TN=3 FP=0 FN=1 TP=2
    m = classification_metrics(_binary_probs(P_TOX), GOLD, TOXICITY_LABELS)
    assert m["threshold"] == 0.5 and m["positive"] == "toxic"
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(0.8)
    # non-toxic: P=3/4 R=1 F1=6/7
    assert m["per_class"]["non-toxic"]["f1"] == pytest.approx(6 / 7)
    assert m["macro_f1"] == pytest.approx((0.8 + 6 / 7) / 2)
    assert m["confusion_matrix"] == {"labels": ["non-toxic", "toxic"], "matrix": [[3, 0], [1, 2]]}
    assert m["support"] == {"non-toxic": 3, "toxic": 3}
    # ROC AUC: of the 9 (pos, neg) pairs only (0.35 vs 0.4) is mis-ordered -> 8/9
    assert m["roc_auc"] == pytest.approx(8 / 9)
    # AP: ranks 0.8(+) 0.7(+) 0.4(-) 0.35(+) -> 1/3*1 + 1/3*1 + 1/3*3/4 = 11/12
    assert m["pr_auc"] == pytest.approx(11 / 12)
    json.dumps(m)  # plain Python types only
    assert type(m["accuracy"]) is float and type(m["confusion_matrix"]["matrix"][0][0]) is int


def test_binary_metrics_threshold_and_positive():
    # threshold 0.3 -> pred [0,1,1,1,1,0]: TN=2 FP=1 FN=0 TP=3
    m = classification_metrics(_binary_probs(P_TOX), GOLD, TOXICITY_LABELS, threshold=0.3)
    assert m["confusion_matrix"]["matrix"] == [[2, 1], [0, 3]]
    assert m["precision"] == pytest.approx(3 / 4) and m["recall"] == 1.0 and m["threshold"] == 0.3
    # positive = "non-toxic": predict non-toxic iff p(non-toxic) >= 0.5 -> same predictions as above at 0.5
    m2 = classification_metrics(_binary_probs(P_TOX), GOLD, TOXICITY_LABELS, positive="non-toxic")
    assert m2["positive"] == "non-toxic"
    assert m2["precision"] == pytest.approx(3 / 4) and m2["recall"] == pytest.approx(1.0)
    assert m2["roc_auc"] == pytest.approx(8 / 9)
    with pytest.raises(ValueError, match="'spam'"):
        classification_metrics(_binary_probs(P_TOX), GOLD, TOXICITY_LABELS, positive="spam")


def test_binary_metrics_single_class_gold_does_not_crash():
    m = classification_metrics(_binary_probs(np.array([0.2, 0.7])), np.array([0, 0]), TOXICITY_LABELS)
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert m["accuracy"] == 0.5 and m["f1"] == 0.0
    assert m["confusion_matrix"]["matrix"] == [[1, 1], [0, 0]]
    m = classification_metrics(_binary_probs(np.array([0.2, 0.7])), np.array([1, 1]), TOXICITY_LABELS)
    assert m["roc_auc"] is None and m["pr_auc"] == pytest.approx(1.0)
    json.dumps(m)


def test_multiclass_metrics_finance_sentiment():
    names = ["negative", "neutral", "positive"]
    gold = np.array([0, 1, 2, 2, 1, 0])
    # argmax predictions: [0, 1, 2, 1, 1, 2]
    probs = np.array([
        [0.7, 0.2, 0.1],
        [0.1, 0.8, 0.1],
        [0.1, 0.3, 0.6],
        [0.2, 0.5, 0.3],
        [0.3, 0.4, 0.3],
        [0.3, 0.3, 0.4],
    ])
    m = classification_metrics(probs, gold, names)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == {"labels": names, "matrix": [[1, 0, 1], [0, 2, 0], [0, 1, 1]]}
    pc = m["per_class"]
    assert (pc["negative"]["precision"], pc["negative"]["recall"], pc["negative"]["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert (pc["neutral"]["precision"], pc["neutral"]["recall"], pc["neutral"]["f1"]) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (pc["positive"]["precision"], pc["positive"]["recall"], pc["positive"]["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.5) / 3)
    assert m["weighted_f1"] == pytest.approx((2 / 3 + 0.8 + 0.5) / 3)  # equal supports
    assert m["support"] == {"negative": 2, "neutral": 2, "positive": 2}
    assert "roc_auc" not in m and "threshold" not in m
    json.dumps(m)


def test_multiclass_weighted_differs_with_unequal_support():
    names = ["negative", "neutral", "positive"]
    gold = np.array([1, 1, 1, 0])
    probs = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=float)
    m = classification_metrics(probs, gold, names)
    # neutral: P=3/4 R=1 F1=6/7 ; others 0 (positive never occurs and is never predicted)
    assert m["macro_f1"] == pytest.approx((6 / 7) / 3)
    assert m["weighted_f1"] == pytest.approx(6 / 7 * 3 / 4)
    assert m["per_class"]["positive"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_metrics_input_errors():
    names = ["negative", "neutral", "positive"]
    probs = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(probs, np.array([0, 1]), TOXICITY_LABELS)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        classification_metrics(probs, np.array([0, 3]), names)
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(probs, np.array([0, 1, 2]), names)
    with pytest.raises(ValueError, match="binary"):
        classification_metrics(probs, np.array([0, 1]), names, threshold=0.5)
    with pytest.raises(ValueError, match="integer"):
        classification_metrics(probs, np.array([0.5, 1.0]), names)
    # float gold holding integral values is accepted
    assert classification_metrics(probs, np.array([0.0, 1.0]), names)["n"] == 2


def test_multilabel_metrics():
    names = ["toxic", "insult"]
    gold = np.array([[1, 1], [1, 0], [0, 0], [0, 0]])
    probs = np.array([[0.9, 0.6], [0.8, 0.7], [0.2, 0.1], [0.6, 0.2]])
    m = multilabel_metrics(probs, gold, names)
    # pred @0.5: [[1,1],[1,1],[0,0],[1,0]]; toxic: TP2 FP1 -> P 2/3 R 1 F1 .8 ; insult: TP1 FP1 -> P .5 R 1 F1 2/3
    assert m["per_label"]["toxic"]["f1"] == pytest.approx(0.8)
    assert m["per_label"]["insult"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 2))  # TP3 FP2 FN0
    assert m["subset_accuracy"] == pytest.approx(2 / 4)
    assert m["per_label"]["toxic"]["roc_auc"] == pytest.approx(1.0)
    # toxic@0.7 -> [1,1,0,0] (perfect); insult@0.55 -> [1,1,0,0] vs [1,0,0,0]: only row 2 wrong
    m2 = multilabel_metrics(probs, gold, names, thresholds=[0.7, 0.55])
    assert m2["per_label"]["toxic"]["f1"] == pytest.approx(1.0) and m2["subset_accuracy"] == pytest.approx(3 / 4)
    json.dumps(m2)


def test_tuned_threshold_keeps_a_margin_when_classes_separate():
    # perfect separation with saturated scores: the threshold moves off the boundary score (0.999)
    p = np.array([0.999, 0.9995, 0.9999, 0.01, 0.05, 0.2])
    r = tune_threshold(p, np.array([1, 1, 1, 0, 0, 0]))
    assert r["boundary_score"] == pytest.approx(0.999) and r["f1"] == 1.0
    assert 0.2 < r["threshold"] < 0.99  # logit midpoint of 0.2 and 0.999: about 0.94
