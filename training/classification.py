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
    BertConfig,
    DataCollatorWithPadding,
)

from tagsmith.classification import class_weights, classification_metrics, operating_points, tune_threshold
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
        keep = config.model.keep_layers
        if keep:
            layers = AutoConfig.from_pretrained(path).num_hidden_layers
            if keep > layers:
                raise runner.RunDirError(f"model.keep_layers {keep}: {config.model.name_or_path} has only {layers} layers")
            maps["num_hidden_layers"] = keep  # the first `keep` layers' weights load; the rest are never built
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


# --- the loss (every task's compute_loss_func) ---------------------------------------------------------------


def mean_one_weights(weights, counts) -> torch.Tensor:
    """Class ``weights`` rescaled so that the training items' mean weight is 1 (``counts[i]`` items of class ``i``).

    Balanced weights (``n / (k * n_c)``) already are when every class occurs; square-root weights, or balanced ones
    with a class absent from the training data, are not. With mean 1 the sum of the weights of a randomly drawn batch
    is, on average, its number of items: the normaliser :func:`weighted_loss` divides by."""
    weights = torch.as_tensor(weights, dtype=torch.float32)
    counts = torch.as_tensor(counts, dtype=torch.float64)
    mean = float((counts * weights.double()).sum() / counts.sum().clamp(min=1))
    return weights / mean if mean > 0 else weights


def labelled_items(labels: torch.Tensor, num_items_in_batch=None, expected_items: float | None = None):
    """The normaliser of a summed loss: see :func:`weighted_loss`."""
    if expected_items is not None and torch.is_grad_enabled():
        return expected_items
    if num_items_in_batch is None:
        return (labels != -100).sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        return num_items_in_batch.to(labels.device).clamp(min=1)
    return max(num_items_in_batch, 1)


def summed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Class-weighted cross-entropy summed over the labelled items (``-100`` = no label), in fp32."""
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
        weight=weights.to(logits.device) if weights is not None else None, ignore_index=-100, reduction="sum")


def weighted_loss(weights: torch.Tensor | None = None, expected_items: float | None = None):
    """The Trainer's ``compute_loss_func`` for every classifier and tagger: cross-entropy of sequence logits
    ``(batch, labels)`` or token logits ``(batch, tokens, labels)``, class-weighted when ``weights`` is given,
    summed over the labelled items and divided by the number of labelled items of the whole global batch.

    **Why that normaliser.** transformers 4.57 treats a ``compute_loss_func`` as a loss already divided by the items of
    the global batch: it passes ``num_items_in_batch`` (the labelled items of all gradient-accumulation micro-batches,
    summed over the processes when ``average_tokens_across_devices``, the default), does not divide the step's loss by
    the accumulation steps, and multiplies it by the process count (DDP then averages the gradients). A per-batch mean
    is therefore counted once per micro-batch and once per process: its scale, and with it what gradient clipping
    does, changed with the cluster layout. Summed and divided by ``num_items_in_batch``, every item weighs the same in
    batch 32, 16 x accumulation 2, or 2 processes x 16 (``tests/test_loss_scale.py``).

    **The class weights.** torch's weighted mean (``cross_entropy(weight=...)``) divides by the sum of the weights of
    the batch's items. Its global counterpart, the weights' sum over the global batch, would take a pass over every
    micro-batch's labels and a gather before the first backward; more to the point, dividing by any batch's own weight
    sum makes an item's gradient depend on its batch-mates: with 1% positives and balanced weights (50 and 0.5), one
    positive in a batch of 32 multiplies the normaliser by four, so it shrinks its own gradient and that of the 31
    others, which undoes much of the weighting (and the step is a ratio of sums, a biased estimate of the weighted
    mean over the data). Here the weights are rescaled to a mean of 1 over the training items
    (:func:`mean_one_weights`), so the item count is the expected weight sum of a randomly drawn batch: the loss is on
    the scale of the weighted mean, each item's weight is ``w_class / items`` whatever else is in its batch, and a step
    is an unbiased estimate of the weighted mean over the training data. It needs no communication beyond the count
    the Trainer gathers anyway.

    ``expected_items`` (tagging with length-grouped batches, ``trainer.group_by_length``): a training step divides by
    this constant instead, the labelled tokens a randomly drawn batch holds on average, in ``num_items_in_batch``'s
    units (:func:`training.tagging.expected_batch_items`). A batch of short windows holds a tenth of the tokens of a
    batch of long ones; dividing each batch by its own count would weigh every token of a short window (mostly verse
    lines) ten times as much as a token of a long one (mostly prose). With the constant each token weighs what it
    weighs in random batches. Evaluation (no gradient) keeps the batch's count, so eval_loss stays a mean; a direct call
    without ``num_items_in_batch`` divides by its own batch's labelled items.
    """

    def compute(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        return summed_cross_entropy(logits, labels, weights) / labelled_items(labels, num_items_in_batch, expected_items)

    return compute


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
    import json

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
        info = json.loads((teacher / "tagsmith.json").read_text(encoding="utf-8"))
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
        train_labels = [r["label"] for r in train_records]
        counts = Counter(train_labels)
        weights = mean_one_weights(class_weights(train_labels, labels, config.class_weighting),
                                   [counts[label] for label in labels])
        log.info("class weights (%s, mean 1 over the training texts): %s", config.class_weighting,
                 dict(zip(labels, np.round(weights.tolist(), 3))))
    stopper = runner.StopOnSignalCallback()
    common = dict(model=model, eval_dataset=ListDataset(encode(validation_records)),
                  data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics,
                  callbacks=runner.standard_callbacks(config, stopper))
    if config.distill.teacher:
        with runner.main_process_first(config):  # rank 0 computes (or loads) the teacher logits, the others load them
            soft = soft_targets(teacher_logits(config, run_dir, labels, [r["text"] for r in train_records]),
                                config.distill.temperature)
        log.info("distilling from %s: temperature %s, alpha %s (soft loss weight)", config.distill.teacher,
                 config.distill.temperature, config.distill.alpha)
        train_features = [{**f, "teacher_probs": p.tolist()} for f, p in zip(encode(train_records), soft)]
        trainer = DistillationTrainer(
            args=runner.training_arguments(config, run_dir, task.main_metric, {"remove_unused_columns": False}),
            train_dataset=ListDataset(train_features),
            distill_loss=distillation_loss(weights, float(config.distill.temperature), float(config.distill.alpha)),
            **common)
    else:
        trainer = runner.Trainer(
            args=runner.training_arguments(config, run_dir, task.main_metric, {}),
            train_dataset=ListDataset(encode(train_records)),
            compute_loss_func=weighted_loss(weights), **common)
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
        "task": task.name, "run": config.name, "labels": labels, "global_step": trainer.state.global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint, "train_seconds": round(train_seconds, 1),
        "train_texts_per_second": round(len(train_records) * (trainer.state.epoch or 0) / max(train_seconds, 1e-9), 1),
        "threshold": threshold, "threshold_tuning": tuning, "operating_points": points, "validation": validation_scores,
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
        config, labels=labels, positive_label=positive, threshold=threshold, operating_points=points,
        threshold_objective=config.options.get("threshold_objective", "f1") if tuning else None,
        distilled_from=[str(p) for p in teacher_dirs(config)] if config.distill.teacher else None,
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
