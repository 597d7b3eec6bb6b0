import json

import pytest

from tagsmith.records import DataValidationError, read_record_file, validate_file, validate_splits, write_jsonl
from tagsmith.tasks import SEGMENTATION


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_and_json_array_read_the_same(tmp_path):
    records = [{"text": "天地", "labels": ["B", "E"]}, {"text": "玄", "labels": ["S"]}]
    a = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in records))
    b = write(tmp_path / "b.json", json.dumps(records, ensure_ascii=False))
    assert read_record_file(a).records == read_record_file(b).records == records


def test_validator_names_file_record_and_reason_for_every_bad_record(tmp_path):
    lines = [
        '{"text": "天地", "labels": ["B", "E"]}',
        '{"text": "天地", "labels": ["B"]}',
        '{"text": "天地", "labels": ["B", "Q"]}',
        '{"text": "", "labels": []}',
        '{"text": "天地", "labels": [',
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"text": "\xff\xfe", "labels": ["S"]}\n')
    problems = validate_file(path, SEGMENTATION).problems
    rendered = [str(p) for p in problems]
    assert len(rendered) == 5
    assert rendered[0].startswith(f"{path}:2: length mismatch")
    assert rendered[1].startswith(f"{path}:3: unknown label(s) 'Q'")
    assert rendered[2] == f"{path}:4: empty text"
    assert rendered[3].startswith(f"{path}:5: invalid JSON")
    assert rendered[4].startswith(f"{path}:6: invalid UTF-8")


def test_duplicate_across_splits_is_reported(tmp_path):
    train = tmp_path / "train.jsonl"
    write_jsonl(train, [{"text": "天地", "labels": ["B", "E"]}])
    test = tmp_path / "test.jsonl"
    write_jsonl(test, [{"text": "天地", "labels": ["B", "E"]}, {"text": "玄黃", "labels": ["B", "E"]}])
    with pytest.raises(DataValidationError) as caught:
        validate_splits({"train": train, "test": test}, SEGMENTATION)
    assert str(caught.value) == f"{test}:1: duplicate text across splits: also train record 1"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such record file"):
        read_record_file(tmp_path / "nope.jsonl")
