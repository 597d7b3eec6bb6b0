"""The checkpoint an export starts from: a run's ``best/`` directory, checked before anything heavy runs.

Every problem (missing directory, no weights, unreadable config, weights that do not load) becomes an
:class:`ExportError` with one line that names the file, so the command never shows a traceback for a bad path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tagsmith.tasks import kind_of
from tagsmith.manifest import read_json_object

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
#: the end of a transformers architecture name -> task kind (the registry's kinds: tagging, classification, mlm)
KIND_BY_ARCHITECTURE = {"ForTokenClassification": "tagging", "ForSequenceClassification": "classification",
                        "ForMaskedLM": "mlm"}


class ExportError(RuntimeError):
    pass


@dataclass
class Checkpoint:
    path: Path
    info: dict  # the run's tagsmith.json
    config: dict  # config.json
    kind: str  # tagging | classification | mlm

    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def head(self) -> str:
        return self.config.get("tagsmith_head") or self.info.get("head") or "linear"

    @property
    def run_dir(self) -> Path:
        return self.path.resolve().parent

    @property
    def weights(self) -> Path:
        return next(self.path / name for name in WEIGHT_FILES if (self.path / name).is_file())


def _read_json(path: Path, what: str) -> dict:
    return read_json_object(path, ExportError, missing="{folder}: " + what + " (no {name})")


def checkpoint_kind(config: dict, info: dict) -> str:
    if config.get("tagsmith_head") == "cnn":
        return "tagging"
    for architecture in config.get("architectures") or []:
        for suffix, kind in KIND_BY_ARCHITECTURE.items():
            if architecture.endswith(suffix):
                return kind
    kind = info.get("kind") or kind_of(info.get("task", ""))
    if kind is None:
        raise ExportError(f"cannot tell the task kind of architecture {config.get('architectures')} / task {info.get('task')!r}")
    return kind


def inspect_checkpoint(path: str | Path) -> Checkpoint:
    """Check that ``path`` looks like a run's best/ directory (no torch needed) and read its metadata."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such checkpoint directory")
    if not path.is_dir():
        raise ExportError(f"{path}: not a directory; expected a run's best/ checkpoint directory")
    config = _read_json(path / "config.json", "not a checkpoint directory")
    info = _read_json(path / "tagsmith.json", "not a tagsmith checkpoint; expected a run's best/ directory")
    if "task" not in info:
        raise ExportError(f"{path / 'tagsmith.json'}: no 'task'")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ExportError(f"{path}: no model weights ({' or '.join(WEIGHT_FILES[:2])})")
    if not any((path / name).is_file() for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise ExportError(f"{path}: no tokenizer (tokenizer.json)")
    return Checkpoint(path, info, config, checkpoint_kind(config, info))


def load_torch_model(checkpoint: Checkpoint):
    """The PyTorch model in eval mode; ExportError (one line) when the weights do not load."""
    try:
        if checkpoint.kind == "tagging":
            from training.model import CheckpointError, load_tagging_model

            try:
                model = load_tagging_model(checkpoint.path)
            except CheckpointError as error:
                raise ExportError(_first_line(error)) from None
        else:
            from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

            auto = AutoModelForMaskedLM if checkpoint.kind == "mlm" else AutoModelForSequenceClassification
            model = auto.from_pretrained(checkpoint.path)
    except ExportError:
        raise
    except Exception as error:  # safetensors, torch and transformers each raise their own types for bad files
        raise ExportError(f"{checkpoint.path}: cannot load the checkpoint's weights: {_first_line(error)}") from None
    return model.eval()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_torch_tokenizer(checkpoint: Checkpoint):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(checkpoint.path), use_fast=True)
    except Exception as error:  # same reason as above
        raise ExportError(f"{checkpoint.path}: cannot load the tokenizer: {_first_line(error)}") from None
