"""The config schema (tagsmith/config.py): wrong types and unknown keys refused in one line, typed options per task
kind, --list-keys and docs/config.md printed from it, and the options training reads all in it."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tagsmith.config import OPTIONS, ConfigError, format_keys, load_config, markdown, trainer_keys

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "training" / "configs"


def refused(values: dict | None = None, overrides=(), yaml_text: str | None = None, tmp_path=None) -> str:
    """The one-line ConfigError message a config gets."""
    with pytest.raises(ConfigError) as caught:
        if yaml_text is not None:
            path = tmp_path / "x.yaml"
            path.write_text(yaml_text, encoding="utf-8")
            load_config(path, list(overrides))
        else:
            load_config(values=values, overrides=list(overrides))
    message = str(caught.value)
    assert "\n" not in message
    return message


def base(task: str = "segmentation", **more) -> dict:
    return {"name": "x", "task": task, **more}


def test_a_wrong_type_at_the_top_level_is_refused_naming_file_key_and_type(tmp_path):
    message = refused(yaml_text='name: x\ntask: segmentation\nmax_length: "128"\n', tmp_path=tmp_path)
    assert message == f"{tmp_path / 'x.yaml'}: max_length: expected int, got str '128' (write numbers without quotes)"
    assert refused(base(seed=True)) == "config: seed: expected int, got bool true"
    assert refused(base(early_stopping_patience=2.5)) == "config: early_stopping_patience: expected int, got float 2.5"
    assert refused(base(tune_decision="yes")) == "config: tune_decision: expected bool, got str 'yes'"
    assert refused(base(trainer=[1])) == "config: trainer: expected mapping[str, any], got list [1]"


def test_a_wrong_type_in_a_nested_section_is_refused_with_its_key_path():
    assert refused(base(data={"exclude_kinds": "vernacular"})) == \
        "config: data.exclude_kinds: expected list[str], got str 'vernacular'"
    assert refused(base(model={"head": {"cnn_kernels": [3, "5"]}})) == \
        "config: model.head.cnn_kernels[1]: expected int, got str '5' (write numbers without quotes)"
    assert refused(base(model={"scratch": {"hidden_dropout_prob": "0.1"}})) == \
        "config: model.scratch.hidden_dropout_prob: expected float, got str '0.1' (write numbers without quotes)"
    assert refused(base(data={"oversample": {"prose": 0.5}})) == "config: data.oversample.prose: expected int, got float 0.5"
    assert refused(base(model="bert")) == "config: model: expected mapping, got str 'bert'"
    # a whole number is a number: temperature 2 is fine
    assert load_config(values=base("toxicity", distill={"temperature": 2})).distill.temperature == 2


def test_a_wrong_type_in_options_is_refused():
    assert refused(base("mlm", options={"mlm_probability": "high"})) == \
        "config: options.mlm_probability: expected float, got str 'high'"
    assert refused(base(options={"tune_on_collections": "chengyu"})) == \
        "config: options.tune_on_collections: expected list[str] | null, got str 'chengyu'"
    assert refused(base("mlm", options={"whole_word_mask": "maybe"})) == \
        "config: options.whole_word_mask: expected bool | {auto}, got 'maybe'"
    assert refused(base("mlm", options={"head_warmup_steps": 1.5})) == \
        "config: options.head_warmup_steps: expected int | {auto}, got float 1.5"


def test_an_unknown_key_at_every_level_is_refused_with_the_nearest_valid_key(tmp_path):
    message = refused(yaml_text="name: x\ntask: mlm\noptions: {mlm_probabilty: 0.2}\n", tmp_path=tmp_path)
    assert message == f"{tmp_path / 'x.yaml'}: options.mlm_probabilty: unknown key; did you mean mlm_probability?"
    cases = {
        "modle": (base(modle={}), "did you mean model?"),
        "data.trian": (base(data={"trian": "a.jsonl"}), "did you mean train?"),
        "model.head.cnn_kernel": (base(model={"head": {"cnn_kernel": [3]}}), "did you mean cnn_kernels?"),
        "model.scratch.hidden_sise": (base(model={"scratch": {"hidden_sise": 8}}), "did you mean hidden_size?"),
        "distill.temprature": (base("toxicity", distill={"temprature": 2}), "did you mean temperature?"),
        "options.max_minute": (base(options={"max_minute": 5}), "did you mean max_minutes?"),
    }
    for path, (values, suggestion) in cases.items():
        assert refused(values) == f"config: {path}: unknown key; {suggestion}"
    # nothing close: the valid keys are listed instead
    assert refused(base(zzz=1)).startswith("config: zzz: unknown key; valid keys: name, task, data, model, ")


def test_an_unknown_trainer_key_is_refused_from_transformers_source_without_importing_torch():
    assert refused(base(trainer={"learning_rat": 0.1})) == ("config: trainer.learning_rat: unknown key: "
                                                          "transformers.TrainingArguments has no such argument; did you "
                                                          "mean learning_rate?")
    names = trainer_keys()
    assert {"learning_rate", "per_device_train_batch_size", "bf16", "group_by_length", "eval_strategy"} <= names
    assert len(names) > 100
    # loading every shipped config (their trainer keys checked) imports neither transformers nor torch
    code = ("import sys; from pathlib import Path; from tagsmith.config import load_config\n"
            "for p in sorted(Path('training/configs').glob('*.yaml')): load_config(p)\n"
            "assert not {'torch', 'transformers'} & set(sys.modules), sorted(m for m in sys.modules if 'torch' in m)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr


def test_options_are_typed_per_task_kind():
    message = refused(base("mlm", options={"char_dropout": 0.1}))
    assert message.startswith("config: options.char_dropout: not an option of mlm tasks (it is a tagging option); "
                              "mlm options: max_minutes, mlm_probability, ")
    assert "tagging option" not in refused(base("mlm", options={"foo": 1}))
    assert refused(base("toxicity", options={"mlm_probability": 0.2})).startswith(
        "config: options.mlm_probability: not an option of classification tasks (it is a mlm option)")
    # after loading, options is a plain dict of every option of the kind, defaults filled in
    config = load_config(CONFIGS / "mlm-tiny.yaml")
    assert config.options == {"max_minutes": None, "mlm_probability": 0.15, "validation_fraction": 0.01,
                              "whole_word_mask": "auto", "scratch_tokenizer": "char", "head_warmup_steps": "auto",
                              "head_warmup_learning_rate": 1e-3, "score_masked_only": True}
    tagging = load_config(CONFIGS / "segmentation-cpu.yaml").options
    assert tagging == {"max_minutes": 55, "char_dropout": 0.0, "tune_on_kind": "prose", "tune_on_collections": None}
    assert set(load_config(CONFIGS / "toxicity-cpu.yaml").options) == {
        "max_minutes", "labels", "threshold_objective", "target_recall", "data_grade"}


def test_choices_and_ranges_come_from_the_schema():
    assert refused(base(model={"head": {"type": "rnn"}})) == \
        "config: model.head.type: expected one of linear, cnn, got 'rnn'; did you mean cnn?"
    assert refused(base(class_weighting="balance")) == \
        "config: class_weighting: expected one of none, balanced, sqrt, got 'balance'; did you mean balanced?"
    assert refused(base("mlmm")).startswith("config: task: expected one of segmentation, punctuation, ")
    assert refused(base(options={"char_dropout": 0.5})) == "config: options.char_dropout: expected float in [0, 0.5), got 0.5"
    assert refused(base(max_length=4)) == "config: max_length: expected int >= 8, got 4"
    assert refused(base("toxicity", options={"target_recall": 0.9, "threshold_objective": "macro_f1"})) == \
        "config: options.target_recall: cannot be combined with threshold_objective macro_f1"
    listed = format_keys()
    assert "{linear, cnn}" in listed and "float, in [0, 0.5)" in listed


def test_set_overrides_go_through_the_same_checks():
    path = CONFIGS / "mlm-tiny.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["options.mlm_probabilty=0.2"])
    assert str(caught.value) == (f"{path}: options.mlm_probabilty: unknown key; did you mean mlm_probability? "
                                 "(set by --set)")
    with pytest.raises(ConfigError, match=r"mlm-tiny.yaml: max_length: expected int, got str 'abc' \(set by --set\)$"):
        load_config(path, ["max_length=abc"])
    with pytest.raises(ConfigError, match=r"model.hed: unknown key; did you mean head\? \(set by --set\)$"):
        load_config(path, ["model.hed.type=cnn"])
    with pytest.raises(ConfigError, match=r": --set max_length: must look like key.path=value$"):
        load_config(path, ["max_length"])
    assert load_config(path, ["options.mlm_probability=0.2"]).options["mlm_probability"] == 0.2


def test_list_keys_prints_every_key_with_type_default_and_help():
    from typer.testing import CliRunner

    from tagsmith.cli import app

    result = CliRunner().invoke(app, ["train", "--list-keys"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()

    def row(path: str) -> list[str]:
        return next(line for line in lines if line.split()[:1] == [path]).split()

    assert row("max_length")[1:4] == ["int,", ">=", "8"] and row("max_length")[4] == "128"
    assert row("options.mlm_probability")[1:6] == ["float,", "in", "(0,", "1)", "0.15"]
    assert row("data.script")[1:5] == ["{keep,", "simplified,", "traditional}", "keep"]
    assert row("model.head.cnn_kernels")[1:5] == ["list[int]", "[3,", "5,", "7]"]
    assert "share of the tokens masked" in " ".join(row("options.mlm_probability"))
    missing = CliRunner().invoke(app, ["train"])
    assert missing.exit_code == 2 and "--list-keys" in missing.output


def test_docs_config_md_is_the_generated_page():
    generated = subprocess.run([sys.executable, "-m", "tagsmith.config", "--markdown"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout
    assert generated == markdown()
    assert (ROOT / "docs" / "config.md").read_text(encoding="utf-8") == generated, \
        "docs/config.md is out of date: run make docs-config"


def _options_reads(tree: ast.AST):
    """(key, default or None) of every ``options.get("key"[, default])`` / ``options["key"]`` in a module."""
    def is_options(node) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "options") or (isinstance(node, ast.Name)
                                                                                and node.id == "options")

    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and is_options(node.func.value)):
            yield node.args[0].value, (ast.literal_eval(node.args[1]) if len(node.args) > 1 else None)
        elif isinstance(node, ast.Subscript) and is_options(node.value) and isinstance(node.slice, ast.Constant):
            yield node.slice.value, ...


def test_every_option_training_reads_is_in_the_schema_with_the_same_default():
    import dataclasses

    defaults = {}
    for cls in OPTIONS.values():
        for f in dataclasses.fields(cls):
            defaults.setdefault(f.name, f.default)
    read = set()
    for module in sorted((ROOT / "training").glob("*.py")):
        for name, default in _options_reads(ast.parse(module.read_text(encoding="utf-8"))):
            read.add(name)
            assert name in defaults, f"{module.name} reads options.{name}, which the schema (tagsmith/config.py) lacks"
            if default is not ...:
                assert defaults[name] == default, (f"{module.name} reads options.{name} with default {default!r}; "
                                                   f"the schema says {defaults[name]!r}")
    assert {"char_dropout", "mlm_probability", "threshold_objective", "max_minutes"} <= read
