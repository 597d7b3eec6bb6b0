"""Experiment configuration: one YAML file per experiment, loaded into dataclasses, overridable per key.

The dataclasses below are the one schema: every key's type, default and help text (``key(...)``), and the allowed
values of a string where there is a fixed set (``choices``). ``load_config`` checks a config against it before anything
runs (wrong types, unknown keys with the nearest valid one, choices, ranges) and raises ``ConfigError`` with one line:
``FILE: key.path: what is wrong``. ``tagsmith train --list-keys`` and docs/config.md (``python -m tagsmith.config
--markdown``) are printed from it.

``options:`` is typed per task kind (``TaggingOptions``, ``ClassificationOptions``, ``MlmOptions``, each with the
``CommonOptions``); after loading, ``config.options`` is a plain dict holding every option of the task's kind, the
defaults filled in. Keys under ``trainer:`` go to Hugging Face ``TrainingArguments`` unchanged (their own names), so
everything the Trainer can do is configurable without code here; a name ``TrainingArguments`` lacks is refused at load
time, read from the installed transformers' source so that loading a config never imports torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import re
import sys
import types
import typing
from dataclasses import MISSING, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tagsmith.convert import SCRIPTS
from tagsmith.tasks import TASKS


class ConfigError(ValueError):
    """A config that cannot run; the message is one line: ``FILE: key.path: what is wrong``."""


def key(default: Any = MISSING, help: str = "", *, factory: Any = MISSING, choices: Any = None, range: str | None = None,
        kind: str | None = None):
    """A schema field: its default (``factory`` for lists, mappings and sections), one line of help, for a string the
    allowed values (``choices``: a tuple, or a function returning one where the set is known only at run time), for a
    number the allowed interval (``range``: ``"[0, 0.5)"``, ``"(0, inf)"``)."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = choices
    if range is not None:
        metadata["range"] = _interval(range)
    if kind is not None:
        metadata["kind"] = kind  # "options" / "trainer": checked by their own rules (per task kind / TrainingArguments)
    return field(default=default, default_factory=factory, metadata=metadata)


@dataclass(frozen=True)
class _Interval:
    low: float
    high: float
    closed_low: bool
    closed_high: bool

    def __contains__(self, value) -> bool:
        return ((self.low <= value if self.closed_low else self.low < value)
                and (value <= self.high if self.closed_high else value < self.high))

    def __str__(self) -> str:
        if self.high == float("inf"):
            return f"{'>=' if self.closed_low else '>'} {self.low:g}"
        return f"in {'[' if self.closed_low else '('}{self.low:g}, {self.high:g}{']' if self.closed_high else ')'}"


def _interval(text: str) -> _Interval:
    match = re.fullmatch(r"([\[(])\s*([-+.\w]+)\s*,\s*([-+.\w]+)\s*([\])])", text)
    if not match:
        raise ValueError(f"range {text!r} must look like [0, 1) or (0, inf)")
    return _Interval(float(match[2]), float(match[3]), match[1] == "[", match[4] == "]")


@dataclass
class DataConfig:
    """Where the records are and which of them train."""

    train: str | list[str] | None = key(None, "training records: one file, or (tagging) a list of files read as one split")
    validation: str | None = key(None, "validation records (early stopping, decision tuning); mlm: held-out texts, "
                                       "else a fraction of the training texts (options.validation_fraction)")
    test: str | None = key(None, "test records, scored once after training; null = no test")
    files: list[str] = key(help="mlm: plain-text / JSONL files to pretrain on, in addition to or instead of data.train",
                           factory=list)
    script: str = key("keep", "script of the data; inference converts its input to it (OpenCC)", choices=SCRIPTS)
    oversample: dict[str, int] = key(help="repeat records of a kind or a collection this many times, e.g. {prose: 3} "
                                          "(a collection's factor first)", factory=dict)
    max_train_records: int = key(0, "cap on training records after oversampling (mlm: blocks), a seeded sample; 0 = all",
                                 range="[0, inf)")
    max_eval_records: int = key(0, "cap on validation and test records (mlm: held-out blocks), a seeded sample; 0 = all",
                                range="[0, inf)")
    exclude_kinds: list[str] = key(help="tagging: leave out records of these kinds in every split, e.g. [vernacular]",
                                   factory=list)
    max_train_chars_per_collection: int = key(0, "tagging: keep about this many training characters of each collection "
                                                 "(book), a seeded choice of its records; 0 = all",
                                              range="[0, inf)")


