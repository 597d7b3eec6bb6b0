"""Tests for tagsmith.recipes.chinese_poetry on a tiny fake package (no network), plus one slow
test that really fetches chinese-poetry with npm."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest
from conftest import fetched_or_skip

from tagsmith.recipes import RecipeError, npm
from tagsmith.recipes import chinese_poetry as cp
from tagsmith.recipes.chinese_poetry import (
    COLLECTIONS,
    PACKAGE,
    Document,
    fetch_package,
    iter_documents,
    write_corpus,
)

# --------------------------------------------------------------------------------------------
# A fake package tree, one file per real schema seen in chinese-poetry 2.0.1
# --------------------------------------------------------------------------------------------

FILES: dict[str, object] = {
    # list of {chapter, paragraphs}; whitespace and an empty paragraph to drop
    "lunyu/lunyu.json": [
        {"chapter": "学而篇", "paragraphs": ["  子曰：“学而时习之，不亦说乎？”\n", "", "   "]},
        {"chapter": "为政篇", "paragraphs": ["子曰：“为政以德。”", "子曰：“吾十有五而志于学。”"]},
    ],
    # a single dict record
    "sishuwujing/daxue.json": {"chapter": "大學", "paragraphs": ["大學之道，在明明德。", "曾子曰：「十目所視，十手所指，其嚴乎！」"]},
    # nested volumes -> essays; abstract excluded; variant-reading note and pinyin gloss removed
    "mengxue/guwenguanzhi.json": {
        "title": "古文觀止",
        "abstract": ["《古文觀止》是清人吳楚材選定的古代散文選本。"],
        "content": [
            {"title": "卷一・周文", "content": [
                {"chapter": "鄭伯克段於鄢", "source": "《左傳》", "author": "先秦：左丘明 ",
                 "paragraphs": ["初，鄭武公娶於申。", "遂爲母子如初。(序民人 一作：序人民)"]},
                {"chapter": "周鄭交質", "source": "《左傳》", "author": "先秦：左丘明",
                 "paragraphs": ["或立於陂(bēi)田，豈不榖()是爲？"]},
            ]},
            {"title": "卷二・周文", "content": [
                {"chapter": "燭之武退秦師", "source": "《左傳》", "author": "先秦：左丘明",
                 "paragraphs": ["晉侯、秦伯圍鄭。", "（選自《左傳》）"]},
            ]},
        ],
    },
    # nested types -> poems; one poem split into sub-poems; a variant note broken over paragraphs
    "mengxue/qianjiashi.json": {
        "title": "千家詩", "author": "南宋謝枋得/明代王相",
        "content": [{"type": "五言絕句", "content": [
            {"chapter": "春眠", "author": "（唐）孟浩然", "paragraphs": ["春眠不覺曉，處處聞啼鳥。(曉", "一作：早)", "夜來風雨聲，花落知多少。"]},
            {"chapter": "攜妓納涼晚際遇雨", "author": "（唐）杜甫", "paragraphs": [
                {"subchapter": "其一", "paragraphs": ["落日放船好，輕風生浪遲。"]},
                {"subchapter": "其二", "paragraphs": ["雨來沾席上，風急打船頭。"]},
            ]},
        ]}],
    },
    # {content: str, comment: [...]} -> comment excluded
    "youmengying/youmengying.json": [
        {"content": "读经宜冬，其神专也。", "comment": ["曹秋岳曰：可想见其南面百城时。"]},
    ],
    # "para" instead of "paragraphs"
    "nalanxingde/纳兰性德诗集.json": [
        {"title": "长相思·山一程", "para": ["山一程，水一程，身向榆关那畔行，夜深千帐灯"], "author": "纳兰性德"},
    ],
    # "content" as a list of lines
    "chuci/chuci.json": [
        {"title": "离骚", "section": "离骚", "author": "屈原", "content": ["帝高阳之苗裔兮，朕皇考曰伯庸。"]},
    ],
    # multi-file collection, natural file order, tune name as title, author file skipped
    "songci/ci.song.0.json": [
        {"author": "和岘", "paragraphs": ["气和玉烛，睿化著鸿明。"], "rhythmic": "导引"},
    ],
    "songci/ci.song.10000.json": [
        {"author": "无名氏", "paragraphs": ["一张机。"], "rhythmic": "九张机", "prologue": "序"},
    ],
    "songci/ci.song.2000.json": [
        {"author": "苏轼", "paragraphs": ["明月几时有，把酒问青天。"], "rhythmic": "水调歌头", "tags": ["中秋"]},
    ],
    "songci/author.song.json": [{"name": "和岘", "description": "和岘，字晦仁。"}],
    # quantangshi: notes field excluded; editorial parentheses and placeholders removed
    "quantangshi/poet.tang.0.json": [
        {"author": "太宗皇帝", "paragraphs": ["秦川雄帝宅，函谷壯皇居。", "綺殿千尋起，離宮百雉餘。"],
         "title": "帝京篇十首 一", "id": "3ad6d468"},
        {"author": "佚名", "paragraphs": ["孝於何，通神明。", "漢有丁蘭，唐有師貞。"],
         "notes": ["（見《太平御覽》卷四一四引《史系》）。"], "title": "時人爲劉師貞語", "id": "69d08894"},
        {"author": "王梵志", "paragraphs": [
            "飲（一作「欲」）食滿盂中，架上選衣着。",
            "千里尋月影（《宗鏡錄》卷四一作「千生尋水月」），終是枉工夫。",
            "（見程毅中校本《玄怪錄》卷四。",
            "（〖1〗《玄怪錄》：陳朱崖太守袁洪兒，小名誇郎。",
            "〖節錄大意〗）。"], "title": "童子", "id": "x1"},
        {"author": "無名氏", "paragraphs": ["（同前）。"], "title": "失題", "id": "x2"},
    ],
    "quantangshi/poet.song.0.json": [
        {"author": "扈蒙", "paragraphs": ["詩題：原無題句：微臣自愧頭如雪，也向鈞天侍玉皇。"], "title": "存目  其一", "id": "bf1f"},
        {"author": "宋太祖", "paragraphs": ["欲出未出光辣達，千山萬山如火發。"], "title": "日詩", "id": "08e4"},
        {"author": "某", "paragraphs": ["無正文。"], "title": "題", "id": "x3"},
    ],
    "quantangshi/唐诗补录.json": [
        {"author": "佚名", "paragraphs": ["住在绿池边，朝朝学采莲"], "title": "", "id": None, "notes": "长沙窑"},
    ],
    # poets' biographies: Classical prose; the parenthesised dates and sources are the editors' and go
    "quantangshi/authors.tang.json": [{"name": "高宗皇帝", "desc": "帝諱治，文皇第九子（《舊唐書》卷四）。存詩八首。", "id": "f78a"},
                                      {"name": "佚名", "desc": "", "id": "a002"}],
    "quantangshi/authors.song.json": [{"name": "郭昂", "desc": "郭昂，字百二，寧都（今屬江西）人。", "id": "b1"}],
    "quantangshi/error/poet.song.0.json": [
        {"author": "扈蒙", "paragraphs": ["（以上劉瑛整理）。"], "strains": ["？"], "title": "存目", "id": "6fa1",
         "error_type": ["内容含符号存疑"]},
    ],
    # not text: skipped
    "strains/json/poet.tang.0.json": [{"strains": ["平平仄仄平。"], "id": "3ad6d468"}],
    "rank/poet/poet.tang.rank.0.json": [{"author": "太宗皇帝", "title": "帝京篇", "baidu": 1}],
    # huajianji: notes excluded; preface is its own prose collection, footnote markers removed
    "wudaishici/huajianji/huajianji-0-preface.json": [
        {"rhythmic": "花间集", "notes": ["1.欧陽炯--五代词人。"], "paragraphs": ["欧陽炯[1]撰镂玉雕琼[2]，拟化工而迥巧。"],
         "author": "欧陽炯", "title": "花间集序"},
    ],
    "wudaishici/huajianji/huajianji-1-juan.json": [
        {"title": "菩萨蛮 其一", "paragraphs": ["小山重叠金明灭，鬓云欲度香腮雪。"], "author": "温庭筠",
         "rhythmic": "菩萨蛮", "notes": ["1.小山--写女子的隔夜残妆。"]},
    ],
    # yudingquantangshi: biography/notes excluded, line attributions removed
    "yudingquantangshi/json/001.json": [
        {"title": "兩儀殿賦柏梁體", "author": "李世民", "biography": "帝姓李氏。",
         "paragraphs": ["絕域降附天下平，——李世民", "八表無事悅聖情。——淮安王"], "notes": [""],
         "volume": "卷一", "no#": 1},
    ],
}

EXPECTED = [
    Document("lunyu/0000", "lunyu", "prose", "学而篇", ["子曰：“学而时习之，不亦说乎？”"]),
    Document("lunyu/0001", "lunyu", "prose", "为政篇", ["子曰：“为政以德。”", "子曰：“吾十有五而志于学。”"]),
    Document("daxue/0000", "daxue", "prose", "大學",
             ["大學之道，在明明德。", "曾子曰：「十目所視，十手所指，其嚴乎！」"]),
    Document("guwenguanzhi/0000", "guwenguanzhi", "prose", "鄭伯克段於鄢",
             ["初，鄭武公娶於申。", "遂爲母子如初。"], author="先秦：左丘明"),
    Document("guwenguanzhi/0001", "guwenguanzhi", "prose", "周鄭交質",
             ["或立於陂田，豈不榖是爲？"], author="先秦：左丘明"),
    Document("guwenguanzhi/0002", "guwenguanzhi", "prose", "燭之武退秦師",
             ["晉侯、秦伯圍鄭。"], author="先秦：左丘明"),
    Document("youmengying/0000", "youmengying", "prose", "", ["读经宜冬，其神专也。"]),
    Document("huajianji_preface/0000", "huajianji_preface", "prose", "花间集序",
             ["欧陽炯撰镂玉雕琼，拟化工而迥巧。"], author="欧陽炯"),
    Document("quantangshi_authors/0000", "quantangshi_authors", "prose", "", ["帝諱治，文皇第九子。存詩八首。"],
             author="高宗皇帝"),
    Document("quansongshi_authors/0000", "quansongshi_authors", "prose", "", ["郭昂，字百二，寧都人。"], author="郭昂"),
    Document("chuci/0000", "chuci", "verse", "离骚", ["帝高阳之苗裔兮，朕皇考曰伯庸。"], author="屈原"),
    Document("quantangshi/0/0000", "quantangshi", "verse", "帝京篇十首 一",
             ["秦川雄帝宅，函谷壯皇居。", "綺殿千尋起，離宮百雉餘。"], author="太宗皇帝"),
    Document("quantangshi/0/0001", "quantangshi", "verse", "時人爲劉師貞語",
             ["孝於何，通神明。", "漢有丁蘭，唐有師貞。"], author="佚名"),
    Document("quantangshi/0/0002", "quantangshi", "verse", "童子",
             ["飲食滿盂中，架上選衣着。", "千里尋月影，終是枉工夫。"], author="王梵志"),
    Document("quantangshi/bulu/0000", "quantangshi", "verse", "", ["住在绿池边，朝朝学采莲"], author="佚名"),
    Document("quansongshi/0/0001", "quansongshi", "verse", "日詩",
             ["欲出未出光辣達，千山萬山如火發。"], author="宋太祖"),
    Document("yudingquantangshi/001/0000", "yudingquantangshi", "verse", "兩儀殿賦柏梁體",
             ["絕域降附天下平，", "八表無事悅聖情。"], author="李世民"),
    Document("qianjiashi/0000", "qianjiashi", "verse", "春眠",
             ["春眠不覺曉，處處聞啼鳥。", "夜來風雨聲，花落知多少。"], author="（唐）孟浩然"),
    Document("qianjiashi/0001", "qianjiashi", "verse", "攜妓納涼晚際遇雨 其一",
             ["落日放船好，輕風生浪遲。"], author="（唐）杜甫"),
    Document("qianjiashi/0002", "qianjiashi", "verse", "攜妓納涼晚際遇雨 其二",
             ["雨來沾席上，風急打船頭。"], author="（唐）杜甫"),
    Document("huajianji/1-juan/0000", "huajianji", "verse", "菩萨蛮 其一",
             ["小山重叠金明灭，鬓云欲度香腮雪。"], author="温庭筠"),
    Document("songci/0/0000", "songci", "verse", "导引", ["气和玉烛，睿化著鸿明。"], author="和岘"),
    Document("songci/2000/0000", "songci", "verse", "水调歌头", ["明月几时有，把酒问青天。"], author="苏轼"),
    Document("songci/10000/0000", "songci", "verse", "九张机", ["一张机。"], author="无名氏"),
    Document("nalanxingde/0000", "nalanxingde", "verse", "长相思·山一程",
             ["山一程，水一程，身向榆关那畔行，夜深千帐灯"], author="纳兰性德"),
]


def _write_tree(root: Path, files: dict[str, object]) -> Path:
    pkg = root / "package"
    for rel, data in files.items():
        path = pkg / "dist" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (pkg / "package.json").write_text(json.dumps({"name": PACKAGE, "version": "2.0.1"}), encoding="utf-8")
    return pkg


@pytest.fixture()
def pkg(tmp_path: Path) -> Path:
    return _write_tree(tmp_path / "fake", FILES)


# --------------------------------------------------------------------------------------------
# iter_documents
# --------------------------------------------------------------------------------------------


def test_documents_exact(pkg: Path) -> None:
    docs = list(iter_documents(pkg, progress=False))
    assert sorted(docs, key=lambda d: d.id) == sorted(EXPECTED, key=lambda d: d.id)


def test_documents_follow_source_order(pkg: Path) -> None:
    ids = [d.id for d in iter_documents(pkg, progress=False)]
    assert ids.index("lunyu/0000") < ids.index("lunyu/0001")
    # natural file order: ci.song.0 < ci.song.2000 < ci.song.10000
    assert [i for i in ids if i.startswith("songci/")] == ["songci/0/0000", "songci/2000/0000", "songci/10000/0000"]
    assert len(ids) == len(set(ids))


def test_excluded_fields_and_skipped_files_never_appear(pkg: Path) -> None:
    text = "".join("".join(d.paragraphs) for d in iter_documents(pkg, progress=False))
    for excluded in ("吳楚材", "曹秋岳", "太平御覽", "隔夜残妆", "帝姓李氏", "劉瑛", "平平仄仄", "字晦仁",
                     "一作", "選自", "〖", "舊唐書", "今屬", "詩題", "無正文", "同前", "——", "[1]", "bēi"):
        assert excluded not in text, excluded


def test_kinds_match_collections(pkg: Path) -> None:
    assert set(COLLECTIONS.values()) == {"prose", "verse"}
    for name in ("lunyu", "daxue", "zhongyong", "mengzi", "guwenguanzhi", "youxueqionglin", "youmengying"):
        assert COLLECTIONS[name] == "prose"
    for name in ("quantangshi", "quansongshi", "songci", "yuanqu", "chuci", "shijing"):
        assert COLLECTIONS[name] == "verse"
    for doc in iter_documents(pkg, progress=False):
        assert doc.kind == COLLECTIONS[doc.collection]


def test_collection_filter(pkg: Path) -> None:
    docs = list(iter_documents(pkg, ["songci", "daxue"], progress=False))
    assert {d.collection for d in docs} == {"songci", "daxue"}
    assert len(docs) == 4
    assert [d.id for d in iter_documents(pkg, "daxue", progress=False)] == ["daxue/0000"]


def test_unknown_collection_name(pkg: Path) -> None:
    with pytest.raises(RecipeError, match="unknown collection.*nope"):
        list(iter_documents(pkg, ["nope"], progress=False))


def test_requested_collection_missing(pkg: Path) -> None:
    with pytest.raises(RecipeError, match="yuanqu.*not found"):
        list(iter_documents(pkg, ["yuanqu"], progress=False))


def test_malformed_json_names_the_file(pkg: Path) -> None:
    bad = pkg / "dist" / "shijing" / "shijing.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('[{"title": "关雎", "content": ["关关雎鸠，', encoding="utf-8")
    with pytest.raises(RecipeError, match="shijing/shijing.json"):
        list(iter_documents(pkg, progress=False))


def test_unexpected_schema_names_the_file(pkg: Path) -> None:
    bad = pkg / "dist" / "yuanqu" / "yuanqu.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps([{"title": "x", "lines": ["半世为人。"]}], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(RecipeError, match=r"yuanqu/yuanqu.json.*\$\[0\]"):
        list(iter_documents(pkg, ["yuanqu"], progress=False))


def test_non_string_paragraph_names_the_file(pkg: Path) -> None:
    bad = pkg / "dist" / "shijing" / "shijing.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps([{"title": "x", "content": ["关关雎鸠，", 3]}]), encoding="utf-8")
    with pytest.raises(RecipeError, match="shijing/shijing.json"):
        list(iter_documents(pkg, progress=False))


def test_unknown_json_file_is_an_error(pkg: Path) -> None:
    extra = pkg / "dist" / "newcollection" / "new.json"
    extra.parent.mkdir(parents=True)
    extra.write_text("[]", encoding="utf-8")
    with pytest.raises(RecipeError, match="unknown JSON.*newcollection/new.json"):
        list(iter_documents(pkg, progress=False))


def test_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="fetch_package"):
        list(iter_documents(tmp_path, progress=False))


def test_dist_dir_is_accepted(pkg: Path) -> None:
    assert [d.id for d in iter_documents(pkg / "dist", "daxue", progress=False)] == ["daxue/0000"]


def test_progress_bar_runs(pkg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(list(iter_documents(pkg, progress=True))) == len(EXPECTED)
    assert PACKAGE in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# write_corpus
# --------------------------------------------------------------------------------------------


def test_write_corpus(pkg: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "corpus.txt"
    stats = write_corpus(pkg, out, progress=False)
    lines = out.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    docs = list(iter_documents(pkg, progress=False))
    assert lines == ["".join(d.paragraphs) for d in docs]
    assert "子曰：“为政以德。”子曰：“吾十有五而志于学。”" in lines
    assert stats["documents"] == len(lines) == len(EXPECTED)
    assert stats["characters"] == sum(len(line) for line in lines)
    assert stats["duplicates"] == 0
    assert stats["collections"]["songci"] == {"documents": 3, "characters": len("气和玉烛，睿化著鸿明。一张机。明月几时有，把酒问青天。")}
    assert sorted(p.name for p in out.parent.iterdir()) == ["corpus.txt"]  # no temp file left
    assert stat.S_IMODE(out.stat().st_mode) & 0o044  # readable by others (not mkstemp's 0600)


def test_write_corpus_dedupes_and_keeps_one_line_per_document(tmp_path: Path) -> None:
    files = {
        "lunyu/lunyu.json": [{"chapter": "甲", "paragraphs": ["子曰：\n“学。”"]}],
        "shijing/shijing.json": [{"title": "关雎", "content": ["关关雎鸠，", "在河之洲。"]}],
        "songci/宋词三百首.json": [{"author": "x", "paragraphs": ["关关雎鸠，在河之洲。"], "rhythmic": "y"}],
    }
    pkg = _write_tree(tmp_path / "p", files)
    out = tmp_path / "c.txt"
    stats = write_corpus(pkg, out, progress=False)
    assert out.read_text(encoding="utf-8") == "子曰：“学。”\n关关雎鸠，在河之洲。\n"
    assert stats["documents"] == 2 and stats["duplicates"] == 1
    stats = write_corpus(pkg, out, progress=False, dedupe=False)
    assert stats["documents"] == 3 and stats["duplicates"] == 0


def test_write_corpus_failure_leaves_no_partial_file(pkg: Path, tmp_path: Path) -> None:
    out = tmp_path / "o" / "corpus.txt"
    out.parent.mkdir()
    out.write_text("old\n", encoding="utf-8")
    (pkg / "dist" / "shijing").mkdir()
    (pkg / "dist" / "shijing" / "shijing.json").write_text("{", encoding="utf-8")
    with pytest.raises(RecipeError):
        write_corpus(pkg, out, progress=False)
    assert out.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["corpus.txt"]


# --------------------------------------------------------------------------------------------
# fetch_package (no network)
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def no_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    def boom(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("subprocess must not be called")

    monkeypatch.setattr(npm.subprocess, "run", boom)


def test_fetch_without_npm(tmp_path: Path, no_npm: None) -> None:
    with pytest.raises(RecipeError, match="npm is not installed") as info:
        fetch_package(tmp_path / "cache", progress=False)
    assert "chinese-poetry-2.0.1.tgz" in str(info.value)


def test_fetch_uses_cache(tmp_path: Path, no_npm: None) -> None:
    cache = tmp_path / "cache"
    (cache / "chinese-poetry-2.0.1" / "package" / "dist").mkdir(parents=True)
    assert fetch_package(cache) == cache / "chinese-poetry-2.0.1" / "package"
    assert fetch_package(str(cache), progress=False) == cache / "chinese-poetry-2.0.1" / "package"


def _make_tgz(path: Path, version: str = "2.0.1", name: str = PACKAGE) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for arcname, data in {
            "package/package.json": json.dumps({"name": name, "version": version}).encode(),
            "package/dist/lunyu/lunyu.json": json.dumps(FILES["lunyu/lunyu.json"], ensure_ascii=False).encode(),
        }.items():
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_fetch_extracts_a_local_tarball_without_npm(tmp_path: Path, no_npm: None) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    _make_tgz(cache / "chinese-poetry-2.0.1.tgz")
    pkg = fetch_package(cache, progress=True)
    assert pkg == cache / "chinese-poetry-2.0.1" / "package"
    assert [d.id for d in iter_documents(pkg, progress=False)] == ["lunyu/0000", "lunyu/0001"]
    assert sorted(p.name for p in cache.iterdir()) == ["chinese-poetry-2.0.1", "chinese-poetry-2.0.1.tgz"]


def test_fetch_rejects_wrong_tarball(tmp_path: Path, no_npm: None) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    _make_tgz(cache / "chinese-poetry-2.0.1.tgz", version="1.0.0")
    with pytest.raises(RecipeError, match="expected chinese-poetry@2.0.1"):
        fetch_package(cache, progress=False)
    assert not (cache / "chinese-poetry-2.0.1").exists()
    (cache / "chinese-poetry-2.0.1.tgz").write_bytes(b"not a tarball")
    with pytest.raises(RecipeError, match="cannot extract"):
        fetch_package(cache, progress=False)


def _fake_npm(tmp_path: Path, script: str) -> Path:
    bindir = tmp_path / "fake-bin"
    bindir.mkdir()
    npm = bindir / "npm"
    npm.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    npm.chmod(0o755)
    return bindir


def test_fetch_reports_npm_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = _fake_npm(tmp_path, 'echo "npm error code ENOTFOUND" >&2\necho "npm error network request failed" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(RecipeError) as info:
        fetch_package(tmp_path / "cache", progress=False)
    message = str(info.value)
    assert "npm pack chinese-poetry@2.0.1" in message and "exit 1" in message
    assert "ENOTFOUND" in message and "network request failed" in message
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # no temp dirs left


def test_fetch_runs_npm_pack_then_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "src.tgz"
    _make_tgz(source)
    log = tmp_path / "npm.log"
    cp_bin = shutil.which("cp")
    bindir = _fake_npm(tmp_path, f'echo "$@" >> "{log}"\n"{cp_bin}" "{source}" ./chinese-poetry-2.0.1.tgz\n')
    monkeypatch.setenv("PATH", str(bindir))
    cache = tmp_path / "cache"
    pkg = fetch_package(cache, progress=False)
    assert (pkg / "dist" / "lunyu" / "lunyu.json").is_file()
    assert log.read_text().split() == ["pack", "chinese-poetry@2.0.1"]
    assert fetch_package(cache, progress=False) == pkg  # cached: npm not called again
    assert len(log.read_text().splitlines()) == 1
    fetch_package(cache, force=True, progress=False)  # force: fetched again
    assert len(log.read_text().splitlines()) == 2


# --------------------------------------------------------------------------------------------
# The real package (network; slow)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_real_package(tmp_path: Path) -> None:
    pkg = fetched_or_skip(fetch_package, tmp_path / "cache")
    counts: dict[str, int] = {}
    for doc in iter_documents(pkg, ["lunyu", "guwenguanzhi", "mengzi", "songci", "quansongshi_authors"], progress=False):
        counts[doc.collection] = counts.get(doc.collection, 0) + 1
        assert doc.paragraphs and all(p.strip() == p and p for p in doc.paragraphs)
    assert counts["lunyu"] == 20
    assert counts["mengzi"] == 14
    assert counts["guwenguanzhi"] == 222
    assert 21000 <= counts["songci"] <= 21100
    assert 8900 <= counts["quansongshi_authors"] <= 8934  # 8,934 biographies, a few of them empty
    first = next(iter_documents(pkg, ["guwenguanzhi"], progress=False))
    assert (first.id, first.title) == ("guwenguanzhi/0000", "鄭伯克段於鄢")
    # every JSON file of the real package is either read or deliberately skipped
    assert len(cp._plan(cp._dist_dir(pkg))) == 1276  # 2,245 JSON files minus the skipped ones
    assert os.path.isdir(pkg / "dist" / "strains")
