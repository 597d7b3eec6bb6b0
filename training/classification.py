"""Training a text classifier (toxicity, or any label set) with class weights and a tuned threshold."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
)

from tagsmith.config import ExperimentConfig
from tagsmith.decision import decide_label, softmax
from tagsmith.manifest import read_manifest
from tagsmith.metrics import classification_metrics
from tagsmith.records import validate_splits, write_jsonl
from tagsmith.thresholds import operating_points, tune_threshold
from training import runner
from training.datasets import (
    ListDataset,
    cap_eval,
    prepare_train_records,
    scalar_metrics,
)
from training.losses import (
    class_weights,
    labelled_items,
    mean_one_weights,
    summed_cross_entropy,
    weighted_loss,
)
from training.model import scratch_bert_config
from training.run import TaskRun, require_splits
from training.tokenizer import load_tokenizer, resolve_model_path

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


def build_model(config: ExperimentConfig, labels: list[str], tokenizer, run_dir: Path):
    maps = {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}
    if config.model.name_or_path:
        path = resolve_model_path(config.model.name_or_path)
        keep = config.model.keep_layers
        if keep:
            layers = AutoConfig.from_pretrained(path).num_hidden_layers
            if keep > layers:
                raise runner.RunDirError(f"model.keep_layers {keep}: {config.model.name_or_path} has only {layers} layers")
            maps["num_hidden_layers"] = keep  # the first `keep` layers' weights load; the rest are never built
        model_config = AutoConfig.from_pretrained(path, **maps)
        return AutoModelForSequenceClassification.from_pretrained(path, config=model_config)
    model_config = scratch_bert_config(config, tokenizer, **maps)
    return AutoModelForSequenceClassification.from_config(model_config)


# --- distillation --------------------------------------------------------------------------------------------


def teacher_dirs(config: ExperimentConfig) -> list[Path]:
    """The teachers' best/ checkpoints (a run dir or its best/ may be named)."""
    named = config.distill.teacher
    found = []
    for teacher in named if isinstance(named, list) else [named]:
        path = Path(teacher)
        path = path / "best" if (path / "best" / "tagsmith.json").is_file() else path
        if not (path / "tagsmith.json").is_file():
            raise runner.RunDirError(f"distill.teacher {teacher}: not a finished run (no best/tagsmith.json); "
                                     "train the teacher first")
        found.append(path)
    return found


def teacher_logits(config: ExperimentConfig, run_dir: Path, labels: list[str], texts: list[str]) -> np.ndarray:
    """``(teachers, len(texts), len(labels))`` logits of each teacher on the training texts: computed once and
    cached in the run dir (``teacher_logits.npz``, keyed by the texts, the teachers' weights and max_length), so
    epochs, a resumed run and a new temperature reuse them."""
    import hashlib

    from tqdm.auto import tqdm

    from tagsmith.hashing import sha256_file

    teachers = teacher_dirs(config)
    key = hashlib.sha256()
    key.update("\n".join(texts).encode("utf-8"))
    key.update(str(config.max_length).encode())
    for teacher in teachers:
        weights = next((teacher / name for name in ("model.safetensors", "pytorch_model.bin") if (teacher / name).is_file()), None)
        key.update(sha256_file(weights).encode() if weights else str(teacher).encode())
    cache = run_dir / "teacher_logits.npz"
    if cache.is_file():
        stored = np.load(cache)
        if str(stored["key"]) == key.hexdigest():
            log.info("teacher logits from %s (cached)", cache)
            return stored["logits"]
    all_logits = []
    for teacher in teachers:
        info = read_manifest(teacher, error=runner.RunDirError, missing="distill.teacher {folder}: no {name}")
        if list(info.get("labels", [])) != labels:
            raise runner.RunDirError(f"distill.teacher {teacher}: its labels {info.get('labels')} are not the "
                                     f"student's {labels}")
        model = AutoModelForSequenceClassification.from_pretrained(str(teacher)).eval()
        tokenizer = load_tokenizer(teacher)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch with little padding
        logits = np.zeros((len(texts), len(labels)), dtype=np.float32)
        started = time.time()
        with torch.inference_mode():
            for start in tqdm(range(0, len(order), 64), desc=f"teacher {teacher.parent.name} on the training texts",
                              unit="batch", mininterval=10):
                chunk = order[start:start + 64]
                batch = tokenizer([texts[i] for i in chunk], truncation=True, max_length=config.max_length,
                                  padding=True, return_tensors="pt")
                logits[chunk] = model(**batch).logits.float().numpy()
        log.info("teacher %s: logits of %d training texts in %.0f s", teacher, len(texts), time.time() - started)
        all_logits.append(logits)
        del model
    stacked = np.stack(all_logits)
    np.savez(cache, logits=stacked, key=np.array(key.hexdigest()))
    return stacked


