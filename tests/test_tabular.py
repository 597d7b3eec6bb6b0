"""Readers for toxicity / classification tables (tagsmith.tabular) and the OLID recipe."""

from __future__ import annotations

import json
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")

from tagsmith.tabular import (  # noqa: E402
    JIGSAW_LABEL_COLUMNS,
    TableFormatError,
    read_civil_comments,
    read_classification,
    read_jigsaw,
    read_olid,
    read_records,
    read_table,
    sniff_format,
    unescape_csv_field,
)

REAL_OLID = Path("/work/shared/data/olid/olid-training-v1.0.tsv")

OLID_HEADER = "id\ttweet\tsubtask_a\tsubtask_b\tsubtask_c\n"
# Tweets that break a default (QUOTE_MINIMAL) reader: a lone leading quote opens a "quoted field"
# that swallows the tab, the newline and the next row up to the next quote character.
TRAP_TWEETS = [
    ("101", '"@USER lone quote at the start and never closed', "OFF"),
    ("102", 'she said "quoted" text here', "NOT"),
    ("103", '"quoted" text leads the tweet', "NOT"),
    ("104", 'trailing quote"', "OFF"),
    ("105", "NA", "NOT"),  # a literal NA tweet is text, not a missing value
    ("106", "plain tweet 😂 #MAGA URL", "OFF"),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _olid_file(tmp_path: Path, rows=TRAP_TWEETS, name="olid.tsv") -> Path:
    body = "".join(f"{i}\t{t}\t{a}\tNULL\tNULL\n" for i, t, a in rows)
    return _write(tmp_path / name, OLID_HEADER + body)


# --------------------------------------------------------------------------------------------------
# OLID


def test_olid_quoting_trap_default_pandas_merges_rows_but_read_olid_does_not(tmp_path):
    path = _olid_file(tmp_path)
    # the trap is real: pandas' default quoting merges rows and eats quote characters
    naive = pd.read_csv(path, sep="\t")
    assert len(naive) < len(TRAP_TWEETS)
    assert "\n" in naive["tweet"].iloc[0]

    recs = read_olid(path)
    assert len(recs) == len(TRAP_TWEETS)
    assert [r["text"] for r in recs] == [t for _, t, _ in TRAP_TWEETS]
    assert [r["id"] for r in recs] == [i for i, _, _ in TRAP_TWEETS]
    assert [r["label"] for r in recs] == ["toxic", "non-toxic", "non-toxic", "toxic", "non-toxic", "toxic"]
    assert set(recs[0]) == {"id", "text", "label"}


def test_olid_unescape_quotes_only_touches_fully_csv_escaped_fields(tmp_path):
    rows = [("1", '"@USER should\'ve ""taken"" it 😂"""', "OFF"), ("2", '"lone', "NOT")]
    path = _olid_file(tmp_path, rows)
    assert read_olid(path)[0]["text"] == rows[0][1]  # verbatim by default
    recs = read_olid(path, unescape_quotes=True)
    assert recs[0]["text"] == '@USER should\'ve "taken" it 😂"'
    assert recs[1]["text"] == '"lone'
    assert unescape_csv_field('"a ""b"" c"') == 'a "b" c'
    assert unescape_csv_field('"a "b" c"') == '"a "b" c"'  # inner quotes not doubled: not CSV


def test_olid_missing_column_lists_found_columns(tmp_path):
    path = _write(tmp_path / "bad.tsv", "id\ttext\tlabel\n1\thello\tOFF\n")
    with pytest.raises(TableFormatError) as ei:
        read_olid(path)
    msg = str(ei.value)
    assert "bad.tsv" in msg and "tweet" in msg and "subtask_a" in msg
    assert "['id', 'text', 'label']" in msg
    assert ei.value.missing == ["tweet", "subtask_a"]
    assert ei.value.found == ["id", "text", "label"]


def test_olid_unknown_label_names_row(tmp_path):
    path = _olid_file(tmp_path, [("1", "fine", "NOT"), ("2", "hmm", "MAYBE")])
    with pytest.raises(TableFormatError, match=r"olid\.tsv: row 2 \(id=2\).*'MAYBE'"):
        read_olid(path)


@pytest.mark.parametrize("tweet", ["", "   "])
def test_olid_empty_text_is_an_error_naming_file_and_row(tmp_path, tweet):
    path = _olid_file(tmp_path, [("1", "fine", "NOT"), ("2", "ok", "OFF"), ("3", tweet, "OFF")])
    with pytest.raises(TableFormatError) as ei:
        read_olid(path)
    assert "olid.tsv" in str(ei.value) and "row 3" in str(ei.value)
    assert ei.value.row == 3


def test_olid_real_file():
    if not REAL_OLID.is_file():
        pytest.skip(f"real OLID file not available at {REAL_OLID}")
    recs = read_olid(REAL_OLID)
    assert len(recs) == 13_240
    assert Counter(r["label"] for r in recs) == {"non-toxic": 8_840, "toxic": 4_400}
    assert all(r["text"].strip() and r["id"] for r in recs)
    # the file's quoted tweets come back verbatim; unescaping equals what a CSV reader would give
    quoted = [r for r in recs if '"' in r["text"]]
    assert len(quoted) == 1_057
    un = read_olid(REAL_OLID, unescape_quotes=True)
    naive = pd.read_csv(REAL_OLID, sep="\t", dtype=str, keep_default_na=False)
    assert [r["text"] for r in un] == naive["tweet"].tolist()


# --------------------------------------------------------------------------------------------------
# Jigsaw


def _jigsaw_csv(tmp_path: Path, rows, name="train.csv") -> Path:
    df = pd.DataFrame(rows, columns=["id", "comment_text", *JIGSAW_LABEL_COLUMNS])
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


JIGSAW_ROWS = [
    ("a1", "You are \"great\",\nreally", 0, 0, 0, 0, 0, 0),
    ("a2", "idiot", 1, 0, 0, 0, 1, 0),
    ("a3", "only obscene", 0, 0, 1, 0, 0, 0),
]


def test_jigsaw_binary_and_multilabel(tmp_path):
    path = _jigsaw_csv(tmp_path, JIGSAW_ROWS)
    recs = read_jigsaw(path)
    assert [r["label"] for r in recs] == ["non-toxic", "toxic", "toxic"]  # any column = 1 -> toxic
    assert recs[0]["text"] == 'You are "great",\nreally'  # quoted multi-line CSV cell intact
    assert [r["id"] for r in recs] == ["a1", "a2", "a3"]
    ml = read_jigsaw(path, multilabel=True)
    assert ml[1]["labels"] == {"toxic": 1, "severe_toxic": 0, "obscene": 0, "threat": 0, "insult": 1, "identity_hate": 0}
    assert "label" not in ml[1]
    assert all(isinstance(v, int) for v in ml[1]["labels"].values())


def test_jigsaw_unscored_rows(tmp_path):
    path = _jigsaw_csv(tmp_path, [*JIGSAW_ROWS, ("a4", "unscored", -1, -1, -1, -1, -1, -1)])
    with pytest.raises(TableFormatError, match=r"row 4 \(id=a4\).*-1"):
        read_jigsaw(path)
    assert len(read_jigsaw(path, drop_unscored=True)) == 3


def test_jigsaw_bad_value_and_missing_column(tmp_path):
    path = _jigsaw_csv(tmp_path, [("a1", "x", 2, 0, 0, 0, 0, 0)])
    with pytest.raises(TableFormatError, match=r"row 1.*'toxic'.*expected 0 or 1"):
        read_jigsaw(path)
    path = _write(tmp_path / "j.csv", "id,comment_text,toxic\n1,hi,0\n")
    with pytest.raises(TableFormatError) as ei:
        read_jigsaw(path)
    assert "severe_toxic" in ei.value.missing and ei.value.found == ["id", "comment_text", "toxic"]
    assert "columns found: ['id', 'comment_text', 'toxic']" in str(ei.value)


def test_jigsaw_nan_text(tmp_path):
    path = _write(tmp_path / "j.csv", "id,comment_text," + ",".join(JIGSAW_LABEL_COLUMNS) + "\n"
                  "1,ok,0,0,0,0,0,0\n2,,1,0,0,0,0,0\n")
    with pytest.raises(TableFormatError, match=r"j\.csv: row 2 \(id=2\) has no text"):
        read_jigsaw(path)


# --------------------------------------------------------------------------------------------------
# Civil Comments


def test_civil_comments_csv_and_jsonl(tmp_path):
    csv_path = _write(tmp_path / "cc.csv", 'id,text,toxicity\n1,"nice, really",0.1\n2,awful,0.5\n3,meh,0.49\n')
    assert [r["label"] for r in read_civil_comments(csv_path)] == ["non-toxic", "toxic", "non-toxic"]
    assert [r["label"] for r in read_civil_comments(csv_path, threshold=0.3)] == ["non-toxic", "toxic", "toxic"]
    assert read_civil_comments(csv_path)[0] == {"id": "1", "text": "nice, really", "label": "non-toxic"}

    jl = tmp_path / "cc.jsonl"
    jl.write_text("\n".join(json.dumps(o, ensure_ascii=False) for o in [
        {"text": "schön", "toxicity": 0.0},
        {"text": "bad", "toxicity": 0.9},
    ]) + "\n", encoding="utf-8")
    recs = read_civil_comments(jl)
    assert recs == [{"text": "schön", "label": "non-toxic"}, {"text": "bad", "label": "toxic"}]

    kaggle = _write(tmp_path / "k.csv", "id,comment_text,target\n7,hey,0.8\n")
    assert read_civil_comments(kaggle) == [{"id": "7", "text": "hey", "label": "toxic"}]


def test_civil_comments_errors(tmp_path):
    p = _write(tmp_path / "cc.csv", "id,text,toxicity\n1,ok,0.1\n2,x,\n")
    with pytest.raises(TableFormatError, match=r"row 2.*'toxicity'"):
        read_civil_comments(p)
    p = _write(tmp_path / "cc2.csv", "id,text,toxicity\n1,,0.1\n")
    with pytest.raises(TableFormatError, match=r"cc2\.csv: row 1"):
        read_civil_comments(p)
    p = _write(tmp_path / "cc3.csv", "id,body,score\n1,ok,0.1\n")
    with pytest.raises(TableFormatError, match=r"columns found: \['id', 'body', 'score'\]"):
        read_civil_comments(p)


# --------------------------------------------------------------------------------------------------
# generic tables and records


def test_read_table_numeric_labels_become_strings(tmp_path):
    p = _write(tmp_path / "t.csv", "sentence,y\nhello,0\nworld,1\n")
    assert read_table(p, "sentence", "y") == [{"text": "hello", "label": "0"}, {"text": "world", "label": "1"}]
    jl = tmp_path / "t.jsonl"
    jl.write_text('{"id": 5, "sentence": "a", "y": 1}\n\n{"id": 6, "sentence": "b", "y": 0.0}\n'
                  '{"id": 7, "sentence": "c", "y": "positive"}\n', encoding="utf-8")
    assert read_table(jl, "sentence", "y") == [
        {"id": "5", "text": "a", "label": "1"},
        {"id": "6", "text": "b", "label": "0"},
        {"id": "7", "text": "c", "label": "positive"},
    ]


def test_read_table_tsv_keeps_quotes_and_sep_inference(tmp_path):
    p = _write(tmp_path / "t.tsv", 'text\tlabel\n"lone quote\tneg\n"quoted" text\tpos\nNA\tneg\n')
    recs = read_table(p, "text", "label")
    assert [r["text"] for r in recs] == ['"lone quote', '"quoted" text', "NA"]
    assert [r["label"] for r in recs] == ["neg", "pos", "neg"]
    odd = _write(tmp_path / "t.txt", "text|label\na|b\n")
    with pytest.raises(TableFormatError, match="cannot infer the separator"):
        read_table(odd, "text", "label")
    assert read_table(odd, "text", "label", sep="|") == [{"text": "a", "label": "b"}]


def test_read_table_errors(tmp_path):
    p = _write(tmp_path / "t.csv", "sentence,y\nhello,0\n")
    with pytest.raises(TableFormatError) as ei:
        read_table(p, "text", "label")
    assert ei.value.missing == ["text", "label"] and ei.value.found == ["sentence", "y"]
    assert "t.csv" in str(ei.value)
    p = _write(tmp_path / "n.csv", "text,label\nhello,0\n,1\n")
    with pytest.raises(TableFormatError, match=r"n\.csv: row 2 has no text"):
        read_table(p, "text", "label")
    p = _write(tmp_path / "l.csv", "text,label\nhello,\n")
    with pytest.raises(TableFormatError, match=r"row 1 has no label"):
        read_table(p, "text", "label")
    jl = _write(tmp_path / "n.jsonl", '{"text": "a", "label": 1}\n{"text": null, "label": 0}\n')
    with pytest.raises(TableFormatError, match=r"n\.jsonl: row 2"):
        read_table(jl, "text", "label")


def test_read_records(tmp_path):
    jl = _write(tmp_path / "r.jsonl", "\n".join(json.dumps(o) for o in [
        {"id": 1, "text": "a", "label": "toxic", "extra": 1},
        {"text": "b", "labels": {"toxic": 1, "insult": 0}},
        {"text": "c", "label": 0},
    ]) + "\n")
    assert read_records(jl) == [
        {"id": "1", "text": "a", "label": "toxic"},
        {"text": "b", "labels": {"toxic": 1, "insult": 0}},
        {"text": "c", "label": "0"},
    ]
    arr = _write(tmp_path / "r.json", json.dumps([{"text": "x", "label": "y"}]))
    assert read_records(arr) == [{"text": "x", "label": "y"}]
    for bad, pat in [
        ({"label": "x"}, "no 'text'"),
        ({"text": "x"}, "exactly one of"),
        ({"text": "x", "label": "a", "labels": {"a": 1}}, "exactly one of"),
        ({"text": "x", "labels": {"a": 2}}, "expected 0 or 1"),
        ({"text": " ", "label": "a"}, "empty text"),
    ]:
        p = _write(tmp_path / "bad.jsonl", json.dumps({"text": "ok", "label": "a"}) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(TableFormatError, match=pat):
            read_records(p)


def test_read_classification_dispatch(tmp_path):
    olid = _olid_file(tmp_path)
    jig = _jigsaw_csv(tmp_path, JIGSAW_ROWS)
    cc = _write(tmp_path / "cc.csv", "text,toxicity\nx,0.9\n")
    tab = _write(tmp_path / "tab.csv", "text,label\nx,1\n")
    rec = _write(tmp_path / "rec.jsonl", '{"text": "x", "labels": {"toxic": 1}}\n')
    assert [sniff_format(p) for p in (olid, jig, cc, tab, rec)] == ["olid", "jigsaw", "civil_comments", "table", "records"]
    assert len(read_classification(olid)) == len(TRAP_TWEETS)
    assert read_classification(jig, multilabel=True)[1]["labels"]["insult"] == 1
    assert read_classification(cc, threshold=0.95) == [{"text": "x", "label": "non-toxic"}]
    assert read_classification(tab) == [{"text": "x", "label": "1"}]
    assert read_classification(rec) == [{"text": "x", "labels": {"toxic": 1}}]
    other = _write(tmp_path / "o.csv", "body,y\nx,1\n")
    assert read_classification(other, text_column="body", label_column="y") == [{"text": "x", "label": "1"}]
    with pytest.raises(TableFormatError, match=r"cannot tell the format.*\['body', 'y'\]"):
        read_classification(other)
    with pytest.raises(ValueError, match="unknown format"):
        read_classification(other, format="excel")
    with pytest.raises(FileNotFoundError):
        read_classification(tmp_path / "nope.csv")


# --------------------------------------------------------------------------------------------------
# OLID recipe


def _synthetic_olid(tmp_path: Path, n_off=20, n_not=40) -> Path:
    rows = [(str(i), f"offensive tweet {i}", "OFF") for i in range(n_off)]
    rows += [(str(1000 + i), f"normal tweet {i} \"q", "NOT") for i in range(n_not)]
    # exact duplicate texts: likely to land in different splits
    rows += [(str(5000 + i), "offensive tweet 0", "OFF") for i in range(5)]
    rows += [(str(6000 + i), "normal tweet 1 \"q", "NOT") for i in range(5)]
    return _olid_file(tmp_path, rows, name="olid-training-v1.0.tsv")


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_fetch_olid_local_splits_dedup_and_cache(tmp_path, monkeypatch):
    from tagsmith.recipes import olid as recipe

    src = _synthetic_olid(tmp_path)
    out = tmp_path / "out"
    meta = recipe.fetch_olid(out, local_copy=tmp_path, validation_fraction=0.2, test_fraction=0.2, seed=1)
    splits = {s: _read_jsonl(out / f"{s}.jsonl") for s in recipe.SPLITS}
    # no exact duplicate crosses a split boundary, and every removal is accounted for
    texts = [{r["text"] for r in splits[s]} for s in recipe.SPLITS]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert meta["records_read"] == 70
    assert sum(len(v) for v in splits.values()) + meta["duplicates_removed"]["total"] == 70
    assert meta["duplicates_removed"]["train"] == 0
    for s in recipe.SPLITS:
        c = Counter(r["label"] for r in splits[s])
        assert meta["counts"][s] == {"non-toxic": c["non-toxic"], "toxic": c["toxic"]}
        assert meta["sizes"][s] == len(splits[s])
        assert all(set(r) == {"id", "text", "label"} for r in splits[s])
    assert meta["seed"] == 1 and meta["source"] == f"local:{src.resolve()}"
    on_disk = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert on_disk == meta
    assert '"q' in (out / "train.jsonl").read_text(encoding="utf-8")  # ensure_ascii=False, raw text
    assert not list(out.glob(".*.tmp"))

    # cache: same parameters -> nothing is read or written
    monkeypatch.setattr(recipe, "read_olid", lambda *a, **k: pytest.fail("cache not used"))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = recipe.fetch_olid(out, local_copy=src, validation_fraction=0.2, test_fraction=0.2, seed=1)
    assert again == meta
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    monkeypatch.undo()

    # different seed -> rebuilt
    other = recipe.fetch_olid(out, local_copy=src, validation_fraction=0.2, test_fraction=0.2, seed=2)
    assert other["seed"] == 2 and other["params"] != meta["params"]


def test_fetch_olid_stratified_default_fractions(tmp_path):
    from tagsmith.recipes.olid import fetch_olid

    src = _olid_file(tmp_path, [(str(i), f"t{i}", "OFF" if i % 3 == 0 else "NOT") for i in range(300)])
    meta = fetch_olid(tmp_path / "o", local_copy=src)
    assert meta["sizes"] == {"train": 240, "validation": 30, "test": 30}
    assert meta["counts"]["test"] == {"non-toxic": 20, "toxic": 10}
    assert meta["counts"]["validation"] == {"non-toxic": 20, "toxic": 10}
    assert meta["duplicates_removed"]["total"] == 0


def test_fetch_olid_bad_inputs(tmp_path):
    from tagsmith.recipes.olid import fetch_olid

    with pytest.raises(RuntimeError, match="does not contain olid-training-v1.0.tsv"):
        fetch_olid(tmp_path / "o", local_copy=tmp_path)
    src = _synthetic_olid(tmp_path)
    with pytest.raises(ValueError, match="must be < 1"):
        fetch_olid(tmp_path / "o", local_copy=src, validation_fraction=0.5, test_fraction=0.5)
    with pytest.raises(RuntimeError, match="cannot make stratified"):
        fetch_olid(tmp_path / "o", local_copy=src, validation_fraction=0.01, test_fraction=0.01)
    # validation_fraction=0: no validation records, file still written
    meta = fetch_olid(tmp_path / "o0", local_copy=src, validation_fraction=0.0, test_fraction=0.2)
    assert meta["sizes"]["validation"] == 0 and (tmp_path / "o0" / "validation.jsonl").read_text() == ""


def test_fetch_olid_hub_unreachable_message(tmp_path, monkeypatch):
    from tagsmith.recipes.olid import fetch_olid

    fake = types.ModuleType("datasets")

    def load_dataset(*a, **k):
        raise ConnectionError("Couldn't reach 'cardiffnlp/tweet_eval' on the Hub")

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(RuntimeError) as ei:
        fetch_olid(tmp_path / "o")
    msg = str(ei.value)
    assert "unreachable" in msg and "--local PATH" in msg and "ConnectionError" in msg
    assert not (tmp_path / "o" / "meta.json").exists()


def test_fetch_olid_hub_success_with_fake_datasets(tmp_path, monkeypatch):
    from tagsmith.recipes.olid import fetch_olid

    data = {
        "train": [{"text": "a", "label": 0}, {"text": "b", "label": 1}],
        "validation": [{"text": "c", "label": 1}],
        "test": [{"text": "d", "label": 0}],
    }
    calls = []
    fake = types.ModuleType("datasets")

    def load_dataset(name, config):
        calls.append((name, config))
        return data

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    meta = fetch_olid(tmp_path / "o")
    assert calls == [("cardiffnlp/tweet_eval", "offensive")]
    assert meta["counts"]["train"] == {"non-toxic": 1, "toxic": 1}
    assert _read_jsonl(tmp_path / "o" / "validation.jsonl") == [{"id": "validation-0", "text": "c", "label": "toxic"}]
    fetch_olid(tmp_path / "o")  # cached
    assert len(calls) == 1


def test_fetch_olid_real_file(tmp_path):
    if not REAL_OLID.is_file():
        pytest.skip(f"real OLID file not available at {REAL_OLID}")
    from tagsmith.recipes.olid import fetch_olid

    meta = fetch_olid(tmp_path / "olid", local_copy=REAL_OLID.parent)
    assert meta["records_read"] == 13_240
    total = {lab: sum(meta["counts"][s][lab] for s in meta["counts"]) for lab in ("non-toxic", "toxic")}
    removed = meta["duplicates_removed"]["total"]
    assert sum(total.values()) + removed == 13_240
    assert total["non-toxic"] <= 8_840 and total["toxic"] <= 4_400
    assert abs(meta["sizes"]["test"] - 1_324) <= removed
