"""Experiment configuration: one YAML file per experiment, loaded into dataclasses, overridable per key.

Keys under ``trainer:`` go to Hugging Face ``TrainingArguments`` unchanged (their own names), so everything
the Trainer can do is configurable without code here.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    pass


@dataclass
class DataConfig:
    #: training records: one file, or (tagging) a list of files read as one split, e.g. two recipes' records
    train: str | list[str] | None = None
    validation: str | None = None
    test: str | None = None
    #: plain-text / JSONL files for mlm (a list), in addition to or instead of train
    files: list[str] = field(default_factory=list)
    #: script of the data ("keep", "simplified", "traditional"); inference converts input to it
    script: str = "keep"
    #: repeat records whose ``kind`` field matches, e.g. {"prose": 3}, to up-weight rare, richer text
    oversample: dict[str, int] = field(default_factory=dict)
    #: cap on training records after oversampling (0 = all), sampled with the seed; for quick configs
    max_train_records: int = 0
    max_eval_records: int = 0
    #: tagging: leave out records of these kinds in every split (e.g. [vernacular]: the 白话 novels)
    exclude_kinds: list[str] = field(default_factory=list)
    #: keep at most about this many training characters of each collection (book), a seeded random choice of
    #: its records (0 = all): the largest books do not drown the others
    max_train_chars_per_collection: int = 0


@dataclass
class ScratchModelConfig:
    """A small BERT built from a config, with a character vocabulary built from the training data."""

    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    max_position_embeddings: int = 512
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    min_char_count: int = 2
    max_vocab_size: int = 12000


@dataclass
class HeadConfig:
    #: "linear" (the standard token-classification head) or "cnn" (multi-kernel CNN, SikuBERT scripts)
    type: str = "linear"
    cnn_kernels: list[int] = field(default_factory=lambda: [3, 5, 7])
    cnn_filters: int = 128
    cnn_dropout: float = 0.1


@dataclass
class ModelConfig:
    #: hub id or local path of a pretrained encoder (or an mlm run's best/); None builds from `scratch`
    name_or_path: str | None = None
    scratch: ScratchModelConfig = field(default_factory=ScratchModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    #: classification: keep only the first N encoder layers of the pretrained model (0 = all): a smaller student
    keep_layers: int = 0


@dataclass
class DistillConfig:
    """Knowledge distillation (classification): learn from teacher runs' probabilities as well as the labels."""

    #: a teacher run (its dir or its best/), or a list of runs whose probabilities are averaged (an ensemble);
    #: empty = no distillation
    teacher: str | list[str] | None = None
    #: softens both distributions: the student learns the teacher's relative confidence in the other classes
    temperature: float = 2.0
    #: weight of the soft (teacher) loss; 1 - alpha goes to the class-weighted loss on the gold labels
    alpha: float = 0.5


