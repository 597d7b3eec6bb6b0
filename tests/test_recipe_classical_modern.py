"""The classical-modern recipe (a NiuTrans/Classical-Modern clone -> tagging records) and the compact form that
training holds them in."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tagsmith.compact import load_tagging_splits
from tagsmith.records import DataValidationError, validate_splits
from tagsmith.recipes.classical_modern import RecipeError, build_classical_modern
from tagsmith.tasks import get_task

from conftest import ROOT, shared_data

BOOKS = {
    # book/chapter: lines (a heading, prose, a line with a bad byte, a long unmarked line)
    "史记/本纪/五帝本纪": ["五帝本纪", "黄帝者，少典之子，姓公孙，名曰轩辕。", "生而神灵，弱而能言，幼而徇齐，长而敦敏，成而聪明。"],
    "史记/本纪/夏本纪": ["夏禹，名曰文命。禹之父曰鲧，鲧之父曰帝颛顼。", "禹乃遂与益、后稷奉帝命。"],
    "论语/学而篇": ["子曰： 学而时习之，不亦说乎？有朋自远方来，不亦乐乎？", "曾子曰： 吾日三省吾身。"],
    "论语/为政篇": ["子曰： 为政以德，譬如北辰，居其所而众星共之。", "子曰： 温故而知新，可以为师矣。"],
    "孟子/梁惠王上": ["孟子见梁惠王。王曰： 叟！不远千里而来，亦将有以利吾国乎？"],
    "夷坚志/甲志/卷一": ["孙九鼎" + "甲乙丙丁戊己庚辛壬癸" * 8, "此段有句读，故可用。"],
    "水浒传/第一回": ["话说大宋仁宗天子在位，嘉祐三年三月三日五更三点。"],
    "千字文/全文": ["天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。"],
}


def make_clone(root: Path) -> Path:
    for chapter, lines in BOOKS.items():
        folder = root / "古文原文" / chapter
        folder.mkdir(parents=True)
        data = "\n".join(lines).encode("utf-8") + "\n".encode()
        if chapter == "孟子/梁惠王上":
            data += b"\xff\xfe broken line\n" + "坏字\ufffd在此。\n".encode("utf-8")
        (folder / "text.txt").write_bytes(data)
    return root


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_recipe_writes_records_by_document_and_counts_every_skip(tmp_path: Path) -> None:
    clone = make_clone(tmp_path / "clone")
    meta = build_classical_modern(tmp_path / "out", clone, tmp_path / "cache", fractions=(0.6, 0.2, 0.2), progress=False)
    assert meta["books"] == 6 and meta["text_files"] == 8
    assert meta["lines_skipped"] == {"heading": 1, "long unmarked line": 1, "invalid UTF-8": 1, "U+FFFD": 1}
    records = {split: read(tmp_path / "out" / "punctuation" / f"{split}.jsonl") for split in ("train", "validation", "test")}
    everything = [r for rs in records.values() for r in rs]
    assert len(everything) == meta["split"]["records"]["train"] + meta["split"]["records"]["validation"] + \
        meta["split"]["records"]["test"] == 12
    docs = {split: {r["doc"] for r in rs} for split, rs in records.items()}
    assert not (docs["train"] & docs["validation"]) and not (docs["train"] & docs["test"]) and not (docs["validation"] & docs["test"])
    by_text = {r["text"]: r for r in everything}
    lunyu = by_text["子曰学而时习之不亦说乎有朋自远方来不亦乐乎"]
    assert lunyu["doc"] == "论语/学而篇" and lunyu["collection"] == "论语" and lunyu["kind"] == "prose"
    assert [m for m in lunyu["labels"] if m != "O"] == ["：", "，", "？", "，", "？"]
    assert by_text["话说大宋仁宗天子在位嘉祐三年三月三日五更三点"]["kind"] == "vernacular"
    assert by_text["天地玄黄宇宙洪荒日月盈昃辰宿列张"]["kind"] == "verse"
    segmentation = {r["text"]: r for split in records for r in read(tmp_path / "out" / "segmentation" / f"{split}.jsonl")}
    assert segmentation["禹乃遂与益后稷奉帝命"]["labels"] == ["B", "M", "M", "M", "E", "B", "M", "M", "M", "E"]
    # the files pass the same validation training runs
    for task in ("segmentation", "punctuation"):
        folder = tmp_path / "out" / task
        validate_splits({s: folder / f"{s}.jsonl" for s in ("train", "validation", "test")}, get_task(task))
    again = build_classical_modern(tmp_path / "out", clone, tmp_path / "cache", fractions=(0.6, 0.2, 0.2), progress=False)
    assert again == json.loads((tmp_path / "out" / "meta.json").read_text(encoding="utf-8"))


def test_recipe_reads_the_archive_and_says_where_to_get_the_corpus(tmp_path: Path) -> None:
    clone = make_clone(tmp_path / "clone")
    archive = tmp_path / "cm.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(clone / "古文原文", arcname="古文原文")
    meta = build_classical_modern(tmp_path / "out", archive, tmp_path / "cache", progress=False)
    assert meta["books"] == 6
    with pytest.raises(RecipeError, match="clone https://github.com/NiuTrans/Classical-Modern"):
        build_classical_modern(tmp_path / "none", None, tmp_path / "cache")
    with pytest.raises(RecipeError, match="holds no 古文原文"):
        build_classical_modern(tmp_path / "none", tmp_path / "cache", tmp_path / "cache2")
    done = subprocess.run([sys.executable, "-m", "tagsmith.cli", "data", "fetch", "classical-modern", "--out",
                           str(tmp_path / "cli")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--local PATH" in done.stdout + done.stderr


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_compact_form_holds_the_records_unchanged_and_validates_like_the_lists(tmp_path: Path) -> None:
    task = get_task("punctuation")
    train = [{"text": "子曰学而时习之", "labels": ["O", "：", "O", "O", "O", "O", "，"], "kind": "prose", "collection": "论语"},
             {"text": "天地玄黄", "labels": ["O", "O", "O", "。"]},
             {"text": "话说大宋", "labels": ["O", "O", "O", "。"], "kind": "vernacular"}]
    validation = [{"text": "温故知新", "labels": ["O", "O", "O", "。"], "kind": "prose"}]
    paths = {"train": write_jsonl(tmp_path / "train.jsonl", train),
             "validation": write_jsonl(tmp_path / "validation.jsonl", validation)}
    corpora, left_out = load_tagging_splits(paths, task, exclude_kinds=["vernacular"])
    assert corpora["train"].records() == train[:2] and corpora["validation"].records() == validation
    assert left_out == {"train": {"vernacular": 1}, "validation": {}}
    assert corpora["train"].label_counts(np.array([2, 1])).tolist() == [13, 2, 1, 2, 0, 0, 0, 0]
    # the same problems as validate_splits, every one named by file and line
    bad = write_jsonl(tmp_path / "bad.jsonl", [train[0], {"text": "天地", "labels": ["O"]},
                                               {"text": "天", "labels": ["X"]}, validation[0]])
    with pytest.raises(DataValidationError) as compact:
        load_tagging_splits({"train": bad, "validation": paths["validation"]}, task)
    with pytest.raises(DataValidationError) as lists:
        validate_splits({"train": bad, "validation": paths["validation"]}, task)
    assert str(compact.value) == str(lists.value)
    assert "bad.jsonl:2: length mismatch" in str(compact.value) and "bad.jsonl:3: unknown label" in str(compact.value)
    assert "validation.jsonl:1: duplicate text across splits: also train record 4" in str(compact.value)
    # two files read as one split (config data.train as a list)
    corpora, _ = load_tagging_splits({"train": [paths["train"], paths["validation"]]}, task)
    assert len(corpora["train"]) == 4


def test_compact_windows_equal_the_list_windows(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from training.features import CompactWindows, encode_windows
    from training.tokenizer import build_char_tokenizer

    task = get_task("punctuation")
    rng = np.random.default_rng(0)
    alphabet = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏\ue000"  # a private-use character yields no token
    records = []
    for n in (3, 40, 126, 127, 300, 1):
        text = "".join(rng.choice(list(alphabet), n))
        records.append({"text": text, "labels": [str(rng.choice(task.labels)) for _ in text]})
    path = write_jsonl(tmp_path / "train.jsonl", records)
    corpus = load_tagging_splits({"train": path}, task)[0]["train"]
    tokenizer = build_char_tokenizer([r["text"] for r in records], tmp_path / "tok", min_count=1)
    index = {label: i for i, label in enumerate(task.labels)}
    order = np.array([0, 1, 2, 3, 4, 5, 4])  # oversampled records repeat
    compact = CompactWindows(corpus, order, tokenizer, 32, 8)
    listed = encode_windows([records[i]["text"] for i in order], tokenizer, 32, 8,
                            [[index[l] for l in records[i]["labels"]] for i in order])
    assert len(compact) == len(listed.features) > len(order)
    assert [compact[k] for k in range(len(compact))] == listed.features
    assert compact.lengths == [len(f["input_ids"]) for f in listed.features]


def test_collection_cap_keeps_a_seeded_share_of_the_largest_books() -> None:
    pytest.importorskip("torch")
    from tagsmith.config import load_config
    from training.datasets import train_record_indices

    config = load_config(values={"name": "x", "task": "punctuation",
                                 "data": {"max_train_chars_per_collection": 100, "oversample": {"prose": 2}}})
    collections = ["big"] * 50 + ["small"] * 3
    kinds = ["prose"] * 53
    lengths = [10] * 53
    chosen = train_record_indices(config, kinds, collections, lengths)
    big = [i for i in set(chosen.tolist()) if i < 50]
    assert 10 <= len(big) <= 11 and {50, 51, 52} <= set(chosen.tolist())
    assert len(chosen) == 2 * (len(big) + 3)
    assert chosen.tolist() == train_record_indices(config, kinds, collections, lengths).tolist()  # seeded


def test_real_corpus_archive_counts(tmp_path: Path) -> None:
    """The shared copy of the corpus: 319 books, vernacular kept apart, no record lost between the report and files."""
    archive = shared_data("classical_modern", "classical_modern.tar.xz")
    if not (ROOT / "data" / "classical-modern" / "meta.json").is_file():
        pytest.skip("data/classical-modern not built here (tagsmith data fetch classical-modern --local ...): "
                    "reading the 70M characters takes minutes")
    meta = json.loads((ROOT / "data" / "classical-modern" / "meta.json").read_text(encoding="utf-8"))
    assert meta["books"] == 319 and str(archive.resolve()) == meta["source"]
    assert meta["split"]["characters_by_kind"]["train"]["vernacular"] > 5_000_000
    assert meta["lines_skipped"]["U+FFFD"] == 11
