"""Training a character tagger (segmentation, punctuation) with the Hugging Face Trainer."""

from __future__ import annotations

import time

import numpy as np
import torch
from transformers import DataCollatorForTokenClassification

from tagsmith.config import ExperimentConfig
from tagsmith.compact import TaggingCorpus, load_tagging_splits
from tagsmith.records import write_jsonl
from tagsmith.windows import bias_indices
from training import runner
from training.losses import mean_one_weights, weighted_loss  # one loss for every task
from training.datasets import ListDataset, eval_indices, scalar_metrics, train_record_indices
from training.features import (CharDropoutCollator, CharIdsUnavailable, CompactWindows, decode, encode_windows,
                               merge_logits)
from training.model import build_tagging_model, scratch_bert_config
from training.run import TaskRun, millions, require_splits
from training.tokenizer import resolve_model_path

log = runner.log
BIAS_GRID = np.round(np.arange(-2.0, 6.01, 0.25), 2)


def label_weights(config: ExperimentConfig, labels: tuple[str, ...], counts: np.ndarray) -> torch.Tensor | None:
    """Class weights from the training characters per label (``counts[i]`` for ``labels[i]``), rescaled to a mean of
    1 over the training characters (:func:`training.losses.mean_one_weights`, the scale
    :func:`training.losses.weighted_loss` assumes). A label with no training character gets a weight as if it
    had one (a punctuation mark a corpus never uses), where :func:`training.losses.class_weights` would refuse."""
    if config.class_weighting == "none":
        return None
    total = float(np.sum(counts))
    weights = []
    for label, count in zip(labels, counts):
        balanced = total / (len(labels) * max(float(count), 1.0))
        weights.append(balanced ** 0.5 if config.class_weighting == "sqrt" else balanced)
    weights = mean_one_weights(weights, counts)
    log.info("class weights (%s, mean 1 over the training characters): %s", config.class_weighting,
             dict(zip(labels, np.round(weights.tolist(), 3))))
    return weights


def labelled_per_window(dataset) -> float:
    if hasattr(dataset, "labelled_per_window"):
        return dataset.labelled_per_window()
    features = dataset.items
    return sum(sum(1 for label in f["labels"] if label != -100) for f in features) / max(len(features), 1)


def expected_batch_items(per_window: float, args) -> float:
    """The labelled tokens a randomly drawn training batch holds on average (``per_window`` a window), in the
    units of the Trainer's ``num_items_in_batch``: per process times the gradient-accumulation steps, summed over
    processes when the Trainer averages tokens across them (it multiplies the loss by the process count)."""
    processes = args.world_size if args.average_tokens_across_devices else 1
    return per_window * args.per_device_train_batch_size * args.gradient_accumulation_steps * processes


def tuning_records(records: list[dict], options: dict) -> tuple[list[int], str]:
    """Indices of the validation records the decision bias is tuned on, and what they are.

    ``options.tune_on_kind`` keeps records of one kind (``prose``: the texts people bring); ``options.
    tune_on_collections`` keeps records of the named collections. Where no record matches, a warning says so
    and the next wider set is used (collections -> kind -> all).
    """
    kind = options.get("tune_on_kind")
    collections = options.get("tune_on_collections") or []
    if isinstance(collections, str):
        collections = [collections]
    everything = list(range(len(records)))
    of_kind = [i for i in everything if kind is None or records[i].get("kind") == kind]
    if kind is not None and not of_kind:
        log.warning("no validation records of kind %r: tuning the decision bias on all of them", kind)
        of_kind, kind = everything, None
    if collections:
        chosen = [i for i in of_kind if records[i].get("collection") in collections]
        if chosen:
            return chosen, f"collections {', '.join(collections)}" + (f", kind {kind!r}" if kind else "")
        log.warning("no validation records of collections %s: tuning the decision bias on %s", collections,
                    f"kind {kind!r}" if kind else "all of them")
    return of_kind, f"kind {kind!r}" if kind else "all"


def tune_bias(task, gold: list[list[str]], char_logits: list[np.ndarray]) -> tuple[float, dict]:
    """The additive logit bias for the task's rare labels that maximises the main metric on validation (a bar on
    stderr counts the biases tried, the best so far beside it)."""
    from tqdm.auto import tqdm

    bias_ids = bias_indices(task.labels, task.bias_labels, f"task {task.name}")
    best = (None, -1.0, None)
    bar = tqdm(BIAS_GRID, desc=f"tuning the decision bias on {len(char_logits)} validation texts", unit=" bias",
               mininterval=5, disable=not char_logits)
    for bias in bar:
        predicted = [decode(lg, task.labels, bias_ids, float(bias)) for lg in char_logits]
        scores = task.score(gold, predicted)
        if scores[task.main_metric] > best[1] + 1e-9:
            best = (float(bias), scores[task.main_metric], scores)
            bar.set_postfix_str(f"best {best[0]:+.2f}: {task.main_metric} {best[1]:.4f}", refresh=False)
    return best[0], best[2]