def soft_targets(logits: np.ndarray, temperature: float) -> np.ndarray:
    """The teachers' probabilities at ``temperature``, averaged over teachers: ``(texts, labels)``."""
    return np.mean([softmax(teacher / temperature) for teacher in logits], axis=0).astype(np.float32)


def distillation_loss(weights: torch.Tensor | None, temperature: float, alpha: float):
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * the (class-weighted) cross-entropy on the labels;
    without teacher probabilities (evaluation) the cross-entropy alone.

    Both terms are summed over the texts and divided by ``num_items_in_batch``, the texts of the whole global batch
    (all accumulation micro-batches and processes), as :func:`weighted_loss` is and for its reasons: the
    :class:`DistillationTrainer` runs it as the Trainer's ``compute_loss_func``. Without ``num_items_in_batch`` (a
    direct call) the batch's own texts."""

    def compute(logits, labels, teacher_probs=None, num_items_in_batch=None):
        logits = logits.float()
        items = labelled_items(labels, num_items_in_batch)
        hard = summed_cross_entropy(logits, labels, weights) / items
        if teacher_probs is None:
            return hard
        soft = torch.nn.functional.kl_div(torch.log_softmax(logits / temperature, dim=-1), teacher_probs.float(),
                                          reduction="sum") * temperature ** 2 / items
        return alpha * soft + (1 - alpha) * hard

    return compute


