from tagsmith.convert import ConversionReport, convert_lines, punctuated_to_record, to_script
from tagsmith.split import split_by_document


def test_to_script_both_ways_keeps_length():
    assert to_script("天地玄黃學而時習之", "simplified") == "天地玄黄学而时习之"
    assert to_script("学而时习之", "traditional") == "學而時習之"
    assert to_script("學", "keep") == "學"


def test_convert_records_and_report():
    report = ConversionReport()
    lines = ["子曰：「學而時習之，不亦說乎？」", "", "「」", "有朋自遠方來, 不亦樂乎!"]
    records = list(convert_lines(lines, "punctuation", "simplified", report, doc="lunyu/1"))
    assert [r["text"] for r in records] == ["子曰学而时习之不亦说乎", "有朋自远方来不亦乐乎"]
    assert records[0]["labels"][1] == "："
    assert records[1]["labels"][5] == "，" and records[1]["labels"][-1] == "！"
    assert all(r["doc"] == "lunyu/1" for r in records)
    assert report.records == 2 and report.skipped_empty == 1
    assert report.dropped["quote or book-title mark"] == 4
    assert report.marks["，"] == 2


def test_segmentation_record():
    assert punctuated_to_record("天地玄黃，宇宙洪荒。", "segmentation") == {
        "text": "天地玄黃宇宙洪荒", "labels": list("BMMEBMME")}


def test_split_by_document_no_leakage_and_whole_documents():
    records = []
    for doc in range(50):
        for para in range(3):
            records.append({"text": f"文{doc}段{para}", "labels": [], "doc": f"d{doc}"})
    records.append({"text": "文0段0", "labels": [], "doc": "d49"})  # the same text in another document
    splits, report = split_by_document(records, (0.8, 0.1, 0.1), seed=1)
    texts = {name: {r["text"] for r in rs} for name, rs in splits.items()}
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    docs = {name: {r["doc"] for r in rs} for name, rs in splits.items()}
    assert not docs["train"] & docs["validation"] and not docs["train"] & docs["test"]
    assert sum(report["records"].values()) + sum(report["duplicates_removed"].values()) == len(records)
    assert 0.7 < report["characters"]["train"] / sum(report["characters"].values()) < 0.9
    again, _ = split_by_document(records, (0.8, 0.1, 0.1), seed=1)
    assert again == splits
