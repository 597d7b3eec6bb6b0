"""Record lists as Trainer datasets, with seeded oversampling and caps (shared by every task)."""

from __future__ import annotations

import random

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


def prepare_train_records(config: ExperimentConfig, records: list[dict]) -> list[dict]:
    """Oversample and cap, both seeded and logged (the data itself is never altered).

    ``data.oversample`` keys name a record ``kind`` or a ``collection``; a record's collection factor, when given,
    takes precedence over its kind's (``{prose: 3, chengyu_sources: 6}``). A key that no training record carries is
    logged as a warning: a misspelt key changes nothing, and data without kinds (a user's own) meets the default
    corpus's factors."""
    factors = config.data.oversample
    unknown = sorted(set(factors) - {r.get(field) for r in records for field in ("kind", "collection")})
    if unknown:
        log.warning("data.oversample names %s, which no record of %s has as its kind or collection: no effect",
                    ", ".join(unknown), config.data.train)
    out = []
    for record in records:
        copies = factors.get(record.get("collection"), factors.get(record.get("kind"), 1))
        out.extend([record] * int(copies))
    if config.data.max_train_records and len(out) > config.data.max_train_records:
        out = random.Random(config.seed).sample(out, config.data.max_train_records)
    if len(out) != len(records):
        log.info("training records: %d in file -> %d after oversample %s / cap %d",
                 len(records), len(out), config.data.oversample, config.data.max_train_records)
    return out


def cap_eval(config: ExperimentConfig, records: list[dict]) -> list[dict]:
    if config.data.max_eval_records and len(records) > config.data.max_eval_records:
        return random.Random(config.seed).sample(records, config.data.max_eval_records)
    return records


def scalar_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


