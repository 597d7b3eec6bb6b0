import numpy as np
import pytest

from tagsmith.config import ConfigError, load_config
from tagsmith.windows import merge_windows, window_spans


def test_window_spans_cover_with_overlap():
    spans = window_spans(300, 126, 32)
    assert spans[0] == (0, 126) and spans[-1][1] == 300
    for (a, b), (c, d) in zip(spans, spans[1:]):
        assert c == b - 32
    assert window_spans(10, 126, 32) == [(0, 10)]


def test_merge_takes_the_most_central_window():
    spans = window_spans(20, 10, 4)
    values = [np.full((b - a, 1), k, dtype=np.float32) for k, (a, b) in enumerate(spans)]
    merged = merge_windows(20, spans, values)[:, 0]
    # window 0 covers 0..9, window 1 covers 6..15: position 7 is 2 from window 1's edge, 2 from window 0's
    assert merged[0] == 0 and merged[9] == 1 and merged[19] == 2


def test_config_unknown_key_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntask: segmentation\ntrainer: {learning_rate: 0.1}\n")
    config = load_config(path, ["trainer.learning_rate=3e-5", "model.head.type=cnn"])
    assert config.trainer["learning_rate"] == pytest.approx(3e-5)
    assert config.model.head.type == "cnn"
    path.write_text("name: x\ntask: segmentation\nmodle: {}\n")
    with pytest.raises(ConfigError, match="unknown key\\(s\\) modle"):
        load_config(path)
    with pytest.raises(ConfigError, match="must be 'linear' or 'cnn'"):
        load_config(values={"name": "x", "task": "segmentation", "model": {"head": {"type": "rnn"}}})


def test_decision_bias_tuning_records_narrow_by_kind_then_collection(caplog):
    from training.tagging import tuning_records

    records = [{"kind": "prose", "collection": "chengyu_sources"}, {"kind": "prose", "collection": "quansongshi_authors"},
               {"kind": "verse", "collection": "songci"}, {"kind": "prose", "collection": "chengyu_sources"}]
    assert tuning_records(records, {}) == ([0, 1, 2, 3], "all")
    assert tuning_records(records, {"tune_on_kind": "prose"}) == ([0, 1, 3], "kind 'prose'")
    assert tuning_records(records, {"tune_on_kind": "prose", "tune_on_collections": ["chengyu_sources"]}) == (
        [0, 3], "collections chengyu_sources, kind 'prose'")
    assert tuning_records(records, {"tune_on_collections": "songci"}) == ([2], "collections songci")
    # nothing matches: a warning, and the next wider set
    assert tuning_records(records, {"tune_on_kind": "prose", "tune_on_collections": ["lunyu"]}) == ([0, 1, 3], "kind 'prose'")
    assert tuning_records(records, {"tune_on_kind": "essay"}) == ([0, 1, 2, 3], "all")
    assert "no validation records of collections ['lunyu']" in caplog.text and "kind 'essay'" in caplog.text