@dataclass
class ExperimentConfig:
    name: str
    task: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    max_length: int = 128
    #: characters shared by neighbouring windows of a long text
    window_overlap: int = 32
    #: class weights in the loss: "none", "balanced" or "sqrt" (of balanced)
    class_weighting: str = "none"
    #: tune an additive logit bias for the rare labels on validation (tagging) / a threshold (binary)
    tune_decision: bool = True
    early_stopping_patience: int = 3
    output_dir: str = "runs"
    seed: int = 42
    #: passed through to transformers.TrainingArguments
    trainer: dict[str, Any] = field(default_factory=dict)
    #: task-specific extras (e.g. mlm_probability for mlm)
    options: dict[str, Any] = field(default_factory=dict)
    distill: DistillConfig = field(default_factory=DistillConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    kwargs = {}
    for name, value in values.items():
        nested = _nested_type(cls, name)
        kwargs[name] = _build(nested, value, f"{where}.{name}") if nested else value
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None


def _nested_type(cls, name: str):
    return {
        (ExperimentConfig, "data"): DataConfig,
        (ExperimentConfig, "model"): ModelConfig,
        (ModelConfig, "scratch"): ScratchModelConfig,
        (ModelConfig, "head"): HeadConfig,
        (ExperimentConfig, "distill"): DistillConfig,
    }.get((cls, name))


def apply_override(values: dict, assignment: str) -> None:
    """``a.b.c=value`` sets a nested key; the value is parsed as YAML (numbers, booleans, lists)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.path=value")
    path, raw = assignment.split("=", 1)
    keys = path.strip().split(".")
    target = values
    for key in keys[:-1]:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ConfigError(f"override {assignment!r}: {key} is not a mapping")
    target[keys[-1]] = _coerce_number(yaml.safe_load(raw))


_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _coerce_number(value):
    """YAML 1.1 reads ``2e-5`` (no dot) as a string; every learning rate in the wild is written that way."""
    if isinstance(value, str) and _FLOAT.match(value):
        return float(value)
    if isinstance(value, dict):
        return {k: _coerce_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce_number(v) for v in value]
    return value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, values: dict | None = None) -> ExperimentConfig:
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML: {error}") from None
    values = _coerce_number(dict(values or {}))
    for assignment in overrides or []:
        apply_override(values, assignment)
    where = str(path) if path else "config"
    for required in ("name", "task"):
        if required not in values:
            raise ConfigError(f"{where}: missing required key {required!r}")
    config = _build(ExperimentConfig, values, where)
    _check(config, where)
    return config


def _check(config: ExperimentConfig, where: str) -> None:
    from tagsmith.convert import SCRIPTS

    if config.data.script not in SCRIPTS:
        raise ConfigError(f"{where}: data.script must be one of {', '.join(SCRIPTS)}")
    if config.model.head.type not in ("linear", "cnn"):
        raise ConfigError(f"{where}: model.head.type must be 'linear' or 'cnn', got {config.model.head.type!r}")
    if config.class_weighting not in ("none", "balanced", "sqrt"):
        raise ConfigError(f"{where}: class_weighting must be none, balanced or sqrt")
    if config.max_length < 8:
        raise ConfigError(f"{where}: max_length must be at least 8")
    if not isinstance(config.data.oversample, dict):
        raise ConfigError(f"{where}: data.oversample must map a record kind or collection to a whole number of copies")
    for kind, copies in config.data.oversample.items():
        # a fraction would be truncated (0.5 -> 0 copies): training must never silently drop a kind of record
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise ConfigError(f"{where}: data.oversample.{kind} must be a whole number of copies >= 1, got {copies!r}"
                              " (records are repeated, never dropped; cap the total with data.max_train_records)")
    from tagsmith.tasks import TASKS

    tagging = getattr(TASKS.get(config.task), "kind", None) == "tagging"
    train = config.data.train
    if isinstance(train, list) and not (tagging and train and all(isinstance(p, str) for p in train)):
        raise ConfigError(f"{where}: data.train must be one file" + (" or a non-empty list of files" if tagging else
                          f" for {config.task} (a list of files is read for tagging tasks; mlm takes data.files)"))
    if not isinstance(config.data.exclude_kinds, list) or not all(isinstance(k, str) for k in config.data.exclude_kinds):
        raise ConfigError(f"{where}: data.exclude_kinds must be a list of record kinds, got {config.data.exclude_kinds!r}")
    cap = config.data.max_train_chars_per_collection
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise ConfigError(f"{where}: data.max_train_chars_per_collection must be a whole number >= 0, got {cap!r}")
    if config.task == "mlm" and config.trainer.get("group_by_length"):
        # the masked-LM loss is a per-batch mean over masked tokens: grouped batches of short blocks would weigh
        # each of their tokens several times a token of full-length blocks (the tagging loss corrects for this)
        raise ConfigError(f"{where}: trainer.group_by_length is not supported for mlm (it would over-weight short "
                          "blocks in the loss); blocks are cut to max_length, so most batches are full anyway")
    dropout = config.options.get("char_dropout", 0.0)
    if tagging and (isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 0.5):
        raise ConfigError(f"{where}: options.char_dropout must be a number in [0, 0.5), got {dropout!r}")
    keep = config.model.keep_layers
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ConfigError(f"{where}: model.keep_layers must be a whole number >= 0 (0 = every layer), got {keep!r}")
    distill = config.distill
    if distill.teacher:
        teachers = distill.teacher if isinstance(distill.teacher, list) else [distill.teacher]
        if getattr(TASKS.get(config.task), "kind", None) != "classification":
            raise ConfigError(f"{where}: distill.teacher is for classification tasks, not {config.task}")
        if not all(isinstance(t, str) and t for t in teachers):
            raise ConfigError(f"{where}: distill.teacher must be a run dir or a list of them, got {distill.teacher!r}")
        if isinstance(distill.temperature, bool) or not isinstance(distill.temperature, (int, float)) or distill.temperature <= 0:
            raise ConfigError(f"{where}: distill.temperature must be a number > 0, got {distill.temperature!r}")
        if isinstance(distill.alpha, bool) or not isinstance(distill.alpha, (int, float)) or not 0 <= distill.alpha <= 1:
            raise ConfigError(f"{where}: distill.alpha must be a number in [0, 1], got {distill.alpha!r}")
    if tagging and not 0 <= config.window_overlap < config.max_length - 2:
        raise ConfigError(f"{where}: window_overlap must be in [0, max_length - 2)")


def dump_config(config: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), allow_unicode=True, sort_keys=False), encoding="utf-8")