@dataclass
class ScratchModelConfig:
    """A small BERT built from these sizes when model.name_or_path is null, its vocabulary built from the training data."""

    hidden_size: int = key(256, "width of the hidden states")
    num_hidden_layers: int = key(4, "transformer layers")
    num_attention_heads: int = key(4, "attention heads a layer (hidden_size must divide by it)")
    intermediate_size: int = key(1024, "width of each layer's feed-forward block")
    max_position_embeddings: int = key(512, "position embeddings (raised to max_length where that is longer)")
    hidden_dropout_prob: float = key(0.1, "dropout on the hidden states")
    attention_probs_dropout_prob: float = key(0.1, "dropout on the attention weights")
    min_char_count: int = key(2, "character vocabulary: keep characters seen at least this often in the training data")
    max_vocab_size: int = key(12000, "largest vocabulary built (characters or WordPiece)")


@dataclass
class HeadConfig:
    """The tagging head on top of the encoder."""

    type: str = key("linear", "linear (the standard token-classification head) or cnn (multi-kernel CNN, as the SikuBERT "
                              "scripts)", choices=("linear", "cnn"))
    cnn_kernels: list[int] = key(help="cnn: widths of the parallel convolutions", factory=lambda: [3, 5, 7])
    cnn_filters: int = key(128, "cnn: filters per kernel width")
    cnn_dropout: float = key(0.1, "cnn: dropout on the convolutions' output")


@dataclass
class ModelConfig:
    """The encoder: a pretrained one, or a small BERT from scratch."""

    name_or_path: str | None = key(None, "hub id, local path or package:NAME of a pretrained encoder (or an mlm run's "
                                         "best/); null builds model.scratch")
    scratch: ScratchModelConfig = key(help="sizes of the BERT built from scratch", factory=ScratchModelConfig)
    head: HeadConfig = key(help="the tagging head", factory=HeadConfig)
    keep_layers: int = key(0, "classification: keep only the first N encoder layers of the pretrained model (a smaller "
                              "student); 0 = all", range="[0, inf)")


@dataclass
class DistillConfig:
    """Knowledge distillation (classification): learn from teacher runs' probabilities as well as the labels."""

    teacher: str | list[str] | None = key(None, "a teacher run (its dir or its best/), or a list of runs whose "
                                                "probabilities are averaged; null = no distillation")
    temperature: float = key(2.0, "softens both distributions: the student learns the teacher's relative confidence "
                                  "in the other classes", range="(0, inf)")
    alpha: float = key(0.5, "weight of the soft (teacher) loss; 1 - alpha goes to the class-weighted loss on the labels",
                          range="[0, 1]")


@dataclass
class CommonOptions:
    """Options of every task."""

    max_minutes: float | None = key(None, "stop cleanly (evaluate, save, finish the run) after this many minutes of "
                                          "training; null = no limit", range="(0, inf)")


@dataclass
class TaggingOptions(CommonOptions):
    """Options of the tagging tasks."""

    char_dropout: float = key(0.0, "share of the labelled characters of a training batch read as [UNK], labels kept",
                                  range="[0, 0.5)")
    tune_on_kind: str | None = key(None, "tune the decision bias on validation records of this kind (e.g. prose); "
                                         "null = all")
    tune_on_collections: list[str] | None = key(None, "tune the decision bias on validation records of these "
                                                      "collections (within tune_on_kind); null = all")