class DistillationTrainer(runner.Trainer):
    """Takes the ``teacher_probs`` column out of a training batch before the model sees it and hands it to the
    distillation loss, which runs as the Trainer's ``compute_loss_func``: the Trainer then scales it exactly as the
    weighted loss (no division by the accumulation steps, times the process count; see :func:`weighted_loss`),
    whether or not the model's forward takes loss kwargs."""

    def __init__(self, *args, distill_loss, **kwargs):
        self.distill_loss = distill_loss
        self._teacher_probs = None
        super().__init__(*args, compute_loss_func=self._distillation_loss, **kwargs)

    def _distillation_loss(self, outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        return self.distill_loss(logits, labels, self._teacher_probs, num_items_in_batch=num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._teacher_probs = inputs.pop("teacher_probs", None)
        try:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        finally:
            self._teacher_probs = None


class ClassificationRun(TaskRun):
    """Text classification: class weights, a tuned threshold (binary), optional distillation from teachers."""

    scratch_tokenizer = "wordpiece"

    def load(self) -> None:
        config, task = self.config, self.task
        splits = validate_splits(
            {"train": config.data.train, "validation": config.data.validation, "test": config.data.test}, task
        )
        require_splits(config, task, splits)
        multi = [s for s, rs in splits.items() if any("label" not in r for r in rs)]
        if multi:
            raise runner.RunDirError(f"{config.name}: multi-label records ('labels' mappings) in {multi}: "
                                     "convert them to single labels (tagsmith.tabular.read_jigsaw binary mode)")
        self.labels = label_set(task, splits["train"], config)
        check_labels(self.labels, splits)
        self.splits = splits
        if config.distill.teacher:
            self.trainer_class = DistillationTrainer

    def started(self) -> None:
        config, splits = self.config, self.splits
        log.info("run %s: task %s, labels %s, run dir %s", config.name, self.task.name, self.labels, self.run_dir)
        self.train_records = prepare_train_records(config, splits["train"])
        self.validation_records = cap_eval(config, splits["validation"])
        self.test_records = cap_eval(config, splits.get("test") or [])
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.binary = len(self.labels) == 2
        self.positive = self.task.positive_label or (self.labels[1] if self.binary else None)

    def tokenizer_texts(self) -> list[str]:
        return [r["text"] for r in self.splits["train"]]

    def encode(self, records):
        encoded = self.tokenizer([r["text"] for r in records], truncation=True, max_length=self.config.max_length)
        return [{**{k: encoded[k][i] for k in encoded.keys()}, "labels": self.index[r["label"]]}
                for i, r in enumerate(records)]

    def prepare(self) -> None:
        max_length = self.config.max_length
        truncated = sum(len(ids) >= max_length for ids in self.tokenizer([r["text"] for r in self.train_records],
                                                                         truncation=True, max_length=max_length)["input_ids"])
        if truncated:
            log.info("%d training texts are longer than max_length %d tokens and are truncated for classification",
                     truncated, max_length)

    def build_model(self):
        return build_model(self.config, self.labels, self.tokenizer, self.run_dir)

    def argument_defaults(self) -> dict:
        return {"remove_unused_columns": False} if self.config.distill.teacher else {}

    def compute_metrics(self, prediction):
        probs = softmax(prediction.predictions)
        return scalar_metrics(classification_metrics(probs, prediction.label_ids, self.labels,
                                                     positive=self.positive if self.binary else None))

    def before_training(self, model, args) -> None:
        config, labels = self.config, self.labels
        self.weights = None
        if config.class_weighting != "none":
            train_labels = [r["label"] for r in self.train_records]
            counts = Counter(train_labels)
            self.weights = mean_one_weights(class_weights(train_labels, labels, config.class_weighting),
                                            [counts[label] for label in labels])
            log.info("class weights (%s, mean 1 over the training texts): %s", config.class_weighting,
                     dict(zip(labels, np.round(self.weights.tolist(), 3))))
        if not config.distill.teacher:
            self.train_features = self.encode(self.train_records)
            return
        with runner.main_process_first(config):  # rank 0 computes (or loads) the teacher logits, the others load them
            soft = soft_targets(teacher_logits(config, self.run_dir, labels, [r["text"] for r in self.train_records]),
                                config.distill.temperature)
        log.info("distilling from %s: temperature %s, alpha %s (soft loss weight)", config.distill.teacher,
                 config.distill.temperature, config.distill.alpha)
        self.train_features = [{**f, "teacher_probs": p.tolist()} for f, p in zip(self.encode(self.train_records), soft)]

    def trainer_parts(self, model, args) -> dict:
        distill = self.config.distill
        loss = (dict(distill_loss=distillation_loss(self.weights, float(distill.temperature), float(distill.alpha)))
                if distill.teacher else dict(compute_loss_func=weighted_loss(self.weights)))
        return dict(train_dataset=ListDataset(self.train_features),
                    eval_dataset=ListDataset(self.encode(self.validation_records)),
                    data_collator=DataCollatorWithPadding(self.tokenizer), compute_metrics=self.compute_metrics, **loss)

    def eval_features(self):
        return self.encode(self.validation_records), self.encode(self.test_records) if self.test_records else None

    def results(self, trainer, predictions, train_seconds):
        config, labels, positive, binary = self.config, self.labels, self.positive, self.binary
        validation_probs, test_probs, test_seconds = predictions
        validation_probs = softmax(validation_probs)
        test_probs = softmax(test_probs) if test_probs is not None else None
        validation_gold = np.array([self.index[r["label"]] for r in self.validation_records])
        test_records = self.test_records
        threshold, tuning, points = None, None, None
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
                points = operating_points(validation_probs[:, positive_index], gold01)
                log.info("operating points on validation: %s", points)
        validation_scores = classification_metrics(validation_probs, validation_gold, labels, threshold=threshold,
                                                   positive=positive if binary else None)
        results = {
            "task": self.task.name, "run": config.name, "labels": labels, "global_step": trainer.state.global_step,
            "best_checkpoint": trainer.state.best_model_checkpoint, "train_seconds": round(train_seconds, 1),
            "train_texts_per_second": round(len(self.train_records) * (trainer.state.epoch or 0)
                                            / max(train_seconds, 1e-9), 1),
            "threshold": threshold, "threshold_tuning": tuning, "operating_points": points,
            "validation": validation_scores,
        }
        if test_records:
            results["inference_texts_per_second"] = round(len(test_records) / max(test_seconds, 1e-9), 1)
            test_gold = np.array([self.index[r["label"]] for r in test_records])
            results["test"] = classification_metrics(test_probs, test_gold, labels, threshold=threshold,
                                                     positive=positive if binary else None)
            if binary:
                results["test_at_0.5"] = scalar_metrics(classification_metrics(test_probs, test_gold, labels,
                                                                               threshold=0.5, positive=positive))
            write_jsonl(self.run_dir / "test_predictions.jsonl", (
                {"text": r["text"], "gold": r["label"], "predicted": decide_label(p, labels, threshold, positive),
                 "probabilities": {l: round(float(x), 5) for l, x in zip(labels, p)}}
                for r, p in zip(test_records, test_probs)
            ))
            log.info("test %s: %.4f", self.task.main_metric, results["test"][self.task.main_metric])
        fields = dict(
            labels=labels, positive_label=positive, threshold=threshold, operating_points=points,
            threshold_objective=config.options.get("threshold_objective", "f1") if tuning else None,
            distilled_from=[str(p) for p in teacher_dirs(config)] if config.distill.teacher else None,
            metrics={"validation": scalar_metrics(validation_scores), "test": scalar_metrics(results.get("test", {}))},
            data_grade=config.options.get("data_grade", "real"),
        )
        return results, fields
