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