@dataclass
class ClassificationOptions(CommonOptions):
    """Options of the classification tasks."""

    labels: list[str] | None = key(None, "the label set, in this order; null = the task's own, else the labels seen in "
                                         "training")
    threshold_objective: str = key("f1", "binary: what the tuned threshold maximises: f1 (of the positive class), "
                                         "macro_f1, or recall (with target_recall)", choices=("f1", "macro_f1", "recall"))
    target_recall: float | None = key(None, "binary: tune the highest threshold whose validation recall is at least "
                                            "this; null = off", range="(0, 1]")
    data_grade: str = key("real", "written into the model manifest and shown on the demo page: real, or demo "
                                  "(generated records)", choices=("real", "demo"))


@dataclass
class MlmOptions(CommonOptions):
    """Options of masked-LM pretraining."""

    mlm_probability: float = key(0.15, "share of the tokens masked", range="(0, 1)")
    validation_fraction: float = key(0.05, "share of the texts held out when data.validation is not given",
                                     range="(0, 1)")
    whole_word_mask: bool | str = key("auto", "mask whole words (true) or single tokens (false); auto: whole words where "
                                              "the tokenizer has WordPiece pieces and the text has spaces",
                                      choices=("auto",))
    scratch_tokenizer: str = key("char", "vocabulary built for a scratch model: char (a token a character) or "
                                         "wordpiece", choices=("char", "wordpiece"))
    head_warmup_steps: int | str = key("auto", "steps that train only the masked-LM head before adaptation; auto = 200 "
                                               "where the checkpoint has no masked-LM head, else 0", choices=("auto",),
                                      range="[0, inf)")
    head_warmup_learning_rate: float = key(1e-3, "learning rate of the head warm-up", range="(0, inf)")
    score_masked_only: bool = key(True, "compute vocabulary logits at the masked positions only (same loss, faster)")


#: the options of each task kind (tagsmith.tasks: a task's ``kind``); a kind not named here takes CommonOptions
OPTIONS: dict[str, type] = {"tagging": TaggingOptions, "classification": ClassificationOptions, "mlm": MlmOptions}


@dataclass
class ExperimentConfig:
    name: str = key(help="the run's name: the run dir is output_dir/name")
    task: str = key(help="what is trained: a task of tagsmith.tasks", choices=lambda: tuple(TASKS))
    data: DataConfig = key(help="the records", factory=DataConfig)
    model: ModelConfig = key(help="the encoder and its head", factory=ModelConfig)
    max_length: int = key(128, "tokens a window (tagging), a text (classification) or a block (mlm)", range="[8, inf)")
    window_overlap: int = key(32, "tagging: characters shared by neighbouring windows of a long text")
    class_weighting: str = key("none", "class weights in the loss: none, balanced, or sqrt (of balanced)",
                               choices=("none", "balanced", "sqrt"))
    tune_decision: bool = key(True, "tune an additive logit bias for the rare labels (tagging) or the threshold (binary "
                                    "classification) on validation")
    early_stopping_patience: int = key(3, "evaluations without improvement before training stops")
    output_dir: str = key("runs", "where run dirs are made")
    seed: int = key(42, "seed of sampling, shuffling and initialisation")
    trainer: dict[str, Any] = key(help="passed to transformers.TrainingArguments unchanged (its own key names; a name "
                                       "it lacks is refused)", factory=dict, kind="trainer")
    options: dict[str, Any] = key(help="task-specific settings, typed per task kind (the options tables)", factory=dict,
                                  kind="options")
    distill: DistillConfig = key(help="knowledge distillation (classification)", factory=DistillConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def options_schema(task: str) -> type:
    """The options dataclass of a task's kind."""
    return OPTIONS.get(getattr(TASKS.get(task), "kind", None), CommonOptions)


class _Problem(Exception):
    """What is wrong at one key path; load_config adds the file name."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


@lru_cache(maxsize=None)
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _members(tp) -> tuple:
    return typing.get_args(tp) if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union else (tp,)


def _choices(choices) -> tuple:
    return tuple(choices()) if callable(choices) else tuple(choices or ())


def _field_type(f, tp) -> str:
    """A field's type with its choices and range: ``{linear, cnn}``, ``float | null, > 0``."""
    bounds = f.metadata.get("range")
    return _type_name(tp, f.metadata.get("choices")) + (f", {bounds}" if bounds else "")


def _type_name(tp, choices=None) -> str:
    """How a type reads in messages, --list-keys and docs/config.md: ``int``, ``list[str] | null``, ``{linear, cnn}``."""
    names = []
    for member in _members(tp):
        origin, args = typing.get_origin(member), typing.get_args(member)
        if member is type(None):
            names.append("null")
        elif member is Any:
            names.append("any")
        elif member is str and choices:
            names.append("{" + ", ".join(map(str, _choices(choices))) + "}")
        elif origin is list:
            names.append(f"list[{_type_name(args[0])}]")
        elif origin is dict:
            names.append(f"mapping[{_type_name(args[0])}, {_type_name(args[1])}]")
        elif dataclasses.is_dataclass(member):
            names.append("mapping")
        else:
            names.append(member.__name__)
    return " | ".join(names)


def _kind(value) -> str:
    """The YAML name of a value's type."""
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__)


