"""Recipe: NiuTrans/Classical-Modern (MIT), the punctuated Classical Chinese half, as tagging records.

The upstream repository keeps one book per folder, ``古文原文/<book>/<chapter>/[<section>/]text.txt``, one
paragraph a line, modern punctuation, simplified script: 319 books, ~70M Han characters (the 24 histories,
资治通鉴, 太平御览, 通典, pre-Qin and 子部 works, medicine, Buddhist and Daoist texts, a few vernacular novels
and plays). This module reads a clone of it (or the ``.tar.xz`` / unpacked copy of that folder) and writes
segmentation and punctuation records, one record per paragraph:

``{"text", "labels", "doc": "<book>/<chapter>[/<section>]", "kind", "collection": "<book>"}``

``kind`` is ``prose``, ``verse`` (primers and verse books, :data:`VERSE`) or ``vernacular`` (the 白话 novels and
the plays, :data:`VERNACULAR`: not Classical Chinese; the configs leave them out with ``data.exclude_kinds``).

Lines that are not trainable are skipped and counted by reason, never silently:

* ``invalid UTF-8`` and ``U+FFFD`` (bytes upstream that are not text);
* ``heading``: a line with no punctuation mark of :data:`tagsmith.marks.PUNCTUATION_MARKS` and at most
  :data:`HEADING_MAX_CHARS` characters (chapter titles, names of sections);
* ``long unmarked line``: a longer line with no mark, or with fewer than one mark per
  :data:`SPARSE_CHARS_PER_MARK` characters (夷坚志, 千金方 hold such lines: they would teach "no mark here"
  where the text simply was never punctuated);
* ``no characters``: nothing left after removing marks and spaces.

The split is by document (a chapter or section file), seeded, cut by character count, and a paragraph whose
text already went into an earlier split is left out of the later one (counted), as
:func:`tagsmith.split.split_by_document` does. Everything streams: memory stays flat for the 70M characters.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tagsmith.convert import ConversionReport, record_from_parsed, to_script
from tagsmith.marks import normalise_mark
from tagsmith.recipes import RecipeError
from tagsmith.records import JsonlWriter
from tagsmith.split import assign_documents
from tagsmith.tasks import parse_punctuated

RECIPE = "classical-modern"
RECIPE_VERSION = 1
ROOT = "古文原文"
UPSTREAM = "https://github.com/NiuTrans/Classical-Modern"
TASKS = ("segmentation", "punctuation")
SPLITS = ("train", "validation", "test")
HEADING_MAX_CHARS = 30
SPARSE_CHARS_PER_MARK = 60
BROKEN = "\ufffd"

#: Vernacular (白话) novels and plays: not Classical Chinese, their own kind, off by default in the configs.
VERNACULAR = frozenset("""
三侠五义 三刻拍案惊奇 三国演义 三遂平妖传 东周列国志 东游记 二刻拍案惊奇 初刻拍案惊奇 儒林外史 北游记 南北史演义
南游记 喻世明言 孽海花 官场现形记 封神演义 杨家将 水浒传 济公全传 海上花列传 狄公案 红楼梦 绣云阁 绿野仙踪 老残游记
花月痕 西汉演义 警世通言 醒世恒言 镜花缘 隋唐演义 雍正剑侠图 何典 十二楼 常言道 西游记 儿女英雄传
窦娥冤 西厢记 牡丹亭 桃花扇 长生殿 琵琶记 玉簪记
""".split())

#: Verse, rhymed primers and lyric collections: marks at fixed places, their own kind.
VERSE = frozenset("""
乐府诗集 千字文 三字经 百家姓 弟子规 笠翁对韵 声律启蒙 训蒙骈句 龙文鞭影 焦氏易林 药性歌括四百味 梦窗稿 增广贤文
""".split())




@dataclass
class Paragraph:
    doc: str
    book: str
    text: str


def kind_of(book: str) -> str:
    if book in VERNACULAR:
        return "vernacular"
    if book in VERSE:
        return "verse"
    return "prose"


def locate(local: Path, cache_dir: Path) -> Path:
    """The ``古文原文`` folder from a clone, an unpacked copy, the folder itself, or a ``.tar.xz`` / ``.tar.gz``."""
    local = Path(local)
    if not local.exists():
        raise RecipeError(f"{local}: no such file or folder; clone {UPSTREAM} (or unpack its archive) and pass "
                          "that folder with --local")
    if local.is_file():
        if not tarfile.is_tarfile(local):
            raise RecipeError(f"{local}: not a folder and not a tar archive; pass a clone of {UPSTREAM}")
        target = Path(cache_dir) / "classical-modern" / hashlib.sha256(str(local.resolve()).encode()).hexdigest()[:12]
        done = target / ".unpacked"
        if not done.is_file():
            target.mkdir(parents=True, exist_ok=True)
            with tarfile.open(local) as archive:
                archive.extractall(target, filter="data")
            done.write_text(str(local.resolve()), encoding="utf-8")
        local = target
    for candidate in (local / ROOT, local):
        if candidate.name == ROOT and candidate.is_dir():
            return candidate
    raise RecipeError(f"{local}: holds no {ROOT}/ folder; pass a clone of {UPSTREAM} (or its unpacked archive)")


def text_files(root: Path) -> list[Path]:
    files = sorted(root.glob("*/**/text.txt"))
    if not files:
        raise RecipeError(f"{root}: no {ROOT}/<book>/**/text.txt files")
    return files


def _skip_reason(line: str) -> str | None:
    """Why a stripped line is not a training paragraph, or None when it is one."""
    if BROKEN in line:
        return "U+FFFD"
    marks = sum(1 for char in line if normalise_mark(char) is not None)
    length = len(line) - marks
    if marks == 0:
        return "heading" if length <= HEADING_MAX_CHARS else "long unmarked line"
    if length > 2 * SPARSE_CHARS_PER_MARK and length / marks > SPARSE_CHARS_PER_MARK:
        return "long unmarked line"
    return None


def read_paragraphs(path: Path, root: Path, skipped: Counter) -> list[Paragraph]:
    relative = path.parent.relative_to(root)
    book, doc = relative.parts[0], relative.as_posix()
    paragraphs = []
    for raw in path.read_bytes().split(b"\n"):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            skipped["invalid UTF-8"] += 1
            continue
        if not line:
            continue
        reason = _skip_reason(line)
        if reason is not None:
            skipped[reason] += 1
            continue
        paragraphs.append(Paragraph(doc, book, line))
    return paragraphs


def build_classical_modern(out_dir: str | Path, local: str | Path | None, cache_dir: str | Path = ".cache",
                           script: str = "simplified", seed: int = 42,
                           fractions: tuple[float, float, float] = (0.98, 0.01, 0.01),
                           force: bool = False, progress: bool = True) -> dict:
    """Write ``<out>/{segmentation,punctuation}/{train,validation,test}.jsonl`` and ``<out>/meta.json``."""
    if local is None:
        raise RecipeError(f"classical-modern is not downloaded by tagsmith: clone {UPSTREAM} (about 1 GB; only its "
                          f"{ROOT}/ folder is read) and pass it with --local PATH (a folder or its .tar.xz)")
    out_dir = Path(out_dir)
    meta_path = out_dir / "meta.json"
    wanted = {"recipe": RECIPE, "recipe_version": RECIPE_VERSION, "script": script, "seed": seed,
              "fractions": list(fractions), "source": str(Path(local).resolve())}
    if meta_path.is_file() and not force:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if all(meta.get(k) == v for k, v in wanted.items()):
            return meta
    from tqdm import tqdm

    root = locate(Path(local), Path(cache_dir))
    files = text_files(root)
    skipped: Counter = Counter()
    by_doc: dict[str, list[Paragraph]] = {}
    for path in tqdm(files, desc="reading classical-modern", unit="file", disable=not progress):
        paragraphs = read_paragraphs(path, root, skipped)
        if paragraphs:
            by_doc.setdefault(paragraphs[0].doc, []).extend(paragraphs)
    split_of = assign_documents({d: sum(len(p.text) for p in ps) for d, ps in by_doc.items()}, fractions, seed)
    reports = {name: ConversionReport() for name in TASKS}
    seen: set[bytes] = set()
    counts = {split: Counter() for split in SPLITS}
    duplicates = Counter()
    writers = {(task, split): JsonlWriter(out_dir / task / f"{split}.jsonl") for task in TASKS for split in SPLITS}
    total = sum(len(p.text) for ps in by_doc.values() for p in ps)
    bar = tqdm(total=total, desc="writing records", unit="char", unit_scale=True, disable=not progress)
    try:
        for split in SPLITS:  # earlier splits first: a text repeated later is dropped from the later split
            split_seen: set[bytes] = set()
            for doc in sorted(d for d, s in split_of.items() if s == split):
                for paragraph in by_doc[doc]:
                    bar.update(len(paragraph.text))
                    parsed = parse_punctuated(to_script(paragraph.text, script))
                    if not parsed.chars:
                        skipped["no characters"] += 1
                        continue
                    key = hashlib.blake2b(parsed.chars.encode("utf-8"), digest_size=12).digest()
                    if key in seen and key not in split_seen:
                        duplicates[split] += 1
                        continue
                    seen.add(key)
                    split_seen.add(key)
                    extra = {"doc": doc, "kind": kind_of(paragraph.book), "collection": paragraph.book}
                    for name in TASKS:
                        writers[name, split].write({**record_from_parsed(parsed, name, reports[name]), **extra})
                    counts[split]["records"] += 1
                    counts[split]["characters"] += len(parsed.chars)
                    counts[split][f"characters_{extra['kind']}"] += len(parsed.chars)
        for writer in writers.values():
            writer.commit()
    finally:
        bar.close()
        for writer in writers.values():
            writer.discard()
    documents = Counter(split_of.values())
    meta = {
        **wanted,
        "upstream": UPSTREAM,
        "books": len({p.parts[0] for p in (f.parent.relative_to(root) for f in files)}),
        "text_files": len(files),
        "lines_skipped": dict(skipped.most_common()),
        "split": {
            "documents": {s: documents.get(s, 0) for s in SPLITS},
            "records": {s: counts[s]["records"] for s in SPLITS},
            "characters": {s: counts[s]["characters"] for s in SPLITS},
            "characters_by_kind": {s: {k[len("characters_"):]: v for k, v in counts[s].items()
                                       if k.startswith("characters_")} for s in SPLITS},
            "duplicates_removed": {s: duplicates.get(s, 0) for s in SPLITS},
        },
        "kinds": {"vernacular": sorted(VERNACULAR), "verse": sorted(VERSE)},
        "tasks": {name: {"conversion": reports[name].as_dict()} for name in TASKS},
    }
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return meta
