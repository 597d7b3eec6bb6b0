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
    """Oversample by ``kind`` and cap, both seeded and logged (the data itself is never altered)."""
    out = []
    for record in records:
        out.extend([record] * int(config.data.oversample.get(record.get("kind"), 1)))
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


