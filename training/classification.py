"""Training a text classifier (toxicity, or any label set) with class weights and a tuned threshold."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    DataCollatorWithPadding,
)

from tagsmith.classification import class_weights, classification_metrics, tune_threshold
from tagsmith.config import ExperimentConfig
from tagsmith.records import validate_splits, write_jsonl
from tagsmith.tasks import get_task
from training import runner
from training.datasets import ListDataset, cap_eval, prepare_train_records, scalar_metrics
from training.tokenizer import build_wordpiece_tokenizer, load_tokenizer, resolve_model_path

log = runner.log


def label_set(task, records: list[dict], config: ExperimentConfig) -> list[str]:
    if task.labels:
        return list(task.labels)
    if config.options.get("labels"):
        return [str(label) for label in config.options["labels"]]
    return sorted({r["label"] for r in records})


def check_labels(labels: list[str], splits: dict[str, list[dict]]) -> None:
    for split, records in splits.items():
        unknown = sorted({r["label"] for r in records} - set(labels))
        if unknown:
            raise runner.RunDirError(f"{split} split has label(s) {unknown} not seen in training; labels: {labels}")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(-1, keepdims=True)


def build_model(config: ExperimentConfig, labels: list[str], tokenizer, run_dir: Path):
    maps = {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}
    if config.model.name_or_path:
        path = resolve_model_path(config.model.name_or_path)
        model_config = AutoConfig.from_pretrained(path, **maps)
        return AutoModelForSequenceClassification.from_pretrained(path, config=model_config)
    s = config.model.scratch
    model_config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=s.hidden_size, num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads, intermediate_size=s.intermediate_size,
        max_position_embeddings=max(s.max_position_embeddings, config.max_length),
        hidden_dropout_prob=s.hidden_dropout_prob, attention_probs_dropout_prob=s.attention_probs_dropout_prob,
        pad_token_id=tokenizer.pad_token_id, **maps,
    )
    return AutoModelForSequenceClassification.from_config(model_config)


def make_tokenizer(config: ExperimentConfig, run_dir: Path, texts: list[str]):
    if config.model.name_or_path:
        return load_tokenizer(resolve_model_path(config.model.name_or_path))
    saved = run_dir / "tokenizer"
    if (saved / "tokenizer.json").is_file():
        return load_tokenizer(saved)
    tokenizer = build_wordpiece_tokenizer(texts, saved, config.model.scratch.max_vocab_size)
    log.info("trained a WordPiece vocabulary of %d tokens on the training texts", len(tokenizer))
    return tokenizer


def weighted_loss(weights: torch.Tensor):
    def compute(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        return torch.nn.functional.cross_entropy(logits.float(), labels.view(-1), weight=weights.to(logits.device))

    return compute


def train_classification(config: ExperimentConfig, resume: bool = False, overwrite: bool = False) -> int:
    task = get_task(config.task)
    splits = validate_splits(
        {"train": config.data.train, "validation": config.data.validation, "test": config.data.test}, task
    )
    if "train" not in splits or "validation" not in splits:
        raise runner.RunDirError(f"{config.name}: data.train and data.validation are required for {task.name}")
    multi = [s for s, rs in splits.items() if any("label" not in r for r in rs)]
    if multi:
        raise runner.RunDirError(f"{config.name}: multi-label records ('labels' mappings) in {multi}: "
                                 "convert them to single labels (tagsmith.tabular.read_jigsaw binary mode)")
    labels = label_set(task, splits["train"], config)
    check_labels(labels, splits)
    run_dir = runner.prepare_run_dir(config, resume, overwrite)
    runner.setup_logging(run_dir)
    log.info("run %s: task %s, labels %s, run dir %s", config.name, task.name, labels, run_dir)

    train_records = prepare_train_records(config, splits["train"])
    validation_records = cap_eval(config, splits["validation"])
    test_records = cap_eval(config, splits.get("test") or [])
    with runner.main_process_first(config):  # rank 0 builds and saves the vocabulary, the other ranks load it
        tokenizer = make_tokenizer(config, run_dir, [r["text"] for r in splits["train"]])
    index = {label: i for i, label in enumerate(labels)}

    def encode(records):
        encoded = tokenizer([r["text"] for r in records], truncation=True, max_length=config.max_length)
        return [{**{k: encoded[k][i] for k in encoded.keys()}, "labels": index[r["label"]]} for i, r in enumerate(records)]

    truncated = sum(len(ids) >= config.max_length for ids in tokenizer([r["text"] for r in train_records],
                                                                      truncation=True, max_length=config.max_length)["input_ids"])
    if truncated:
        log.info("%d training texts are longer than max_length %d tokens and are truncated for classification",
                 truncated, config.max_length)
    model = build_model(config, labels, tokenizer, run_dir)
    log.info("model: %s, %.2fM parameters", config.model.name_or_path or "scratch BERT",
             sum(p.numel() for p in model.parameters()) / 1e6)
    validation_gold = np.array([index[r["label"]] for r in validation_records])
    binary = len(labels) == 2
    positive = task.positive_label or (labels[1] if binary else None)

    def compute_metrics(prediction):
        probs = softmax(prediction.predictions)
        return scalar_metrics(classification_metrics(probs, prediction.label_ids, labels, positive=positive if binary else None))

    weights = None
    if config.class_weighting != "none":
        weights = torch.tensor(class_weights([r["label"] for r in train_records], labels, config.class_weighting))
        log.info("class weights (%s): %s", config.class_weighting, dict(zip(labels, np.round(weights.tolist(), 3))))
    stopper = runner.StopOnSignalCallback()
    trainer = runner.Trainer(
        model=model,
        args=runner.training_arguments(config, run_dir, task.main_metric, {}),
        train_dataset=ListDataset(encode(train_records)),
        eval_dataset=ListDataset(encode(validation_records)),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        compute_loss_func=weighted_loss(weights) if weights is not None else None,
        callbacks=runner.standard_callbacks(config, stopper),
    )
    train_seconds = runner.train_until_done_or_signal(trainer, run_dir, resume, stopper)
    if train_seconds is None:
        return runner.EXIT_REQUEUE
    # every rank takes part in predict() (it gathers across processes); only rank 0 writes
    validation_probs = softmax(trainer.predict(ListDataset(encode(validation_records))).predictions)
    started = time.time()
    test_probs = softmax(trainer.predict(ListDataset(encode(test_records))).predictions) if test_records else None
    test_seconds = time.time() - started
    if not trainer.is_world_process_zero():
        return 0
    threshold, tuning = None, None
    if binary:
        threshold = 0.5
        positive_index = labels.index(positive)
        if config.tune_decision:
            gold01 = (validation_gold == positive_index).astype(int)
            tuning = tune_threshold(validation_probs[:, positive_index], gold01,
                                    objective=config.options.get("threshold_objective", "f1"),
                                    target_recall=config.options.get("target_recall"))
            threshold = float(tuning["threshold"])
            log.info("threshold for %r tuned on validation: %.4f (%s)", positive, threshold, tuning)
    validation_scores = classification_metrics(validation_probs, validation_gold, labels, threshold=threshold,
                                               positive=positive if binary else None)
    results = {
        "task": task.name, "run": config.name, "labels": labels, "global_step": trainer.state.global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint, "train_seconds": round(train_seconds, 1),
        "train_texts_per_second": round(len(train_records) * (trainer.state.epoch or 0) / max(train_seconds, 1e-9), 1),
        "threshold": threshold, "threshold_tuning": tuning, "validation": validation_scores,
    }
    if test_records:
        results["inference_texts_per_second"] = round(len(test_records) / max(test_seconds, 1e-9), 1)
        test_gold = np.array([index[r["label"]] for r in test_records])
        results["test"] = classification_metrics(test_probs, test_gold, labels, threshold=threshold,
                                                 positive=positive if binary else None)
        if binary:
            results["test_at_0.5"] = scalar_metrics(classification_metrics(test_probs, test_gold, labels, threshold=0.5,
                                                                           positive=positive))
        write_jsonl(run_dir / "test_predictions.jsonl", (
            {"text": r["text"], "gold": r["label"], "predicted": _predicted(p, labels, threshold, positive),
             "probabilities": {l: round(float(x), 5) for l, x in zip(labels, p)}}
            for r, p in zip(test_records, test_probs)
        ))
        log.info("test %s: %.4f", task.main_metric, results["test"][task.main_metric])
    results["config"] = config.to_dict()
    best = run_dir / "best"
    trainer.save_model(str(best))
    tokenizer.save_pretrained(str(best))
    runner.write_json(best / "tagsmith.json", runner.manifest(
        config, labels=labels, positive_label=positive, threshold=threshold,
        metrics={"validation": scalar_metrics(validation_scores), "test": scalar_metrics(results.get("test", {}))},
        data_grade=config.options.get("data_grade", "real"),
    ))
    runner.write_json(run_dir / "results.json", results)
    runner.plot_curves(trainer.state.log_history, task.main_metric, run_dir / "curves.png")
    log.info("done: best model in %s, results in %s", best, run_dir / "results.json")
    return 0


def _predicted(probs: np.ndarray, labels: list[str], threshold: float | None, positive: str | None) -> str:
    if threshold is None:
        return labels[int(probs.argmax())]
    return positive if probs[labels.index(positive)] >= threshold else next(l for l in labels if l != positive)
