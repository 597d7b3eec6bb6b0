"""The accuracy parity gate: the validation split through PyTorch and through each ONNX model (served by
``serving.runtime``, the code that serves), scored with the task metric and compared output by output.

An evaluation set knows, for its task kind, how to run a predictor over its texts (``outputs``), how to turn
outputs into predictions (``flat_predictions``, flat so they can be compared one by one) and how to score
them (``scores``). ``evaluate`` reports the task metric and, against a reference result, the largest absolute
logit difference and the fraction of predictions that agree; ``int8_verdict`` is the publication rule.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export.checkpoint import Checkpoint, ExportError
from tagsmith.decision import bias_indices, decide_classes, decode, sigmoid, softmax


def find_eval_data(checkpoint: Checkpoint, data: Path | None) -> Path:
    """``data`` if given, else the validation file named by the run's config.yaml (RUN_DIR/config.yaml)."""
    if data is not None:
        if not Path(data).is_file():
            raise ExportError(f"{data}: no such data file")
        return Path(data)
    config_file = checkpoint.run_dir / "config.yaml"
    if not config_file.is_file():
        raise ExportError(f"{checkpoint.path}: no {config_file} to find the validation split in; pass --data FILE")
    from tagsmith.config import ConfigError, load_config

    try:
        config = load_config(config_file)
    except ConfigError as error:
        raise ExportError(f"{error}; pass --data FILE") from None
    # mlm runs often hold out a fraction of data.files instead of naming a validation file
    candidates = [("data.validation", config.data.validation), ("data.test", config.data.test)]
    if checkpoint.kind == "mlm":
        candidates += [("data.files", path) for path in config.data.files] + [("data.train", config.data.train)]
    named = [(key, path) for key, path in candidates if path]
    if not named:
        raise ExportError(f"{config_file}: no data.validation; pass --data FILE")
    for _, path in named:
        if Path(path).is_file():
            return Path(path)
    key, path = named[0]
    raise ExportError(f"{key} {path} (from {config_file}) not found; pass --data FILE")


def read_records(path: Path, max_records: int, seed: int = 0) -> list[dict]:
    from tagsmith.records import read_record_file

    parsed = read_record_file(path)
    if parsed.problems:
        raise ExportError(f"{parsed.problems[0]} ({len(parsed.problems)} problem(s) in the evaluation data)")
    records = [r for r in parsed.records if isinstance(r, dict) and isinstance(r.get("text"), str) and r["text"].strip()]
    if not records:
        raise ExportError(f"{path}: no records with a text")
    if max_records and len(records) > max_records:
        records = random.Random(seed).sample(records, max_records)
    return records


# --- evaluation sets per task kind --------------------------------------------------------------------------


class TaggingEval:
    def __init__(self, records: list[dict], manifest: dict):
        from tagsmith.tasks import get_task

        self.texts = [r["text"] for r in records]
        self.gold = [r.get("labels") for r in records]
        bad = [i for i, (g, t) in enumerate(zip(self.gold, self.texts), 1) if not isinstance(g, list) or len(g) != len(t)]
        if bad:
            raise ExportError(f"tagging evaluation record {bad[0]} (of {len(bad)} bad): needs 'labels', one per character")
        self.labels = list(manifest["labels"])
        self.bias = float(manifest.get("decision_bias", 0.0))
        self.bias_ids = bias_indices(self.labels, manifest.get("bias_labels", []), "the checkpoint's tagsmith.json", ExportError)
        self.task = get_task(manifest["task"])
        self.metric = self.task.main_metric

    def outputs(self, predictor, bar=None) -> list[np.ndarray]:
        return in_chunks(predictor.char_logits, self.texts, bar)

    def predictions(self, outputs) -> list[list[str]]:
        return [decode(logits, self.labels, self.bias_ids, self.bias) for logits in outputs]

    def flat_predictions(self, outputs) -> np.ndarray:
        return np.array([label for labels in self.predictions(outputs) for label in labels], dtype=object)

    def scores(self, outputs) -> dict:
        return {k: v for k, v in self.task.score(self.gold, self.predictions(outputs)).items() if isinstance(v, (int, float))}

    @staticmethod
    def flat_logits(outputs) -> np.ndarray:
        return np.concatenate([np.asarray(o, dtype=np.float32).reshape(-1) for o in outputs]) if outputs else np.zeros(0)

    @property
    def size(self) -> dict:
        return {"texts": len(self.texts), "characters": sum(map(len, self.texts))}


