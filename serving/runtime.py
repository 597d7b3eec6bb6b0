"""ONNX Runtime inference on a model package (docs/architecture.md, "Model package"): the one inference path that both
serving and the export parity gate use.

Torch-free on purpose: onnxruntime + tokenizers + numpy + the torch-free ``tagsmith`` core, so the serving
image stays small. ``load_package`` checks the sha256 of every file the manifest lists before anything is
loaded, picks the published model (int8 or fp32) unless told otherwise, and returns the runtime for the
package's task kind:

* :class:`TaggingRuntime` (segmentation, punctuation): one label and a confidence per character;
* :class:`ClassificationRuntime` (toxicity, ...): class probabilities and the label at the tuned threshold;
* :class:`FillMaskRuntime` (mlm): the top-k tokens for every mask token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tagsmith.convert import to_script
from tagsmith.decision import (  # noqa: F401 (re-exported)
    bias_indices,
    biased,
    decide_classes,
    decode,
    decode_scores,
    sigmoid,
    softmax,
)
from tagsmith.hashing import sha256_file  # noqa: F401 (package verification; re-exported)
from tagsmith.manifest import MANIFEST
from tagsmith.manifest import read_manifest as read_manifest_file
from tagsmith.tasks import TASKS, kind_of
from tagsmith.windows import (
    first_token_logits,
    first_token_positions,
    merge_record_windows,
    window_spans,
)

VARIANTS = ("int8", "fp32", "fp16")


class PackageError(RuntimeError):
    """A model package that cannot be served: missing, incomplete, or not what its manifest says."""


# --- the package on disk ------------------------------------------------------------------------------------


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise PackageError(f"{path}: no such model package directory")
    value = read_manifest_file(path, PackageError, missing="{folder}: not a model package (no {name})",
                               not_object="not a package manifest (no 'files' with the sha256 of each file)")
    if not isinstance(value.get("files"), dict):
        raise PackageError(f"{path / MANIFEST}: not a package manifest (no 'files' with the sha256 of each file)")
    return value


def hash_problems(path: str | Path, manifest: dict) -> list[str]:
    """One line per file that is missing or whose sha256 differs from the manifest (empty = intact)."""
    path = Path(path)
    problems = []
    for name, expected in sorted(manifest["files"].items()):
        file = path / name
        if not file.is_file():
            problems.append(f"{name}: missing")
        elif (found := sha256_file(file)) != expected:
            problems.append(f"{name}: sha256 mismatch (manifest {expected[:12]}..., file {found[:12]}...)")
    return problems


def verify_package(path: str | Path) -> dict:
    """The manifest of an intact package; PackageError naming every modified or missing file otherwise."""
    manifest = read_manifest(path)
    problems = hash_problems(path, manifest)
    if problems:
        raise PackageError(f"{path}: package does not match its manifest, refusing to load it: " + "; ".join(problems))
    return manifest


def package_kind(manifest: dict) -> str:
    kind = manifest.get("kind") or kind_of(manifest.get("task", ""))  # the registry's, where a manifest has none
    if kind not in RUNTIMES:
        raise PackageError(f"task {manifest.get('task')!r} of kind {kind!r} has no runtime; known kinds: {', '.join(RUNTIMES)}")
    return kind


def choose_variant(manifest: dict, prefer: str | None = None) -> str:
    """The published model unless ``prefer`` names another one the package holds."""
    models = manifest.get("models", {})
    if prefer is None:
        variant = manifest.get("published") or ("int8" if "int8" in models else "fp32")
    elif prefer not in VARIANTS:
        raise PackageError(f"unknown model variant {prefer!r}; expected one of {', '.join(VARIANTS)}")
    else:
        variant = prefer
    if variant not in models:
        why = manifest.get("parity", {}).get("onnx_" + variant, {}).get("refused")
        held = ", ".join(models) or "none"
        raise PackageError(f"the package has no {variant} model (it holds: {held})" + (f"; {variant} was refused: {why}" if why else ""))
    return variant


def load_package(path: str | Path, verify: bool = True, prefer: str | None = None, threads: int | None = None,
                 batch_size: int = 32) -> "Runtime":
    """The runtime for a package: hashes checked (``verify``), then the published model (or ``prefer``:
    "int8", "fp32", "fp16") loaded.

    ``threads``: ONNX Runtime intra-op threads (None = one per core); ``batch_size``: sequences per run.
    """
    manifest = verify_package(path) if verify else read_manifest(path)
    runtime = RUNTIMES[package_kind(manifest)]
    return runtime(Path(path), manifest, choose_variant(manifest, prefer), threads=threads, batch_size=batch_size)


# --- shared machinery ---------------------------------------------------------------------------------------


def make_session(model_file: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(threads or 0)  # 0 = ONNX Runtime's default, one per physical core
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unreadable models
        raise PackageError(f"{model_file}: cannot load the ONNX model: {error}") from None


class Runtime:
    """A tokenizer and an ONNX Runtime session over one model of a package."""

    kind = ""

    def __init__(self, path: Path, manifest: dict, variant: str, threads: int | None = None, batch_size: int = 32):
        from tokenizers import Tokenizer

        self.path = Path(path)
        self.manifest = manifest
        self.variant = variant
        self.model_file = self.path / manifest["models"][variant]
        self.max_length = int(manifest["max_length"])
        self.script = manifest.get("script", "keep")
        self.batch_size = max(1, int(batch_size))
        self.session = make_session(self.model_file, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name
        try:
            self.tokenizer = Tokenizer.from_file(str(self.path / manifest.get("tokenizer", "tokenizer.json")))
        except Exception as error:  # tokenizers raises plain Exception on a bad file
            raise PackageError(f"{self.path}: cannot load the tokenizer: {error}") from None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        special = manifest.get("special_tokens", {})
        pad_id = special.get("pad_id")
        self.pad_id = int(pad_id if pad_id is not None else self.tokenizer.token_to_id("[PAD]") or 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path}, task={self.manifest.get('task')!r}, model={self.variant})"

    def model_text(self, text: str) -> str:
        """The text in the model's script; same length, so positions map back to the caller's characters."""
        return to_script(text, self.script)

    def forward(self, encodings: Sequence) -> list[np.ndarray]:
        """The model's first output for each encoding, without padding: ``(len, ...)`` per token or ``(k,)``.

        Sequences are sorted by length before batching so that a batch pads as little as possible.
        """
        outputs: list[np.ndarray | None] = [None] * len(encodings)
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), self.batch_size):
            batch = [encodings[i] for i in order[start:start + self.batch_size]]
            result = self.session.run([self.output_name], self.feed(batch))[0]
            for row, index in enumerate(order[start:start + self.batch_size]):
                value = result[row]
                outputs[index] = value[: len(encodings[index].ids)] if value.ndim >= 2 else value
        return outputs

    def feed(self, batch: Sequence) -> dict[str, np.ndarray]:
        width = max(len(e.ids) for e in batch)
        arrays = {
            "input_ids": np.full((len(batch), width), self.pad_id, dtype=np.int64),
            "attention_mask": np.zeros((len(batch), width), dtype=np.int64),
            "token_type_ids": np.zeros((len(batch), width), dtype=np.int64),
        }
        for row, encoding in enumerate(batch):
            n = len(encoding.ids)
            arrays["input_ids"][row, :n] = encoding.ids
            arrays["attention_mask"][row, :n] = 1
            arrays["token_type_ids"][row, :n] = encoding.type_ids
        unknown = [name for name in self.input_names if name not in arrays]
        if unknown:
            raise PackageError(f"{self.model_file}: model input(s) {', '.join(unknown)} are not supported")
        return {name: arrays[name] for name in self.input_names}


# --- tagging ------------------------------------------------------------------------------------------------


@dataclass
class Tagged:
    """Labels of one text, one per character of the caller's text, with the model's confidence in each."""

    text: str
    labels: list[str]
    confidence: list[float]
    output: str | None = None  # the text rendered with the labels (segmented / punctuated), when the task can

    def as_dict(self) -> dict:
        return {"text": self.text, "labels": self.labels, "confidence": self.confidence, "output": self.output}


class TaggingRuntime(Runtime):
    """Character tagging: each character is its own word, long texts go through overlapping windows."""

    kind = "tagging"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = list(self.manifest["labels"])
        self.window_overlap = int(self.manifest.get("window_overlap", 0))
        self.bias = float(self.manifest.get("decision_bias", 0.0))
        self.bias_ids = bias_indices(self.labels, self.manifest.get("bias_labels", []), str(self.path / MANIFEST), PackageError)
        self.render = _renderer(self.manifest.get("task", ""))

    def char_logits(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per-character logits ``(len(text), n_labels)`` of each text (windows merged, no bias applied)."""
        texts = [self.model_text(text) for text in texts]
        owners = [(index, start, end) for index, text in enumerate(texts)
                  for start, end in window_spans(len(text), self.max_length - 2, self.window_overlap)]
        encodings = self.tokenizer.encode_batch([list(texts[i][a:b]) for i, a, b in owners], is_pretokenized=True)
        outputs = self.forward(encodings)
        values = [first_token_logits(first_token_positions(encoding.word_ids, end - start), logits)
                  for (_, start, end), encoding, logits in zip(owners, encodings, outputs)]
        return merge_record_windows(owners, [len(text) for text in texts], values)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """The scores every decision of this model is taken on: the logits with the tuned decision bias added
        (once, here)."""
        return biased(logits, self.bias_ids, self.bias)

    def predict(self, texts: Sequence[str]) -> list[Tagged]:
        results = []
        for text, logits in zip(texts, self.char_logits(texts)):
            scores = self.scores(logits)
            labels = decode_scores(scores, self.labels)
            results.append(Tagged(text, labels, self.confidence(scores),
                                  self.render(text, labels) if self.render else None))
        return results

    @staticmethod
    def confidence(scores: np.ndarray) -> list[float]:
        """Softmax probability of the chosen label, over the (biased) scores the decision was made on."""
        return [round(float(p), 6) for p in softmax(scores).max(-1)] if len(scores) else []


