"""Record lists as Trainer datasets, with seeded oversampling and caps (shared by every task)."""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch

from tagsmith.config import ExperimentConfig
from training.runner import log


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def train_record_indices(config: ExperimentConfig, kinds: Sequence[str | None], collections: Sequence[str | None],
                         lengths: Sequence[int]) -> np.ndarray:
    """Which training records are used, and how often: record indices, repeated for oversampling.

    ``data.max_train_chars_per_collection`` first keeps, of each collection (a book) larger than the cap, a seeded
    random choice of its records up to about that many characters, so the largest books do not drown the others.
    ``data.oversample`` keys name a record ``kind`` or a ``collection``; a record's collection factor, when given,
    takes precedence over its kind's (``{prose: 3, chengyu_sources: 6}``). A key that no training record carries is
    logged as a warning: a misspelt key changes nothing, and data without kinds (a user's own) meets the default
    corpus's factors. ``data.max_train_records`` caps the total. Every choice is seeded and logged."""
    factors = config.data.oversample
    unknown = sorted(set(factors) - set(kinds) - set(collections))
    if unknown:
        log.warning("data.oversample names %s, which no record of %s has as its kind or collection: no effect",
                    ", ".join(unknown), config.data.train)
    kept = np.arange(len(lengths))
    cap = config.data.max_train_chars_per_collection
    if cap:
        kept = _cap_collections(kept, collections, np.asarray(lengths, dtype=np.int64), cap, config.seed)
    copies = [factors.get(collections[i], factors.get(kinds[i], 1)) for i in kept]
    out = np.repeat(kept, copies)
    if config.data.max_train_records and len(out) > config.data.max_train_records:
        out = np.asarray(random.Random(config.seed).sample(out.tolist(), config.data.max_train_records), dtype=np.int64)
    if len(out) != len(lengths):
        log.info("training records: %d in file -> %d after collection cap %d chars / oversample %s / cap %d",
                 len(lengths), len(out), cap, config.data.oversample, config.data.max_train_records)
    return out


def _cap_collections(indices: np.ndarray, collections: Sequence[str | None], lengths: np.ndarray, cap: int,
                     seed: int) -> np.ndarray:
    by_collection: dict = {}
    for i in indices:
        by_collection.setdefault(collections[i], []).append(int(i))
    rng, kept, capped = random.Random(seed), [], []
    for name in sorted(by_collection, key=str):
        members = by_collection[name]
        if name is None or name == "" or lengths[members].sum() <= cap:
            kept.extend(members)
            continue
        rng.shuffle(members)
        chosen = members[: int(np.searchsorted(np.cumsum(lengths[members]), cap, side="right")) + 1]
        kept.extend(chosen)
        capped.append(f"{name} {int(lengths[members].sum()) / 1e6:.2f}M")
    if capped:
        log.info("data.max_train_chars_per_collection %d: %d collections capped (%s)", cap, len(capped),
                 ", ".join(capped[:12]) + (", ..." if len(capped) > 12 else ""))
    return np.asarray(sorted(kept), dtype=np.int64)


def prepare_train_records(config: ExperimentConfig, records: list[dict]) -> list[dict]:
    """The training records as :func:`train_record_indices` chooses them (the data itself is never altered)."""
    indices = train_record_indices(config, [r.get("kind") for r in records], [r.get("collection") for r in records],
                                   [len(r["text"]) for r in records])
    return [records[i] for i in indices]


def eval_indices(config: ExperimentConfig, count: int) -> list[int]:
    """``data.max_eval_records``: a seeded sample of evaluation records (all of them without a cap)."""
    if config.data.max_eval_records and count > config.data.max_eval_records:
        return random.Random(config.seed).sample(range(count), config.data.max_eval_records)
    return list(range(count))


def cap_eval(config: ExperimentConfig, records: list[dict]) -> list[dict]:
    return [records[i] for i in eval_indices(config, len(records))]


def scalar_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