class ClassificationEval:
    def __init__(self, records: list[dict], manifest: dict):
        self.labels = list(manifest["labels"])
        self.multi_label = manifest.get("problem_type") == "multi_label_classification"
        self.threshold = manifest.get("threshold")
        self.positive = manifest.get("positive_label")
        self.texts = [r["text"] for r in records]
        if self.multi_label:
            self.gold = np.array([[int(r["labels"].get(label, 0)) for label in self.labels] for r in records])
            self._score = lambda p: _metrics().multilabel_metrics(p, self.gold, self.labels,
                                                                  0.5 if self.threshold is None else self.threshold)
        else:
            unknown = sorted({str(r.get("label")) for r in records if r.get("label") not in self.labels})
            if unknown:
                raise ExportError(f"classification evaluation data: label(s) {unknown} not in the model's {self.labels}")
            self.gold = np.array([self.labels.index(r["label"]) for r in records])
            binary = len(self.labels) == 2
            self._score = lambda p: _metrics().classification_metrics(
                p, self.gold, self.labels, self.threshold if binary else None, self.positive if binary else None)
        self.metric = manifest.get("main_metric") or ("micro_f1" if self.multi_label else _task_metric(manifest["task"]))

    def outputs(self, predictor, bar=None) -> np.ndarray:
        return np.concatenate([np.asarray(p, dtype=np.float32) for p in in_chunks(predictor.logits, self.texts, bar, join=False)])

    def probabilities(self, outputs) -> np.ndarray:
        return sigmoid(outputs) if self.multi_label else softmax(outputs)

    def flat_predictions(self, outputs) -> np.ndarray:
        decisions = decide_classes(self.probabilities(outputs), self.labels, self.threshold, self.positive, self.multi_label)
        return decisions.reshape(-1)

    def scores(self, outputs) -> dict:
        return {k: v for k, v in self._score(self.probabilities(outputs)).items() if isinstance(v, (int, float))}

    @staticmethod
    def flat_logits(outputs) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float32).reshape(-1)

    @property
    def size(self) -> dict:
        return {"texts": len(self.texts)}


def _metrics():
    """tagsmith.metrics, imported when scoring (its classifier metrics load scikit-learn, which a benchmark worker
    must not count in its model's memory)."""
    from tagsmith import metrics

    return metrics


def _task_metric(task_name: str) -> str:
    from tagsmith.tasks import get_task

    try:
        return get_task(task_name).main_metric
    except KeyError:
        return "macro_f1"


class MaskedLMEval:
    """Masked-token accuracy on a fixed, seeded choice of 15% of the tokens of each text."""

    metric = "masked_accuracy"

    def __init__(self, records: list[dict], manifest: dict, tokenizer_file: Path, seed: int = 0, fraction: float = 0.15):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.no_padding()
        tokenizer.enable_truncation(int(manifest["max_length"]))
        mask_id = int(manifest["special_tokens"]["mask_id"])
        rng = np.random.default_rng(seed)
        self.ids, gold = [], []
        for encoding in tokenizer.encode_batch([r["text"] for r in records]):
            ids = np.array(encoding.ids)
            candidates = np.flatnonzero(np.array(encoding.special_tokens_mask) == 0)
            if not len(candidates):
                continue
            chosen = np.sort(rng.choice(candidates, max(1, round(fraction * len(candidates))), replace=False))
            gold.append(ids[chosen].copy())
            ids[chosen] = mask_id
            self.ids.append(ids.tolist())
        if not self.ids:
            raise ExportError("mlm evaluation data: no text has a token to mask")
        self.gold = np.concatenate(gold)

    def outputs(self, predictor, bar=None) -> list[np.ndarray]:
        return in_chunks(predictor.mask_logits, self.ids, bar)

    def flat_predictions(self, outputs) -> np.ndarray:
        return np.concatenate([np.asarray(o).argmax(-1) for o in outputs])

    def scores(self, outputs) -> dict:
        return {"masked_accuracy": float((self.flat_predictions(outputs) == self.gold).mean()), "masked_tokens": int(len(self.gold))}

    @staticmethod
    def flat_logits(outputs) -> np.ndarray:
        return np.concatenate([np.asarray(o, dtype=np.float32).reshape(-1) for o in outputs])

    @property
    def size(self) -> dict:
        return {"texts": len(self.ids), "masked_tokens": int(len(self.gold))}