def _show(value) -> str:
    """A value as the config would spell it, cut to one short line."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**9).strip()
            text = text.removesuffix("...").strip()
        except yaml.YAMLError:
            text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def _fits(member, value) -> bool:
    """Whether a value has the outer shape of one member of a field's type (items are checked after)."""
    if member is Any:
        return True
    if member is type(None):
        return value is None
    if member is bool:
        return isinstance(value, bool)
    if member is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if member is float:  # a whole number is a number: temperature: 2
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if member is str:
        return isinstance(value, str)
    origin = typing.get_origin(member)
    if origin is list:
        return isinstance(value, list)
    if origin is dict or dataclasses.is_dataclass(member):
        return isinstance(value, dict)
    raise TypeError(f"schema type {member!r} is not supported")


def _nearest(word, candidates, what: str = "valid keys") -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1)
    if close:
        return f"; did you mean {close[0]}?"
    return f"; {what}: {', '.join(map(str, candidates))}" if what else ""


def _validate(tp, value, path: str, choices=None, bounds: _Interval | None = None) -> None:
    """Raise _Problem where ``value`` does not have type ``tp``: a wrong type, an unknown key, a value not in choices
    or out of range."""
    member = next((m for m in _members(tp) if _fits(m, value)), None)
    if member is None:
        hint = ""
        if isinstance(value, str) and any(m in (int, float) for m in _members(tp)):
            try:
                float(value)
                hint = " (write numbers without quotes)"
            except ValueError:
                pass
        raise _Problem(path, f"expected {_type_name(tp, choices)}, got {_kind(value)} {_show(value)}{hint}")
    origin, args = typing.get_origin(member), typing.get_args(member)
    if origin is list:
        for index, item in enumerate(value):
            _validate(args[0], item, f"{path}[{index}]")
    elif origin is dict:
        for name, item in value.items():
            if not isinstance(name, str):
                raise _Problem(f"{path}.{name}", f"keys must be strings, got {_kind(name)} {_show(name)}")
            _validate(args[1], item, f"{path}.{name}")
    elif dataclasses.is_dataclass(member):
        _validate_section(member, value, path)
    elif member is str and choices:
        allowed = _choices(choices)
        if value not in allowed:
            expected = f"one of {', '.join(map(str, allowed))}" if tp is str else _type_name(tp, choices)
            raise _Problem(path, f"expected {expected}, got {_show(value)}" + _nearest(value, allowed, what=""))
    elif member in (int, float) and bounds is not None and value not in bounds:
        raise _Problem(path, f"expected {member.__name__} {bounds}, got {_show(value)}")


