"""Training a character tagger (segmentation, punctuation) with the Hugging Face Trainer."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, DataCollatorForTokenClassification

from tagsmith.config import ExperimentConfig
from tagsmith.compact import TaggingCorpus, load_tagging_splits
from tagsmith.records import write_jsonl
from tagsmith.tasks import get_task
from tagsmith.windows import bias_indices
from training import runner
from training.classification import mean_one_weights, weighted_loss  # one loss for every task
from training.datasets import ListDataset, eval_indices, scalar_metrics, train_record_indices
from training.features import (CharDropoutCollator, CharIdsUnavailable, CompactWindows, decode, encode_windows,
                               merge_logits)
from training.model import build_tagging_model
from training.tokenizer import build_char_tokenizer, load_tokenizer, resolve_model_path

log = runner.log
BIAS_GRID = np.round(np.arange(-2.0, 6.01, 0.25), 2)


def make_tokenizer(config: ExperimentConfig, run_dir: Path, texts: list[str]):
    if config.model.name_or_path:
        return load_tokenizer(resolve_model_path(config.model.name_or_path))
    saved = run_dir / "tokenizer"
    if (saved / "tokenizer.json").is_file():  # resume: the vocabulary must not change
        return load_tokenizer(saved)
    scratch = config.model.scratch
    tokenizer = build_char_tokenizer(texts, saved, scratch.min_char_count, scratch.max_vocab_size)
    tokenizer.save_pretrained(saved)
    log.info("built a character vocabulary of %d tokens from the training data", len(tokenizer))
    return tokenizer


def scratch_encoder_config(config: ExperimentConfig, tokenizer) -> BertConfig:
    s = config.model.scratch
    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=s.hidden_size,
        num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads,
        intermediate_size=s.intermediate_size,
        max_position_embeddings=max(s.max_position_embeddings, config.max_length),
        hidden_dropout_prob=s.hidden_dropout_prob,
        attention_probs_dropout_prob=s.attention_probs_dropout_prob,
        pad_token_id=tokenizer.pad_token_id,
    )


def label_weights(config: ExperimentConfig, labels: tuple[str, ...], counts: np.ndarray) -> torch.Tensor | None:
    """Class weights from the training characters per label (``counts[i]`` for ``labels[i]``), rescaled to a mean of
    1 over the training characters (:func:`training.classification.mean_one_weights`, the scale
    :func:`training.classification.weighted_loss` assumes). A label with no training character gets a weight as if it
    had one (a punctuation mark a corpus never uses), where ``tagsmith.classification.class_weights`` would refuse."""
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


def train_tagging(config: ExperimentConfig, resume: bool = False, overwrite: bool = False) -> int:
    task = get_task(config.task)
    corpora, loaded = load_splits(config, task)
    if "train" not in corpora or "validation" not in corpora:
        raise runner.RunDirError(f"{config.name}: data.train and data.validation are required for {task.name}")
    run_dir = runner.prepare_run_dir(config, resume, overwrite)
    runner.setup_logging(run_dir)
    log.info("run %s: task %s, run dir %s", config.name, task.name, run_dir)
    for line in loaded:
        log.info(line)

    train_corpus = corpora["train"]
    train_indices = train_record_indices(config, train_corpus.field_values("kind"),
                                         train_corpus.field_values("collection"), train_corpus.lengths)
    validation_records = corpora["validation"].records(eval_indices(config, len(corpora["validation"])))
    test_corpus = corpora.get("test")
    test_records = test_corpus.records(eval_indices(config, len(test_corpus))) if test_corpus is not None else []
    with runner.main_process_first(config):  # rank 0 builds and saves the vocabulary, the other ranks load it
        tokenizer = make_tokenizer(config, run_dir, train_corpus.texts())
    label_index = {label: i for i, label in enumerate(task.labels)}

    def windows(records):
        ids = [[label_index[l] for l in r["labels"]] for r in records]
        return encode_windows([r["text"] for r in records], tokenizer, config.max_length, config.window_overlap, ids)

    train_dataset = train_windows_dataset(config, train_corpus, train_indices, tokenizer, label_index)
    validation_windows = windows(validation_records)
    log.info("windows: train %d, validation %d (max_length %d, overlap %d)",
             len(train_dataset), len(validation_windows.features), config.max_length, config.window_overlap)

    pretrained = resolve_model_path(config.model.name_or_path) if config.model.name_or_path else None
    encoder_config = None if pretrained else scratch_encoder_config(config, tokenizer)
    model = build_tagging_model(list(task.labels), config.model.head, encoder_config, pretrained)
    log.info("model: %s head, %.2fM parameters", config.model.head.type, sum(p.numel() for p in model.parameters()) / 1e6)

    validation_gold = [r["labels"] for r in validation_records]

    def compute_metrics(prediction):
        logits = prediction.predictions
        if len(logits) != len(validation_windows.features):  # another eval set: score windows as they are
            return {}
        predicted = [decode(lg, task.labels) for lg in merge_logits(validation_windows, logits)]
        return scalar_metrics(task.score(validation_gold, predicted))

    stopper = runner.StopOnSignalCallback()
    copies = np.bincount(train_indices, minlength=len(train_corpus))
    weights = label_weights(config, task.labels, train_corpus.label_counts(copies))
    arguments = runner.training_arguments(config, run_dir, task.main_metric, {})
    expected = expected_batch_items(labelled_per_window(train_dataset), arguments) if arguments.group_by_length else None
    if expected is not None:
        log.info("length-grouped batches: the training loss is divided by %.0f labelled tokens a batch "
                 "(the mean of random batches), not by each batch's own count", expected)
    collator = DataCollatorForTokenClassification(tokenizer)
    char_dropout = float(config.options.get("char_dropout", 0.0))
    if char_dropout:
        log.info("character dropout: %.0f%% of the labelled characters of a training batch read as %s",
                 100 * char_dropout, tokenizer.unk_token)
    trainer = runner.Trainer(
        model=model,
        args=arguments,
        train_dataset=train_dataset,
        eval_dataset=ListDataset(validation_windows.features),
        data_collator=collator,
        train_data_collator=CharDropoutCollator(collator, tokenizer.unk_token_id, char_dropout) if char_dropout else None,
        compute_metrics=compute_metrics,
        # always our loss: the CNN head's own is a per-batch mean, which the Trainer (its forward takes **kwargs)
        # would neither divide by the accumulation steps nor leave unmultiplied by the process count
        compute_loss_func=weighted_loss(weights, expected),
        callbacks=runner.standard_callbacks(config, stopper),
    )
    train_seconds = runner.train_until_done_or_signal(trainer, run_dir, resume, stopper)
    if train_seconds is None:
        return runner.EXIT_REQUEUE
    trainer.compute_metrics = None  # from here on predictions are scored below, per merged text
    # every rank takes part in predict() (it gathers across processes); only rank 0 writes
    validation_predictions = trainer.predict(ListDataset(validation_windows.features)).predictions
    test_windows = windows(test_records) if test_records else None
    started = time.time()
    test_predictions = trainer.predict(ListDataset(test_windows.features)).predictions if test_records else None
    test_seconds = time.time() - started
    if not trainer.is_world_process_zero():
        return 0
    validation_logits = merge_logits(validation_windows, validation_predictions)
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

    results = {
        "task": task.name,
        "run": config.name,
        "global_step": trainer.state.global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "train_seconds": round(train_seconds, 1),
        "train_chars_per_second": round(
            int(train_corpus.lengths[train_indices].sum()) * (trainer.state.epoch or 0) / max(train_seconds, 1e-9), 1
        ),
        "characters_seen": int(trainer.state.global_step * labelled_per_window(train_dataset)
                               * arguments.train_batch_size * arguments.gradient_accumulation_steps * arguments.world_size),
        "decision_bias": bias,
        "validation": validation_scores,
    }
    if test_records:
        test_logits = merge_logits(test_windows, test_predictions)
        seconds = test_seconds
        gold = [r["labels"] for r in test_records]
        predicted = [decode(l, task.labels, bias_ids, bias) for l in test_logits]
        results["test"] = task.score(gold, predicted)
        results["test_without_bias"] = scalar_metrics(task.score(gold, [decode(l, task.labels) for l in test_logits]))
        results["inference_chars_per_second"] = round(sum(len(r["text"]) for r in test_records) / max(seconds, 1e-9), 1)
        write_jsonl(run_dir / "test_predictions.jsonl", (
            {"text": r["text"], "gold": r["labels"], "predicted": p, "output": task.render(r["text"], p),
             "gold_output": task.render(r["text"], r["labels"])}
            for r, p in zip(test_records, predicted)
        ))
        log.info("test %s: %s", task.main_metric, round(results["test"][task.main_metric], 4))
    results["config"] = config.to_dict()

    best = run_dir / "best"
    trainer.save_model(str(best))
    tokenizer.save_pretrained(str(best))
    runner.write_json(best / "tagsmith.json", runner.manifest(
        config, labels=list(task.labels), bias_labels=list(task.bias_labels), decision_bias=bias,
        metrics={"validation": scalar_metrics(validation_scores), "test": scalar_metrics(results.get("test", {}))},
    ))
    runner.write_json(run_dir / "results.json", results)
    runner.plot_curves(trainer.state.log_history, task.main_metric, run_dir / "curves.png")
    log.info("done: best model in %s, results in %s", best, run_dir / "results.json")
    return 0