#: the evaluation set of each task kind (every kind of the task registry has one: tests/test_registry.py)
EVALS = {"tagging": TaggingEval, "classification": ClassificationEval, "mlm": MaskedLMEval}


def make_eval(kind: str, records: list[dict], manifest: dict, package_dir: Path, seed: int = 0, progress: bool = False):
    """The evaluation set of the kind; ``progress``: :func:`evaluate` shows a progress bar (stderr) per pass."""
    if kind == "mlm":
        evaluation = MaskedLMEval(records, manifest, package_dir / manifest["tokenizer"], seed=seed)
    else:
        evaluation = EVALS[kind](records, manifest)
    evaluation.progress = progress
    return evaluation


# --- progress -----------------------------------------------------------------------------------------------

#: texts per call of a predictor in a parity pass (a multiple of the runtimes' batch of 32): a step of the progress
#: bar. A set of up to this many texts goes in one call, as before there were bars.
CHUNK = 128


def progress_bar(total: int | None, desc: str, enabled: bool = True, unit: str = "text"):
    """A tqdm bar on stderr (tqdm.auto: a widget in notebooks); a no-op when not ``enabled``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5)


def in_chunks(call, items: list, bar=None, join: bool = True) -> list:
    """``call(items)`` in chunks of :data:`CHUNK`, advancing ``bar`` by each chunk's items. ``join``: the chunks'
    results as one list (else the list of each chunk's result)."""
    parts = []
    for start in range(0, max(len(items), 1), CHUNK):
        chunk = items[start:start + CHUNK]
        parts.append(call(chunk))
        if bar is not None:
            bar.update(len(chunk))
    return [value for part in parts for value in part] if join else parts


# --- comparing models ---------------------------------------------------------------------------------------


@dataclass
class Result:
    """One model on the evaluation set."""

    outputs: object
    scores: dict
    metric: float
    max_abs_logit_diff: float | None = None
    agreement: float | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self, metric_name: str) -> dict:
        out = {"metric": round(self.metric, 6), metric_name: round(self.metric, 6)}
        if self.max_abs_logit_diff is not None:
            out["max_abs_logit_diff"] = float(f"{self.max_abs_logit_diff:.3g}")
            out["agreement"] = round(self.agreement, 6)
        out["scores"] = {k: round(v, 6) if isinstance(v, float) else v for k, v in self.scores.items()}
        return {**out, **self.extra}


def evaluate(evaluation, predictor, reference: Result | None = None, desc: str = "parity") -> Result:
    """``predictor`` on the evaluation set (a progress bar ``desc`` when the set was made with ``progress``),
    scored, and compared with ``reference``."""
    size = len(getattr(evaluation, "texts", None) or getattr(evaluation, "ids", []))
    with progress_bar(size, desc, getattr(evaluation, "progress", False)) as bar:
        outputs = evaluation.outputs(predictor, bar)
    scores = evaluation.scores(outputs)
    result = Result(outputs, scores, float(scores[evaluation.metric]))
    if reference is not None:
        ours, theirs = evaluation.flat_logits(outputs), evaluation.flat_logits(reference.outputs)
        result.max_abs_logit_diff = float(np.abs(ours - theirs).max()) if len(ours) else 0.0
        mine, gold = evaluation.flat_predictions(outputs), evaluation.flat_predictions(reference.outputs)
        result.agreement = float((mine == gold).mean()) if len(gold) else 1.0
    return result


def int8_verdict(reference: Result, int8: Result, max_drop: float) -> str | None:
    """Why int8 must not be published (None = publish it): its metric fell more than ``max_drop`` below PyTorch."""
    drop = reference.metric - int8.metric
    if drop > max_drop + 1e-12:
        return (f"int8 metric {int8.metric:.4f} is {drop:.4f} below PyTorch's {reference.metric:.4f} "
                f"(allowed drop {max_drop:.4f})")
    return None