def _validate_section(cls, values: dict, path: str) -> None:
    """A mapping against a dataclass: unknown keys first (with the nearest valid one), then missing ones, then types."""
    prefix = f"{path}." if path else ""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in values:
        if name not in fields:
            raise _Problem(f"{prefix}{name}", "unknown key" + _nearest(name, list(fields)))
    for name, f in fields.items():
        if name not in values:
            if f.default is MISSING and f.default_factory is MISSING:
                raise _Problem(f"{prefix}{name}", f"missing required key: {f.metadata['help']}")
            continue
        value, where = values[name], f"{prefix}{name}"
        _validate(_hints(cls)[name], value, where, f.metadata.get("choices"), f.metadata.get("range"))
        if f.metadata.get("kind") == "options":
            _validate_options(values.get("task"), value, where)
        elif f.metadata.get("kind") == "trainer":
            _validate_trainer_keys(value, where)


def _validate_options(task: str, values: dict, path: str) -> None:
    schema = options_schema(task)
    own = [f.name for f in dataclasses.fields(schema)]
    for name in values:
        if name in own:
            continue
        others = [kind for kind, cls in OPTIONS.items() if name in {f.name for f in dataclasses.fields(cls)}]
        kind = getattr(TASKS.get(task), "kind", task)
        if others:
            raise _Problem(f"{path}.{name}", f"not an option of {kind} tasks (it is a {others[0]} option); "
                                             f"{kind} options: {', '.join(own)}")
        raise _Problem(f"{path}.{name}", "unknown key" + _nearest(name, own, what=f"{kind} options"))
    _validate_section(schema, values, path)


@lru_cache(maxsize=None)
def trainer_keys() -> frozenset[str] | None:
    """The argument names of transformers.TrainingArguments, or None where transformers is not installed (or its
    source cannot be read). Read from the source with ``ast`` unless transformers is imported already: importing it
    imports torch, and loading a config must stay torch-free (the serving side loads run configs too)."""
    module = sys.modules.get("transformers.training_args")
    if module is not None:
        return frozenset(f.name for f in dataclasses.fields(module.TrainingArguments) if f.init)
    try:
        spec = importlib.util.find_spec("transformers")  # finds the package without importing it
        source = Path(spec.submodule_search_locations[0]) / "training_args.py"
        import ast

        tree = ast.parse(source.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - not installed, or laid out differently: training checks the names
        return None
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "TrainingArguments":
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    call = statement.value
                    no_init = isinstance(call, ast.Call) and any(
                        k.arg == "init" and isinstance(k.value, ast.Constant) and k.value.value is False
                        for k in call.keywords)
                    if not no_init:
                        names.add(statement.target.id)
    # fewer than a handful: not the class this was written for; TrainingArguments(**trainer) still checks at run start
    return frozenset(names) if len(names) > 20 else None


def _validate_trainer_keys(values: dict, path: str) -> None:
    names = trainer_keys()
    if names is None:
        return
    for name in values:
        if name not in names:
            raise _Problem(f"{path}.{name}", "unknown key: transformers.TrainingArguments has no such argument"
                           + _nearest(name, sorted(names), what=""))


def _build(cls, values: dict):
    """Checked values -> the dataclasses; ``options`` becomes a plain dict of every option of the task's kind."""
    kwargs = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in values:
            value = values[f.name]
            kwargs[f.name] = _build(hints[f.name], value) if dataclasses.is_dataclass(hints[f.name]) else value
        if f.metadata.get("kind") == "options":
            kwargs[f.name] = dataclasses.asdict(_build(options_schema(values["task"]), values.get(f.name, {})))
    return cls(**kwargs)


def apply_override(values: dict, assignment: str) -> None:
    """``a.b.c=value`` sets a nested key; the value is parsed as YAML (numbers, booleans, lists). Whether the key
    and the value are valid is checked afterwards with the whole config (load_config), by the same schema."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment}: must look like key.path=value")
    path, raw = assignment.split("=", 1)
    names = path.strip().split(".")
    target = values
    for depth, name in enumerate(names[:-1]):
        target = target.setdefault(name, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {assignment}: {'.'.join(names[:depth + 1])} is not a mapping")
    try:
        target[names[-1]] = _coerce_number(yaml.safe_load(raw))
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {assignment}: invalid YAML value: {' '.join(str(error).split())}") from None


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
    """Read a config (a YAML file, or ``values``), apply ``--set`` overrides, check everything against the schema."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML: {' '.join(str(error).split())}") from None
    where = str(path) if path is not None else "config"
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys at the top level, got {_kind(values)}")
    values = _coerce_number(dict(values))
    for assignment in overrides or []:
        try:
            apply_override(values, assignment)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
    overridden = [assignment.split("=", 1)[0].strip() for assignment in overrides or []]
    try:
        _validate_section(ExperimentConfig, values, "")
        config = _build(ExperimentConfig, values)
        _check(config)
    except _Problem as problem:
        by_override = any(_within(problem.path, p) or _within(p, problem.path) for p in overridden)
        raise ConfigError(f"{where}: {problem.path}: {problem.message}" + (" (set by --set)" if by_override else "")) from None
    return config


