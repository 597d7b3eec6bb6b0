"""PyTorch predictors on a checkpoint with the same methods as the ONNX runtimes in ``serving.runtime``:
``char_logits(texts)`` (tagging), ``logits(texts)`` (classification), ``mask_logits(ids)`` (mlm).

They are the reference the parity gate compares ONNX with, and the PyTorch eager backend of the benchmark.
Tagging uses the training code's own predictor (training/predict.py) so that the reference is the one the
training run scored.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from export.checkpoint import Checkpoint, ExportError, load_torch_model, load_torch_tokenizer
from tagsmith.convert import to_script


class TaggingReference:
    def __init__(self, checkpoint: Checkpoint, batch_size: int = 32):
        from training.model import CheckpointError
        from training.predict import TaggingPredictor

        try:
            self.predictor = TaggingPredictor(checkpoint.path, batch_size=batch_size)
        except CheckpointError as error:
            raise ExportError(str(error).splitlines()[0]) from None
        except Exception as error:  # corrupt weights raise safetensors / torch errors
            raise ExportError(f"{checkpoint.path}: cannot load the checkpoint's weights: {error}") from None
        self.model = self.predictor.model

    def char_logits(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self.predictor.char_logits(list(texts))


class _TransformersReference:
    def __init__(self, checkpoint: Checkpoint, batch_size: int = 32):
        self.model = load_torch_model(checkpoint)
        self.tokenizer = load_torch_tokenizer(checkpoint)
        self.max_length = int(checkpoint.info.get("max_length") or min(self.tokenizer.model_max_length, 512))
        self.script = checkpoint.info.get("script", "keep")
        self.batch_size = batch_size

    def _run(self, batch: dict) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(**batch).logits.float().numpy()


class ClassificationReference(_TransformersReference):
    def logits(self, texts: Sequence[str]) -> np.ndarray:
        texts = [to_script(text, self.script) for text in texts]
        outputs = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start:start + self.batch_size], truncation=True, max_length=self.max_length,
                                   padding=True, return_tensors="pt")
            outputs.append(self._run(batch))
        return np.concatenate(outputs) if outputs else np.zeros((0, self.model.config.num_labels), np.float32)


class MaskedLMReference(_TransformersReference):
    def mask_logits(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        import torch

        mask_id = self.tokenizer.mask_token_id
        results = []
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start:start + self.batch_size]
            width = max(len(sequence) for sequence in chunk)
            input_ids = torch.full((len(chunk), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
            attention_mask = torch.zeros_like(input_ids)
            for row, sequence in enumerate(chunk):
                input_ids[row, : len(sequence)] = torch.tensor(sequence)
                attention_mask[row, : len(sequence)] = 1
            logits = self._run({"input_ids": input_ids, "attention_mask": attention_mask})
            for row, sequence in enumerate(chunk):
                results.append(logits[row, : len(sequence)][np.asarray(sequence) == mask_id])
        return results


REFERENCES = {"tagging": TaggingReference, "classification": ClassificationReference, "mlm": MaskedLMReference}


def load_reference(checkpoint: Checkpoint, batch_size: int = 32):
    return REFERENCES[checkpoint.kind](checkpoint, batch_size=batch_size)
