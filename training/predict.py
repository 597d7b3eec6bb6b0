"""PyTorch inference on a run's ``best/`` checkpoint (the reference path; serving uses ONNX)."""

from __future__ import annotations

from pathlib import Path

import torch

from tagsmith.convert import to_script
from tagsmith.tasks import get_task
from tagsmith.decision import bias_indices, decide_label, softmax
from tagsmith.manifest import read_manifest as read_manifest_file
from training.features import decode, encode_windows, merge_logits
from training.model import CheckpointError, load_tagging_model
from training.tokenizer import load_tokenizer


def read_manifest(path: Path) -> dict:
    return read_manifest_file(path, CheckpointError, missing="{folder}: no tagsmith.json; expected a run's best/ directory")


class TaggingPredictor:
    def __init__(self, path: str | Path, batch_size: int = 32):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.task = get_task(self.manifest["task"])
        self.model = load_tagging_model(self.path).eval()
        self.tokenizer = load_tokenizer(self.path)
        self.batch_size = batch_size
        self.bias = float(self.manifest.get("decision_bias", 0.0))
        self.bias_ids = bias_indices(self.task.labels, self.manifest.get("bias_labels", []), str(self.path / "tagsmith.json"),
                                     CheckpointError)

    @torch.inference_mode()
    def char_logits(self, texts: list[str]):
        texts = [to_script(t, self.manifest.get("script", "keep")) for t in texts]
        windowed = encode_windows(texts, self.tokenizer, self.manifest["max_length"], self.manifest["window_overlap"])
        outputs = []
        for start in range(0, len(windowed.features), self.batch_size):
            batch = self.tokenizer.pad(windowed.features[start:start + self.batch_size], return_tensors="pt")
            outputs.extend(self.model(**batch).logits.float().numpy())
        width = max(o.shape[0] for o in outputs)
        import numpy as np

        padded = np.zeros((len(outputs), width, outputs[0].shape[-1]), dtype=np.float32)
        for i, o in enumerate(outputs):
            padded[i, : o.shape[0]] = o
        return merge_logits(windowed, padded)

    def predict(self, texts: list[str]) -> list[list[str]]:
        return [decode(l, self.task.labels, self.bias_ids, self.bias) for l in self.char_logits(texts)]

    def render(self, texts: list[str]) -> list[str]:
        return [self.task.render(t, labels) for t, labels in zip(texts, self.predict(texts))]


class ClassificationPredictor:
    def __init__(self, path: str | Path):
        from safetensors import SafetensorError
        from transformers import AutoModelForSequenceClassification

        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(str(self.path)).eval()
        except (OSError, ValueError, SafetensorError) as error:
            raise CheckpointError(f"{path}: cannot load checkpoint: {error}") from error
        self.tokenizer = load_tokenizer(self.path)
        self.labels = self.manifest["labels"]

    @torch.inference_mode()
    def probabilities(self, texts: list[str]):
        encoded = self.tokenizer(texts, truncation=True, max_length=self.manifest["max_length"], padding=True,
                                 return_tensors="pt")
        return softmax(self.model(**encoded).logits.float().numpy())

    def predict(self, texts: list[str]) -> list[dict]:
        threshold, positive = self.manifest.get("threshold"), self.manifest.get("positive_label")
        out = []
        for probs in self.probabilities(texts):
            if threshold is not None and positive is not None:
                p = float(probs[self.labels.index(positive)])
                label = decide_label(probs, self.labels, threshold, positive)
                out.append({"label": label, "probability": round(p, 4), "threshold": round(threshold, 4)})
            else:
                out.append({"label": self.labels[int(probs.argmax())],
                            "probabilities": {l: round(float(x), 4) for l, x in zip(self.labels, probs)}})
        return out
