"""Built-in data recipes: from a public source to validated, split record files on disk."""

from __future__ import annotations

import json
from pathlib import Path

from tagsmith.convert import ConversionReport, punctuated_to_record
from tagsmith.records import write_jsonl
from tagsmith.split import split_by_document

#: The huge regular-verse collections (16M characters of 5/7-character lines punctuated at fixed places)
#: teach almost nothing about prose punctuation; they go into the mlm corpus, not the tagging records.
TAGGING_EXCLUDED = ("quantangshi", "yudingquantangshi")
RECIPE_VERSION = 1


def build_chinese_poetry(out_dir: str | Path, cache_dir: str | Path, script: str = "simplified",
                         seed: int = 42, force: bool = False, progress: bool = True) -> dict:
    """Records for segmentation and punctuation, split by document, plus the unlabeled mlm corpus."""
    from tagsmith.recipes import chinese_poetry

    out_dir = Path(out_dir)
    meta_path = out_dir / "meta.json"
    wanted = {"recipe": "chinese-poetry", "recipe_version": RECIPE_VERSION, "script": script, "seed": seed}
    if meta_path.is_file() and not force:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if all(meta.get(k) == v for k, v in wanted.items()):
            return meta
    package = chinese_poetry.fetch_package(Path(cache_dir))
    collections = [name for name in chinese_poetry.COLLECTIONS if name not in TAGGING_EXCLUDED]
    meta = {**wanted, "package": str(package), "tasks": {}}
    for task in ("segmentation", "punctuation"):
        report = ConversionReport()
        records = []
        for document in chinese_poetry.iter_documents(package, collections, progress=progress):
            for number, paragraph in enumerate(document.paragraphs):
                record = punctuated_to_record(paragraph, task, script, report)
                if record is not None:
                    records.append({**record, "doc": document.id, "kind": document.kind,
                                    "collection": document.collection})
        splits, split_report = split_by_document(records, seed=seed)
        for name, split_records in splits.items():
            write_jsonl(out_dir / task / f"{name}.jsonl", split_records)
        meta["tasks"][task] = {"conversion": report.as_dict(), "split": split_report}
    meta["corpus"] = chinese_poetry.write_corpus(package, out_dir / "corpus.txt", progress=progress)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return meta