class BoundaryRuntime:
    """Segmentation (断句) answered by a punctuation model: a sentence ends wherever it puts any mark.

    One model serves both endpoints (half the training and the memory); measured against a segmentation model in
    docs/benchmarks.md. Labels are B/M/E/S; a character's confidence is the probability of what was decided there
    (a mark, of any kind, or none), from the same biased logits the punctuation decision is made on."""

    kind = "tagging"

    def __init__(self, punctuation: TaggingRuntime):
        from tagsmith.tasks import get_task

        task = get_task("segmentation")
        self.source, self.path, self.variant = punctuation, punctuation.path, punctuation.variant
        self.labels = list(task.labels)
        self.render = task.render
        self.none = punctuation.labels.index("O")
        self.manifest = {**punctuation.manifest, "task": "segmentation", "labels": self.labels,
                         "derived_from": f"punctuation package {punctuation.path} (any mark ends a sentence)"}

    def __repr__(self) -> str:
        return f"BoundaryRuntime({self.source!r})"

    def predict(self, texts: Sequence[str]) -> list[Tagged]:
        from tagsmith.tasks import labels_from_ends

        source, results = self.source, []
        for text, logits in zip(texts, source.char_logits(texts)):
            scores = source.scores(logits)
            ends = [mark != "O" for mark in decode_scores(scores, source.labels)]
            no_mark = softmax(scores)[:, self.none] if len(scores) else np.zeros(0)
            confidence = [round(float(1.0 - p if end else p), 6) for p, end in zip(no_mark, ends)]
            labels = labels_from_ends(ends) if text else []
            results.append(Tagged(text, labels, confidence, self.render(text, labels)))
        return results


