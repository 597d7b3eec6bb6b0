import pytest

from tagsmith import marks
from tagsmith.tasks import PUNCTUATION, SEGMENTATION, get_task, parse_punctuated, segmentation_sentences


def test_design_example_segmentation():
    text, labels = SEGMENTATION.labels_from_punctuated("天地玄黃，宇宙洪荒。")
    assert text == "天地玄黃宇宙洪荒"
    assert labels == list("BMMEBMME")


def test_single_character_sentence_and_text_end_without_mark():
    text, labels = SEGMENTATION.labels_from_punctuated("曰：善。吾未之聞")
    assert text == "曰善吾未之聞"
    assert labels == ["S", "S", "B", "M", "M", "E"]


@pytest.mark.parametrize("mark", marks.PUNCTUATION_MARKS)
def test_punctuation_round_trip_every_mark(mark):
    source = f"學而時習之{mark}不亦說乎{mark}"
    text, labels = PUNCTUATION.labels_from_punctuated(source)
    assert text == "學而時習之不亦說乎"
    assert labels.count(mark) == 2
    assert PUNCTUATION.render(text, labels) == source


def test_segmentation_round_trip_via_sentences():
    text, labels = SEGMENTATION.labels_from_punctuated("子曰：學而時習之，不亦說乎？")
    spans = segmentation_sentences(text, labels)
    assert [text[a:b] for a, b in spans] == ["子曰", "學而時習之", "不亦說乎"]
    assert SEGMENTATION.render(text, labels) == "子曰 | 學而時習之 | 不亦說乎"


@pytest.mark.parametrize(
    "raw,expected_text,expected_labels",
    [
        ("學而時習之,不亦說乎?", "學而時習之不亦說乎", list("OOOO，OOO？".replace("O", "O"))),
        ("「學而時習之，不亦說乎？」", "學而時習之不亦說乎", None),
        ("《論語》曰：學 而\t時習之。", "論語曰學而時習之", None),
        ("學而……時習之——不亦說乎", "學而時習之不亦說乎", None),
    ],
)
def test_parser_normalises_half_width_quotes_whitespace_and_variants(raw, expected_text, expected_labels):
    text, labels = PUNCTUATION.labels_from_punctuated(raw)
    assert text == expected_text
    if expected_labels is not None:
        assert labels == ["O", "O", "O", "O", "，", "O", "O", "O", "？"]


def test_parser_counts_what_it_drops():
    parsed = parse_punctuated("「學而」，。 習")
    assert parsed.chars == "學而習"
    assert parsed.following == [None, "，", None]
    assert parsed.dropped == {"quote or book-title mark": 2, "repeated mark": 1, "whitespace": 1}


def test_ellipsis_and_dash_map_to_marks():
    text, labels = PUNCTUATION.labels_from_punctuated("嗟乎…吾——")
    assert labels == ["O", "。", "，"]


def test_validate_record_names_each_problem():
    assert SEGMENTATION.validate_record({"text": "天地", "labels": ["B", "E"]}) == []
    assert "length mismatch" in SEGMENTATION.validate_record({"text": "天地", "labels": ["B"]})[0]
    assert "unknown label(s) 'X'" in SEGMENTATION.validate_record({"text": "天地", "labels": ["B", "X"]})[0]
    assert SEGMENTATION.validate_record({"text": "  ", "labels": []}) == ["empty text"]
    assert "missing field 'text'" in SEGMENTATION.validate_record({"labels": []})[0]
    assert "must be a string" in SEGMENTATION.validate_record({"text": 3, "labels": []})[0]
    assert "must be a JSON object" in SEGMENTATION.validate_record(["天"])[0]
    assert "must be a list" in PUNCTUATION.validate_record({"text": "天", "labels": "O"})[0]


def test_unknown_task_lists_known():
    with pytest.raises(KeyError, match="known tasks"):
        get_task("ner")