def _within(path: str, outer: str) -> bool:
    return path == outer or path.startswith((f"{outer}.", f"{outer}["))


def _check(config: ExperimentConfig) -> None:
    """What the schema cannot say: combinations of keys (types, unknown keys, choices and ranges are checked with it)."""
    for kind, copies in config.data.oversample.items():
        # a fraction would be truncated (0.5 -> 0 copies): training must never silently drop a kind of record
        if copies < 1:
            raise _Problem(f"data.oversample.{kind}", f"must be a whole number of copies >= 1, got {copies} (records "
                           "are repeated, never dropped; cap the total with data.max_train_records)")
    kind = TASKS[config.task].kind
    tagging = kind == "tagging"
    train = config.data.train
    if isinstance(train, list) and not (tagging and train):
        raise _Problem("data.train", "must be one file" + (" or a non-empty list of files" if tagging else
                       f" for {config.task} (a list of files is read for tagging tasks; mlm takes data.files)"))
    if config.task == "mlm" and config.trainer.get("group_by_length"):
        # the masked-LM loss is a per-batch mean over masked tokens: grouped batches of short blocks would weigh
        # each of their tokens several times a token of full-length blocks (the tagging loss corrects for this)
        raise _Problem("trainer.group_by_length", "not supported for mlm (it would over-weight short blocks in the "
                       "loss); blocks are cut to max_length, so most batches are full anyway")
    distill = config.distill
    if distill.teacher:
        teachers = distill.teacher if isinstance(distill.teacher, list) else [distill.teacher]
        if kind != "classification":
            raise _Problem("distill.teacher", f"is for classification tasks, not {config.task}")
        if not all(teachers):
            raise _Problem("distill.teacher", f"must be a run dir or a list of them, got {_show(distill.teacher)}")
    if tagging and not 0 <= config.window_overlap < config.max_length - 2:
        raise _Problem("window_overlap", f"must be in [0, max_length - 2), got {config.window_overlap} with max_length "
                       f"{config.max_length}")
    options = config.options
    if kind == "classification":
        if options["threshold_objective"] == "recall" and options["target_recall"] is None:
            raise _Problem("options.threshold_objective", "recall needs options.target_recall")
        if options["threshold_objective"] == "macro_f1" and options["target_recall"] is not None:
            raise _Problem("options.target_recall", "cannot be combined with threshold_objective macro_f1")


def dump_config(config: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), allow_unicode=True, sort_keys=False), encoding="utf-8")


# --- the schema, printed: tagsmith train --list-keys, docs/config.md ----------------------------------------------


@dataclass(frozen=True)
class KeyDoc:
    path: str
    type: str
    default: str
    help: str


REQUIRED = "(required)"


def _default(f) -> str:
    if f.default is not MISSING:
        return f.default if isinstance(f.default, str) else _show(f.default)
    if f.default_factory is not MISSING:
        return _show(f.default_factory())
    return REQUIRED


