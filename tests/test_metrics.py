import pytest

from tagsmith.metrics import punctuation_metrics, segmentation_metrics


def test_segmentation_boundaries_hand_computed():
    gold = [list("BMEBMEBE")]  # boundaries after 2, 5 (7 = text end, excluded)
    pred = [list("BEBMMEBE")]  # boundaries after 1, 5
    m = segmentation_metrics(gold, pred)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    assert m["label_accuracy"] == pytest.approx(5 / 8)


def test_segmentation_never_predicting_scores_zero_not_credit_for_text_end():
    m = segmentation_metrics([list("BEBE")], [list("BMME")])
    assert m["f1"] == 0.0 and m["recall"] == 0.0


def test_punctuation_per_mark_and_micro():
    gold = [["O", "，", "O", "。", "O", "？"]]
    pred = [["O", "，", "，", "。", "O", "。"]]
    m = punctuation_metrics(gold, pred)
    # tp: ，1 。1; fp: ，1 (pos 2) 。1 (pos 5); fn: ？1
    assert m["micro_precision"] == pytest.approx(2 / 4)
    assert m["micro_recall"] == pytest.approx(2 / 3)
    assert m["micro_f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert m["per_mark"]["，"]["precision"] == pytest.approx(0.5)
    assert m["per_mark"]["？"]["recall"] == 0.0
    assert m["any_mark_f1"] == pytest.approx(2 * 0.75 * 1.0 / 1.75)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="sequence 0"):
        punctuation_metrics([["O"]], [["O", "O"]])
