from pathlib import Path

import pytest

from tagsmith.config import load_config
from tagsmith.tasks import get_task

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "training" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_loads_and_names_itself(path):
    config = load_config(path)
    assert config.name == path.stem
    get_task(config.task)
    assert config.trainer, "every config sets Trainer arguments"


def test_sikubert_configs_match_the_published_recipe():
    for task in ("segmentation", "punctuation"):
        config = load_config(Path(CONFIGS[0]).parent / f"{task}-sikubert.yaml")
        t = config.trainer
        assert config.model.name_or_path == "SIKU-BERT/sikubert" and config.model.head.type == "cnn"
        assert (t["per_device_train_batch_size"], t["learning_rate"], t["num_train_epochs"], t["warmup_ratio"],
                t["weight_decay"], config.seed) == (64, 2e-5, 5, 0.1, 0.01, 42)


def test_bf16_auto_follows_the_hardware(tmp_path, monkeypatch):
    """``trainer.bf16: auto`` becomes a plain bool: on for native bf16 matmuls, off where bf16 would be emulated."""
    from tagsmith.config import load_config
    from training import runner

    config = load_config(Path(__file__).resolve().parents[1] / "training" / "configs" / "segmentation-cpu.yaml")
    assert config.trainer["bf16"] == "auto"
    for fast in (False, True):
        monkeypatch.setattr(runner, "bf16_is_fast", lambda: fast)
        args = runner.training_arguments(config, tmp_path, "f1", {})
        assert args.bf16 is fast


def test_each_trainer_runs_at_its_own_precision(tmp_path, monkeypatch):
    """A bf16 run earlier in the process does not make a later ``bf16: false`` run train in bf16: transformers keeps
    the precision of the last TrainingArguments in ACCELERATE_MIXED_PRECISION and accelerate keeps it in a
    singleton, whichever order the arguments and the Trainers are built in."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

    from training import runner

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    model = BertForSequenceClassification(BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1,
                                                     num_attention_heads=1, intermediate_size=8))

    def arguments(bf16: bool) -> TrainingArguments:
        return TrainingArguments(output_dir=str(tmp_path / str(bf16)), bf16=bf16, use_cpu=True, report_to=[])

    plain_first = arguments(False)  # built before the bf16 run exists
    half = runner.Trainer(model=model, args=arguments(True))
    assert half.accelerator.mixed_precision == "bf16"
    assert runner.Trainer(model=model, args=arguments(False)).accelerator.mixed_precision == "no"
    runner.Trainer(model=model, args=arguments(True))
    assert runner.Trainer(model=model, args=plain_first).accelerator.mixed_precision == "no"
    assert not torch.is_autocast_enabled("cpu")
