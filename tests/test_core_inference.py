"""The torch-free pieces every inference path shares (tagsmith.windows, .decision, .manifest, .files)."""

import json

import numpy as np
import pytest

from tagsmith.decision import biased, decide_classes, decide_label, decode, softmax
from tagsmith.files import git_commit, write_json_atomic
from tagsmith.manifest import ManifestError, is_package, previous_card, read_manifest, write_manifest
from tagsmith.windows import first_token_logits, first_token_positions, merge_record_windows


def test_first_token_logits_and_merge():
    positions = first_token_positions([None, 0, 0, 1, None, 2, None], 4)
    assert positions == [1, 3, 5, -1]
    logits = np.arange(14, dtype=np.float32).reshape(7, 2)
    values = first_token_logits(positions, logits)
    assert values.tolist() == [[2, 3], [6, 7], [10, 11], [0, 0]]
    merged = merge_record_windows([(0, 0, 4), (1, 0, 1)], [4, 1], [values, values[:1]])
    assert [m.shape for m in merged] == [(4, 2), (1, 2)]


def test_decisions():
    logits = np.array([[1.0, 0.5], [0.0, 2.0]])
    assert decode(logits, ["O", "。"]) == ["O", "。"]
    assert decode(logits, ["O", "。"], [1], 1.0) == ["。", "。"]
    assert biased(logits, [1], 1.0)[0, 1] == pytest.approx(1.5)
    assert softmax(logits).sum(-1) == pytest.approx([1.0, 1.0])
    probs = np.array([[0.7, 0.3], [0.4, 0.6]])
    assert decide_classes(probs, ["ok", "toxic"], 0.35, "toxic").tolist() == [0, 1]
    assert decide_label(probs[0], ["ok", "toxic"], 0.25, "toxic") == "toxic"
    assert decide_label(probs[0], ["ok", "toxic"]) == "ok"


def test_manifest_round_trip(tmp_path):
    with pytest.raises(ManifestError, match="no tagsmith.json"):
        read_manifest(tmp_path)
    write_manifest(tmp_path, {"format": "tagsmith-model-package", "card": {"file": "README.md"}})
    assert read_manifest(tmp_path)["card"] == previous_card(tmp_path) == {"file": "README.md"}
    assert is_package(tmp_path) and not (tmp_path / "tagsmith.json.tmp").exists()
    (tmp_path / "tagsmith.json").write_text("[1]", encoding="utf-8")
    with pytest.raises(ManifestError, match="expected a JSON object"):
        read_manifest(tmp_path)
    (tmp_path / "tagsmith.json").write_text("{", encoding="utf-8")
    with pytest.raises(ManifestError, match="corrupt manifest"):
        read_manifest(tmp_path)
    write_json_atomic(tmp_path / "x.json", {"a": "é"})
    assert json.loads((tmp_path / "x.json").read_text(encoding="utf-8")) == {"a": "é"}
    assert git_commit() is None or len(git_commit()) == 40
