"""Entry point of ``tagsmith train``: dispatch a config to its task's training code."""

from __future__ import annotations

from tagsmith.config import ExperimentConfig
from tagsmith.tasks import get_task


def train(config: ExperimentConfig, resume: bool = False, overwrite: bool = False) -> int:
    task = get_task(config.task)
    if task.kind == "tagging":
        from training.tagging import train_tagging

        return train_tagging(config, resume=resume, overwrite=overwrite)
    if task.kind == "classification":
        from training.classification import train_classification

        return train_classification(config, resume=resume, overwrite=overwrite)
    if task.kind == "mlm":
        from training.mlm import train_mlm

        return train_mlm(config, resume=resume, overwrite=overwrite)
    raise NotImplementedError(f"task kind {task.kind!r} has no trainer yet")
