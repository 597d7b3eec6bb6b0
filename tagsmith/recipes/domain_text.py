"""Domain text for masked-LM adaptation (biomedical abstracts, financial news) and the downstream finance
sentiment check, from a local copy of the files (``biomed_train.jsonl``, ``finance_train.jsonl``).

The finance sentiment split is made FIRST, and the finance mlm corpus holds only its training texts, so the
downstream comparison never pretrains on the texts it is tested on.
"""

from __future__ import annotations

import json
from pathlib import Path

from tagsmith.recipes import RecipeError
from tagsmith.records import read_record_file, write_jsonl


def fetch_domain_text(out_dir: str | Path, local_copy: str | Path | None, seed: int = 42) -> dict:
    if local_copy is None:
        raise RecipeError("domain-text needs a local copy: --local DIR with biomed_train.jsonl and finance_train.jsonl")
    source = Path(local_copy)
    out_dir = Path(out_dir)
    meta: dict = {"source": str(source), "seed": seed}
    biomed = _texts(source / "biomed_train.jsonl")
    write_jsonl(out_dir / "biomed.jsonl", ({"text": t} for t in biomed))
    finance = read_record_file(source / "finance_train.jsonl")
    if finance.problems:
        raise RecipeError("\n".join(map(str, finance.problems)))
    rows = [{"text": r["text"], "label": r["sentiment"]} for r in finance.records]
    from sklearn.model_selection import train_test_split

    unique = {r["text"]: r for r in rows}  # the phrase bank repeats a few sentences verbatim
    rows = list(unique.values())
    labels = [r["label"] for r in rows]
    train, rest = train_test_split(rows, test_size=0.2, random_state=seed, stratify=labels)
    validation, test = train_test_split(rest, test_size=0.5, random_state=seed, stratify=[r["label"] for r in rest])
    for name, split in (("train", train), ("validation", validation), ("test", test)):
        write_jsonl(out_dir / "finance-sentiment" / f"{name}.jsonl", split)
    write_jsonl(out_dir / "finance.jsonl", ({"text": r["text"]} for r in train))
    meta.update({"biomed_documents": len(biomed), "finance_sentences": len(rows),
                 "finance_duplicates_removed": len(finance.records) - len(rows),
                 "finance_sentiment": {"train": len(train), "validation": len(validation), "test": len(test)}})
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


def _texts(path: Path) -> list[str]:
    parsed = read_record_file(path)
    if parsed.problems:
        raise RecipeError("\n".join(map(str, parsed.problems)))
    return [r["text"] for r in parsed.records]