def _rows(cls, prefix: str = "", skip: tuple[str, ...] = ()) -> list[KeyDoc]:
    hints = _hints(cls)
    return [KeyDoc(prefix + f.name, _field_type(f, hints[f.name]), _default(f), f.metadata["help"])
            for f in dataclasses.fields(cls) if f.name not in skip and not dataclasses.is_dataclass(hints[f.name])]


def schema_sections() -> list[tuple[str, str, list[KeyDoc]]]:
    """(title, description, keys) for every section of a config, options per task kind at the end."""
    sections = []

    def walk(cls, path: str, description: str) -> None:
        sections.append((path or "top level", description, _rows(cls, f"{path}." if path else "")))
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{path}.{f.name}" if path else f.name, (hints[f.name].__doc__ or "").strip())

    walk(ExperimentConfig, "", "")
    common = {f.name for f in dataclasses.fields(CommonOptions)}
    sections.append(("options: every task", CommonOptions.__doc__.strip(), _rows(CommonOptions, "options.")))
    for kind, cls in OPTIONS.items():
        tasks = ", ".join(name for name, task in TASKS.items() if getattr(task, "kind", None) == kind)
        sections.append((f"options: {kind} ({tasks})", cls.__doc__.strip(), _rows(cls, "options.", tuple(common))))
    return sections


def format_keys() -> str:
    """Every key, one a line: dotted path, type, default, help (``tagsmith train --list-keys``)."""
    sections = schema_sections()
    rows = [row for _, _, keys in sections for row in keys]
    path_width = max(len(r.path) for r in rows)
    type_width = min(max(len(r.type) for r in rows), 36)
    default_width = min(max(len(r.default) for r in rows), 12)
    lines = [f"{'key':<{path_width}}  {'type':<{type_width}}  {'default':<{default_width}}  help"]
    for title, _, keys in sections:
        lines.append(f"# {title}")
        lines += [f"{r.path:<{path_width}}  {r.type:<{type_width}}  {r.default:<{default_width}}  {r.help}" for r in keys]
    return "\n".join(lines)


def markdown() -> str:
    """docs/config.md."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    out = ["# Experiment config keys", "",
           "Generated from the schema in `tagsmith/config.py` by `make docs-config` (`python -m tagsmith.config "
           "--markdown > docs/config.md`); do not edit by hand. `tagsmith train --list-keys` prints the same list.", "",
           "A config is checked before anything runs, `--set key.path=value` overrides included: a value of the wrong "
           "type (a quoted number, a string where a list belongs, a fraction or a bool where a whole number belongs) and "
           "an unknown key at any level are refused with one line, `FILE: key.path: what is wrong`, naming the nearest "
           "valid key. A whole number is accepted where a number (`float`) is expected; `null` only where the type says "
           "so; `{a, b}` is a string, one of those values.", "",
           "`options` are typed per task kind: the keys of every task plus those of the task's kind. After loading, "
           "`config.options` holds every one of them, the defaults filled in. `trainer` keys are "
           "`transformers.TrainingArguments`' own, passed unchanged (the runner's defaults: `training/runner.py`); a "
           "name it lacks is refused when transformers is installed."]
    for title, description, keys in schema_sections():
        if not keys:
            continue
        out += ["", f"## {title}", ""] + ([description, ""] if description else [])
        out += ["| key | type | default | help |", "|---|---|---|---|"]
        out += [f"| `{k.path}` | {cell(k.type)} | {cell(k.default) if k.default == REQUIRED else f'`{cell(k.default)}`'} | "
                f"{cell(k.help)} |" for k in keys]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tagsmith.config", description="Print every experiment config key.")
    parser.add_argument("--markdown", action="store_true", help="the docs/config.md page instead of the plain list")
    args = parser.parse_args(argv)
    sys.stdout.write(markdown() if args.markdown else format_keys() + "\n")


if __name__ == "__main__":
    main()
