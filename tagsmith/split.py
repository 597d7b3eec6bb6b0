"""Train / validation / test split by document, with no text shared between splits.

Whole documents go to one split (paragraphs of one essay are not independent), documents are shuffled with a
seed and cut by character count so the split fractions hold for text volume, not document count. A text that
occurs in more than one split (the same couplet quoted in two books) is kept only in the earliest split.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

SPLITS = ("train", "validation", "test")


def split_by_document(
    records: Sequence[dict],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    document_key: str = "doc",
    seed: int = 42,
) -> tuple[dict[str, list[dict]], dict]:
    """Returns ``({"train": [...], "validation": [...], "test": [...]}, report)``."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    documents: dict[str, list[dict]] = defaultdict(list)
    for number, record in enumerate(records, start=1):
        if document_key not in record:
            raise ValueError(f"record {number} has no {document_key!r} field to split by")
        documents[str(record[document_key])].append(record)
    sizes = {doc: sum(len(r["text"]) for r in members) for doc, members in documents.items()}
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for doc, name in assign_documents(sizes, fractions, seed).items():
        splits[name].extend(documents[doc])
    removed = _remove_cross_split_duplicates(splits)
    report = {
        "seed": seed,
        "fractions": list(fractions),
        "documents": {name: len({str(r[document_key]) for r in splits[name]}) for name in SPLITS},
        "records": {name: len(splits[name]) for name in SPLITS},
        "characters": {name: sum(len(r["text"]) for r in splits[name]) for name in SPLITS},
        "duplicates_removed": removed,
    }
    return splits, report


def assign_documents(sizes: dict[str, int], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Document -> split: documents shuffled with the seed, cut by character count (``sizes``), in shuffled order."""
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    total = sum(sizes.values()) or 1
    bounds = (fractions[0] * total, (fractions[0] + fractions[1]) * total)
    assigned, seen = {}, 0
    for doc in order:
        assigned[doc] = "train" if seen < bounds[0] else "validation" if seen < bounds[1] else "test"
        seen += sizes[doc]
    return assigned


def _remove_cross_split_duplicates(splits: dict[str, list[dict]]) -> dict[str, int]:
    seen: set[str] = set()
    removed = {}
    for name in SPLITS:
        kept = [r for r in splits[name] if r["text"] not in seen]
        removed[name] = len(splits[name]) - len(kept)
        seen.update(r["text"] for r in kept)
        splits[name] = kept
    return removed