def _renderer(task_name: str):
    """How the registry renders a result of the task (None for a task it does not know or that has no rendering)."""
    task = TASKS.get(task_name)
    return task.render if task is not None else None


# --- classification -----------------------------------------------------------------------------------------


@dataclass
class Classified:
    text: str
    label: str | list[str]  # multi-label: every label at or above its threshold
    score: float  # probability of ``label`` (multi-label: the highest probability)
    probabilities: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"text": self.text, "label": self.label, "score": self.score, "probabilities": self.probabilities}


class ClassificationRuntime(Runtime):
    """Text classification; a binary task predicts its positive label when its probability >= threshold."""

    kind = "classification"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = list(self.manifest["labels"])
        self.multi_label = self.manifest.get("problem_type") == "multi_label_classification"
        self.threshold = self.manifest.get("threshold")
        positive = self.manifest.get("positive_label")
        self.positive = positive if positive in self.labels else (self.labels[1] if len(self.labels) == 2 else None)
        #: thresholds tuned on validation that a request may pick by name, and the one the model decides at
        self.operating_points = self.manifest.get("operating_points") or {}
        self.threshold_objective = self.manifest.get("threshold_objective")

    def settings(self) -> dict:
        """The decision settings a request works with (and ``/info`` reports): the threshold, the positive label,
        the named operating points and which of them the model's own threshold is."""
        return {"threshold": self.threshold, "positive_label": self.positive,
                "operating_points": self.operating_points, "threshold_objective": self.threshold_objective}

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch([self.model_text(text) for text in texts])
        outputs = self.forward(encodings)
        return np.stack(outputs) if outputs else np.zeros((0, len(self.labels)), dtype=np.float32)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        logits = self.logits(texts)
        return sigmoid(logits) if self.multi_label else softmax(logits)

    def predict(self, texts: Sequence[str]) -> list[Classified]:
        probabilities = self.probabilities(texts)
        results = []
        choices = decide_classes(probabilities, self.labels, self.threshold, self.positive, self.multi_label)
        for text, row, choice in zip(texts, probabilities, choices):
            shown = {label: round(float(p), 6) for label, p in zip(self.labels, row)}
            if self.multi_label:
                label, score = [self.labels[i] for i in np.flatnonzero(choice)], float(row.max())
            else:
                label, score = self.labels[choice], float(row[choice])
            results.append(Classified(text, label, round(score, 6), shown))
        return results


