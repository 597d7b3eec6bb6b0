"""tagsmith.recipes.chengyu (the idiom dictionary's source passages as prose) on hand-made lines, and its
place in the chinese-poetry recipe (no network: packages are put into the cache by hand)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from conftest import fetched_or_skip

from tagsmith.recipes import chengyu
from tagsmith.recipes.chengyu import fetch_package, iter_documents, quotations
from tagsmith.recipes import RecipeError

# the dictionary's line format: idiom, pinyin, gloss, source (opening quote dropped, closing kept), example
LINES = [
    "樽酒论文  拼音：zūn jiǔ lùn wén释义：一边喝酒，一边议论文章。出处：唐·杜甫《春日忆李白》诗何时一樽酒，重与细论文。”示例：～第一遭。★陈世宜",
    "邯郸学步  拼音：hán dān xué bù释义：比喻模仿人不到家。出处：《汉书·叙传上》昔有学步于邯郸者，曾未得其仿佛，又复失其故步，遂匍匐而归耳。”示例：无",
    # two citations: the second is a modern writer (no dynasty), skipped
    "左道旁门  拼音：zuǒ dào释义：不正派的东西。出处：明·许仲琳《封神演义》第三十四回左道旁门乱似麻，只因昏主起波查。”鲁迅《坟》这是左道旁门的说法。”示例：无",
    # locator 卷…, a gloss in parentheses, and a modern newspaper (skipped)
    "左右逢源  拼音：zuǒ yòu释义：做事得心应手。出处：《朱子语类》卷一百三十九前辈作文者（指唐人），皆模拟作一篇。”《人民日报》这是一个左右逢源的例子。”示例：无",
    # elided, too short, and no final mark: all skipped
    "一二三四  拼音：yī释义：无。出处：宋·苏轼《前赤壁赋》寄蜉蝣于天地，……渺沧海之一粟。”汉·刘向《说苑》太短。”《庄子·逍遥游》北冥有鱼，其名为鲲”示例：无",
    "没有出处  拼音：méi释义：只有释义。示例：无",
    # the same passage cited for another idiom: kept once
    "复见邯郸  拼音：fù释义：同上。出处：《汉书·叙传上》昔有学步于邯郸者，曾未得其仿佛，又复失其故步，遂匍匐而归耳。”示例：无",
]


def test_quotations_keep_pre_modern_passages_only() -> None:
    assert quotations(LINES[0]) == [("何时一樽酒，重与细论文。", "verse", "春日忆李白")]
    assert quotations(LINES[1]) == [("昔有学步于邯郸者，曾未得其仿佛，又复失其故步，遂匍匐而归耳。", "prose", "汉书·叙传上")]
    assert quotations(LINES[2]) == [("左道旁门乱似麻，只因昏主起波查。", "prose", "封神演义")]
    assert quotations(LINES[3]) == [("前辈作文者，皆模拟作一篇。", "prose", "朱子语类")]
    assert quotations(LINES[4]) == []
    assert quotations(LINES[5]) == []
    assert quotations("") == []
    # a source quoted through a commentary: the second citation is not text
    via = "某某  拼音：x释义：y。出处：《三国志·魏志·武帝纪》裴松之注引《魏略》太祖曰：吾与卿同事，今日何如也。”示例：无"
    assert quotations(via) == [("太祖曰：吾与卿同事，今日何如也。", "prose", "三国志·魏志·武帝纪")]
    # a book title that opens the passage is text
    opens = "某某  拼音：x释义：y。出处：《礼记·大学》《诗》云：如切如磋，如琢如磨。”示例：无"
    assert quotations(opens) == [("《诗》云：如切如磋，如琢如磨。", "prose", "礼记·大学")]


def _package(root: Path, lines: list[str]) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "3.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "package.json").write_text(json.dumps({"name": "chengyu", "version": "0.0.6"}), encoding="utf-8")
    return root


def test_documents_are_packed_deduplicated_and_keep_an_idiom_together(tmp_path: Path) -> None:
    pkg = _package(tmp_path / "package", LINES)
    docs = list(iter_documents(pkg, document_chars=40))
    texts = ["".join(d.paragraphs) for d in docs]
    # line 0 (12 chars) + line 1 (31 chars) reach 40; line 2 starts the next; line 6 repeats line 1: dropped
    assert [d.id for d in docs] == ["chengyu_sources/00000", "chengyu_sources/00002"]
    assert texts[0] == "何时一樽酒，重与细论文。昔有学步于邯郸者，曾未得其仿佛，又复失其故步，遂匍匐而归耳。"
    assert docs[0].kind == "prose" and docs[0].title == "春日忆李白 / 汉书·叙传上"
    assert texts[1] == "左道旁门乱似麻，只因昏主起波查。前辈作文者，皆模拟作一篇。"
    assert all(d.collection == "chengyu_sources" for d in docs)


def test_unreadable_package_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="3.txt"):
        list(iter_documents(tmp_path))


def _tgz(path: Path, name: str = "chengyu", version: str = "0.0.6") -> None:
    with tarfile.open(path, "w:gz") as tar:
        for arcname, data in {
            "package/package.json": json.dumps({"name": name, "version": version}).encode(),
            "package/data/3.txt": ("\n".join(LINES) + "\n").encode(),
        }.items():
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture()
def no_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_fetch_uses_a_local_tarball_and_says_what_to_do_without_npm(tmp_path: Path, no_npm: None) -> None:
    with pytest.raises(RecipeError, match="npm is not installed") as info:
        fetch_package(tmp_path / "empty-cache", progress=False)
    assert "chengyu-0.0.6.tgz" in str(info.value)
    cache = tmp_path / "cache"
    cache.mkdir()
    _tgz(cache / "chengyu-0.0.6.tgz", version="0.0.1")
    with pytest.raises(RecipeError, match="expected chengyu@0.0.6"):
        fetch_package(cache, progress=False)
    _tgz(cache / "chengyu-0.0.6.tgz")
    pkg = fetch_package(cache, progress=False)
    assert pkg == cache / "chengyu-0.0.6" / "package"
    assert len(list(iter_documents(pkg))) == 1
    assert fetch_package(cache, progress=False) == pkg  # cached


def test_chinese_poetry_recipe_adds_the_quotations(tmp_path: Path, no_npm: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from tagsmith.recipes.chinese_poetry_dataset import build_chinese_poetry
    from tagsmith.recipes import chinese_poetry

    monkeypatch.setattr(chinese_poetry, "COLLECTIONS", {"lunyu": "prose"})  # a package of one collection

    cache = tmp_path / "cache"
    dist = cache / "chinese-poetry-2.0.1" / "package" / "dist" / "lunyu"
    dist.mkdir(parents=True)
    chapters = [{"chapter": f"第{i}篇", "paragraphs": [f"子曰：“学而时习之，不亦说乎？”第{i}章。"]} for i in range(30)]
    (dist / "lunyu.json").write_text(json.dumps(chapters, ensure_ascii=False), encoding="utf-8")
    _package(cache / "chengyu-0.0.6" / "package", LINES)
    out = tmp_path / "data"
    meta = build_chinese_poetry(out, cache, progress=False)
    assert meta["quotations"] is True and meta["corpus"]["collections"]["chengyu_sources"]["documents"] == 1
    records = [json.loads(line) for split in ("train", "validation", "test")
               for line in (out / "punctuation" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
    quoted = [r for r in records if r["collection"] == "chengyu_sources"]
    assert len(quoted) == 1 and quoted[0]["kind"] == "prose"
    assert quoted[0]["text"].startswith("何时一樽酒重与细论文昔有学步")
    assert len(records) == 31
    corpus = (out / "corpus.txt").read_text(encoding="utf-8").splitlines()
    assert len(corpus) == 31 and corpus[-1].startswith("何时一樽酒，重与细论文。")
    # without quotations: rebuilt (the meta differs), and none are left
    meta = build_chinese_poetry(out, cache, progress=False, quotations=False)
    assert "chengyu_sources" not in meta["corpus"]["collections"]
    records = [json.loads(line) for line in (out / "punctuation" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(r["collection"] == "lunyu" for r in records)
    shutil.rmtree(cache / "chengyu-0.0.6")
    with pytest.raises(RecipeError, match="chengyu"):
        build_chinese_poetry(out, cache, progress=False, force=True)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_real_package(tmp_path: Path) -> None:
    pkg = fetched_or_skip(fetch_package, tmp_path / "cache")
    docs = list(iter_documents(pkg))
    characters = sum(len("".join(d.paragraphs)) for d in docs)
    assert 1900 <= len(docs) <= 2100 and 400_000 <= characters <= 460_000  # 1,988 / 428,297 measured
    assert sum(d.kind == "prose" for d in docs) > 0.95 * len(docs)
    assert chengyu.COLLECTION == docs[0].collection
