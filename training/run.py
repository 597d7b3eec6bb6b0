"""The one run sequence of every task kind: data -> run dir -> tokenizer -> model -> Trainer -> train -> predict ->
best/ + results.json. What differs between kinds is a :class:`TaskRun`'s hooks (``training/tagging.py``,
``classification.py``, ``mlm.py``); the run dir, resume, signals and the manifest are ``training/runner.py``'s."""

from __future__ import annotations

import time
from pathlib import Path

from tagsmith.config import ExperimentConfig
from tagsmith.tasks import get_task
from training import runner
from training.datasets import ListDataset
from training.tokenizer import run_tokenizer

log = runner.log


class TaskRun:
    """A task kind's part of :func:`run_task`, hook by hook, in the order they run.

    State goes on the instance: ``config``, ``task``, then ``run_dir`` and ``tokenizer`` once they exist."""

    #: the vocabulary built from the training texts when the model is trained from scratch (``char`` / ``wordpiece``)
    scratch_tokenizer = "char"
    #: the Trainer class (distillation has its own)
    trainer_class = runner.Trainer

    def __init__(self, config: ExperimentConfig):
        self.config = config
        self.task = get_task(config.task)
        self.run_dir: Path | None = None
        self.tokenizer = None

    @property
    def metric(self) -> str:
        """The model-selection metric (``metric_for_best_model``, the curves' right panel)."""
        return self.task.main_metric

    def load(self) -> None:
        """Read and validate the data; refuse (:class:`runner.RunDirError`) before any run dir is made."""
        raise NotImplementedError

    def started(self) -> None:
        """The run dir and its log exist: choose the records used, log what was read."""

    def tokenizer_texts(self) -> list[str]:
        """The texts a scratch vocabulary is built from."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Features from ``self.tokenizer`` (runs before the model is built)."""

    def build_model(self):
        raise NotImplementedError

    def describe_model(self, model) -> str:
        return f"{self.config.model.name_or_path or 'scratch BERT'}, {millions(model):.2f}M parameters"

    def argument_defaults(self) -> dict:
        """TrainingArguments this kind needs; the config's ``trainer:`` keys still win."""
        return {}

    def before_training(self, model, args) -> None:
        """After the model and the arguments, before the Trainer (e.g. distillation targets, a head warm-up)."""

    def trainer_parts(self, model, args) -> dict:
        """The Trainer's datasets, collators, metrics and loss (keyword arguments of :attr:`trainer_class`)."""
        raise NotImplementedError

    def eval_features(self) -> tuple[list[dict], list[dict] | None]:
        """The validation and test features :meth:`predict` runs the trained model on (test None: no test split)."""
        raise NotImplementedError

    def predict(self, trainer):
        """Every rank runs this (``predict()`` gathers across processes): (validation predictions, test predictions
        or None, the seconds the test predictions took)."""
        validation, test = self.eval_features()
        validation_predictions = trainer.predict(ListDataset(validation)).predictions
        started = time.time()
        test_predictions = trainer.predict(ListDataset(test)).predictions if test else None
        return validation_predictions, test_predictions, time.time() - started

    def results(self, trainer, predictions, train_seconds: float) -> tuple[dict, dict]:
        """Rank 0 only: ``results.json`` (without ``config``, added last) and the fields of ``best/tagsmith.json``.
        Writes any further files (test predictions)."""
        raise NotImplementedError

    def finished(self, best: Path, results: dict) -> None:
        log.info("done: best model in %s, results in %s", best, self.run_dir / "results.json")


def millions(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def require_splits(config: ExperimentConfig, task, splits) -> None:
    if "train" not in splits or "validation" not in splits:
        raise runner.RunDirError(f"{config.name}: data.train and data.validation are required for {task.name}")


def run_task(config: ExperimentConfig, run: TaskRun, resume: bool = False, overwrite: bool = False) -> int:
    """Train ``config`` with ``run``'s hooks: 0, or :data:`runner.EXIT_REQUEUE` when a signal stopped it after a
    checkpoint (``--resume`` continues it)."""
    run.load()
    run.run_dir = runner.prepare_run_dir(config, resume, overwrite)
    runner.setup_logging(run.run_dir)
    run.started()
    with runner.main_process_first(config):  # rank 0 builds and saves the vocabulary, the other ranks load it
        run.tokenizer = run_tokenizer(config, run.run_dir, run.tokenizer_texts(), run.scratch_tokenizer)
    run.prepare()
    model = run.build_model()
    log.info("model: %s", run.describe_model(model))
    args = runner.training_arguments(config, run.run_dir, run.metric, run.argument_defaults())
    run.before_training(model, args)
    stopper = runner.StopOnSignalCallback()
    trainer = run.trainer_class(model=model, args=args, callbacks=runner.standard_callbacks(config, stopper),
                                **run.trainer_parts(model, args))
    train_seconds = runner.train_until_done_or_signal(trainer, run.run_dir, resume, stopper)
    if train_seconds is None:
        return runner.EXIT_REQUEUE
    predictions = run.predict(trainer)
    if not trainer.is_world_process_zero():
        return 0
    results, fields = run.results(trainer, predictions, train_seconds)
    results["config"] = config.to_dict()
    best = run.run_dir / "best"
    trainer.save_model(str(best))
    run.tokenizer.save_pretrained(str(best))
    runner.write_json(best / "tagsmith.json", runner.manifest(config, **fields))
    runner.write_json(run.run_dir / "results.json", results)
    runner.plot_curves(trainer.state.log_history, run.metric, run.run_dir / "curves.png")
    run.finished(best, results)
    return 0