def load_splits(config: ExperimentConfig, task) -> tuple[dict[str, TaggingCorpus], list[str]]:
    """Validate every split and hold it in compact form (tagsmith.compact: 70M characters in ~0.4 GB); the
    second value is what to log once the run's log is open."""
    started = time.time()
    corpora, left_out = load_tagging_splits(
        {"train": config.data.train, "validation": config.data.validation, "test": config.data.test}, task,
        config.data.exclude_kinds, progress=True)
    lines = [f"data.exclude_kinds: {counts} records left out of {split}" for split, counts in left_out.items() if counts]
    train_chars = len(corpora["train"].chars) / 1e6 if "train" in corpora else 0.0
    lines.append(f"records: { {split: len(c) for split, c in corpora.items()} }; {train_chars:.1f}M training "
                 f"characters, {sum(c.nbytes() for c in corpora.values()) / 2**20:.0f} MB in compact form, "
                 f"read and validated in {time.time() - started:.0f} s")
    return corpora, lines


def train_windows_dataset(config: ExperimentConfig, corpus: TaggingCorpus, indices: np.ndarray, tokenizer, label_index):
    """Compact training windows; a tokenizer that splits some character into several tokens gets the list form of
    encode_windows instead (same features, more memory)."""
    try:
        return CompactWindows(corpus, indices, tokenizer, config.max_length, config.window_overlap)
    except CharIdsUnavailable as error:
        log.info("training windows as lists, not compact: %s", error)
    records = corpus.records(indices)
    ids = [[label_index[l] for l in r["labels"]] for r in records]
    return ListDataset(encode_windows([r["text"] for r in records], tokenizer, config.max_length,
                                      config.window_overlap, ids).features)