# --- fill-mask ----------------------------------------------------------------------------------------------


class FillMaskRuntime(Runtime):
    """Masked-LM predictions: the top-k tokens, with probabilities, at every mask token of a text."""

    kind = "mlm"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        special = self.manifest.get("special_tokens", {})
        self.mask_token = special.get("mask", "[MASK]")
        mask_id = special.get("mask_id", self.tokenizer.token_to_id(self.mask_token))
        if mask_id is None:
            raise PackageError(f"{self.path}: the tokenizer has no mask token {self.mask_token!r}")
        self.mask_id = int(mask_id)

    def mask_logits(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Vocabulary logits ``(n_masks, vocab)`` at the mask tokens of each already tokenized sequence."""
        encodings = [TokenIds(list(sequence)) for sequence in ids]
        outputs = self.forward(encodings)
        return [logits[np.asarray(e.ids) == self.mask_id] for e, logits in zip(encodings, outputs)]

    def predict(self, texts: Sequence[str], top_k: int = 5) -> list[list[list[dict]]]:
        """For each text, for each mask token in it (in order), the ``top_k`` tokens as
        ``{"token", "token_id", "score"}``; a text without a mask token gives an empty list."""
        encodings = self.tokenizer.encode_batch([self.model_text(text) for text in texts])
        results = []
        for logits in self.mask_logits([e.ids for e in encodings]):
            per_mask = []
            for row in softmax(logits) if len(logits) else []:
                best = np.argsort(-row)[:top_k]
                per_mask.append([{"token": self.tokenizer.id_to_token(int(i)), "token_id": int(i),
                                  "score": round(float(row[i]), 6)} for i in best])
            results.append(per_mask)
        return results


@dataclass
class TokenIds:
    """Token ids that look enough like a ``tokenizers.Encoding`` for :meth:`Runtime.forward`."""

    ids: list[int]

    @property
    def type_ids(self) -> list[int]:
        return [0] * len(self.ids)


RUNTIMES = {"tagging": TaggingRuntime, "classification": ClassificationRuntime, "mlm": FillMaskRuntime}