class TaggingRun(TaskRun):
    """Character tagging: compact training windows, windows merged back into texts for scoring, a decision bias."""

    def load(self) -> None:
        self.corpora, self.loaded = load_splits(self.config, self.task)
        require_splits(self.config, self.task, self.corpora)

    def started(self) -> None:
        config, corpora = self.config, self.corpora
        log.info("run %s: task %s, run dir %s", config.name, self.task.name, self.run_dir)
        for line in self.loaded:
            log.info(line)
        self.train_corpus = corpora["train"]
        self.train_indices = train_record_indices(config, self.train_corpus.field_values("kind"),
                                                  self.train_corpus.field_values("collection"), self.train_corpus.lengths)
        self.validation_records = corpora["validation"].records(eval_indices(config, len(corpora["validation"])))
        test_corpus = corpora.get("test")
        self.test_records = test_corpus.records(eval_indices(config, len(test_corpus))) if test_corpus is not None else []
        self.label_index = {label: i for i, label in enumerate(self.task.labels)}

    def tokenizer_texts(self) -> list[str]:
        return self.train_corpus.texts()

    def windows(self, records):
        ids = [[self.label_index[l] for l in r["labels"]] for r in records]
        return encode_windows([r["text"] for r in records], self.tokenizer, self.config.max_length,
                              self.config.window_overlap, ids)

    def prepare(self) -> None:
        config = self.config
        self.train_dataset = train_windows_dataset(config, self.train_corpus, self.train_indices, self.tokenizer,
                                                   self.label_index)
        self.validation_windows = self.windows(self.validation_records)
        log.info("windows: train %d, validation %d (max_length %d, overlap %d)", len(self.train_dataset),
                 len(self.validation_windows.features), config.max_length, config.window_overlap)
        self.validation_gold = [r["labels"] for r in self.validation_records]

    def build_model(self):
        config = self.config
        pretrained = resolve_model_path(config.model.name_or_path) if config.model.name_or_path else None
        encoder_config = None if pretrained else scratch_bert_config(config, self.tokenizer)
        return build_tagging_model(list(self.task.labels), config.model.head, encoder_config, pretrained)

    def describe_model(self, model) -> str:
        return f"{self.config.model.head.type} head, {millions(model):.2f}M parameters"

    def compute_metrics(self, prediction):
        logits = prediction.predictions
        if len(logits) != len(self.validation_windows.features):  # another eval set: score windows as they are
            return {}
        predicted = [decode(lg, self.task.labels) for lg in merge_logits(self.validation_windows, logits)]
        return scalar_metrics(self.task.score(self.validation_gold, predicted))

    def trainer_parts(self, model, args) -> dict:
        config, tokenizer = self.config, self.tokenizer
        copies = np.bincount(self.train_indices, minlength=len(self.train_corpus))
        weights = label_weights(config, self.task.labels, self.train_corpus.label_counts(copies))
        expected = expected_batch_items(labelled_per_window(self.train_dataset), args) if args.group_by_length else None
        if expected is not None:
            log.info("length-grouped batches: the training loss is divided by %.0f labelled tokens a batch "
                     "(the mean of random batches), not by each batch's own count", expected)
        collator = DataCollatorForTokenClassification(tokenizer)
        char_dropout = float(config.options.get("char_dropout", 0.0))
        if char_dropout:
            log.info("character dropout: %.0f%% of the labelled characters of a training batch read as %s",
                     100 * char_dropout, tokenizer.unk_token)
        return dict(
            train_dataset=self.train_dataset,
            eval_dataset=ListDataset(self.validation_windows.features),
            data_collator=collator,
            train_data_collator=CharDropoutCollator(collator, tokenizer.unk_token_id, char_dropout) if char_dropout else None,
            compute_metrics=self.compute_metrics,
            # always our loss: the CNN head's own is a per-batch mean, which the Trainer (its forward takes **kwargs)
            # would neither divide by the accumulation steps nor leave unmultiplied by the process count
            compute_loss_func=weighted_loss(weights, expected),
        )

    def eval_features(self):
        self.test_windows = self.windows(self.test_records) if self.test_records else None
        return self.validation_windows.features, self.test_windows.features if self.test_records else None

    def predict(self, trainer):
        trainer.compute_metrics = None  # from here on predictions are scored in results(), per merged text
        return super().predict(trainer)

    def results(self, trainer, predictions, train_seconds):
        config, task, run_dir = self.config, self.task, self.run_dir
        validation_predictions, test_predictions, test_seconds = predictions
        validation_records, validation_gold, test_records = self.validation_records, self.validation_gold, self.test_records
        validation_logits = merge_logits(self.validation_windows, validation_predictions)
        bias, validation_scores = (0.0, task.score(validation_gold, [decode(l, task.labels) for l in validation_logits]))
        bias_ids = bias_indices(task.labels, task.bias_labels, f"task {task.name}")
        if config.tune_decision:
            chosen, described = tuning_records(validation_records, config.options)
            bias, _ = tune_bias(task, [validation_gold[i] for i in chosen], [validation_logits[i] for i in chosen])
            predicted = [decode(l, task.labels, bias_ids, bias) for l in validation_logits]
            validation_scores = task.score(validation_gold, predicted)
            log.info("decision bias tuned on %d validation records (%s)", len(chosen), described)
            log.info("decision bias %.2f on %s tuned on validation: %s %.4f", bias, task.bias_labels, task.main_metric,
                     validation_scores[task.main_metric])

        arguments = trainer.args
        train_chars = int(self.train_corpus.lengths[self.train_indices].sum())
        results = {
            "task": task.name,
            "run": config.name,
            "global_step": trainer.state.global_step,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "train_seconds": round(train_seconds, 1),
            "train_chars_per_second": round(train_chars * (trainer.state.epoch or 0) / max(train_seconds, 1e-9), 1),
            "characters_seen": int(trainer.state.global_step * labelled_per_window(self.train_dataset)
                                   * arguments.train_batch_size * arguments.gradient_accumulation_steps
                                   * arguments.world_size),
            "decision_bias": bias,
            "validation": validation_scores,
        }
        if test_records:
            test_logits = merge_logits(self.test_windows, test_predictions)
            gold = [r["labels"] for r in test_records]
            predicted = [decode(l, task.labels, bias_ids, bias) for l in test_logits]
            results["test"] = task.score(gold, predicted)
            results["test_without_bias"] = scalar_metrics(task.score(gold, [decode(l, task.labels) for l in test_logits]))
            results["inference_chars_per_second"] = round(
                sum(len(r["text"]) for r in test_records) / max(test_seconds, 1e-9), 1)
            write_jsonl(run_dir / "test_predictions.jsonl", (
                {"text": r["text"], "gold": r["labels"], "predicted": p, "output": task.render(r["text"], p),
                 "gold_output": task.render(r["text"], r["labels"])}
                for r, p in zip(test_records, predicted)
            ))
            log.info("test %s: %s", task.main_metric, round(results["test"][task.main_metric], 4))
        fields = dict(
            labels=list(task.labels), bias_labels=list(task.bias_labels), decision_bias=bias,
            metrics={"validation": scalar_metrics(validation_scores), "test": scalar_metrics(results.get("test", {}))},
        )
        return results, fields

