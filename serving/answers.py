"""The JSON the HTTP API answers with: pydantic models (they are the OpenAPI document) and the functions that
turn a runtime's raw output into them. Positions are offsets into the caller's own text, in characters.

Each answer shape (:data:`SHAPES`, named by a task's ``answer`` in the task registry) checks what a request asks of
the runtime before the texts are batched (``prepare``) and shapes the runtime's raw results (``results``). The
texts a runtime renders (segmented, punctuated) are its own ``output``: nothing is rendered a second time here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from tagsmith.decision import at_threshold
from tagsmith.tasks import SEGMENT_SEPARATOR, segmentation_sentences


def one_of(schema: dict) -> None:
    """Publish a union as ``oneOf``: BentoML's OpenAPI writer keeps only the first member of an ``anyOf``."""
    if "anyOf" in schema:
        schema["oneOf"] = schema.pop("anyOf")


class Sentence(BaseModel):
    text: str
    start: int = Field(description="offset of the sentence's first character in the input text")
    end: int = Field(description="offset just past its last character (text[start:end] is the sentence)")


class Segmented(BaseModel):
    text: str = Field(description="the input text, unchanged")
    segmented: str = Field(description=f"the sentences joined by {SEGMENT_SEPARATOR!r}")
    sentences: list[Sentence]
    labels: list[str] = Field(description="one of B M E S per character")
    confidence: list[float] = Field(description="the model's probability for each character's label")


class Mark(BaseModel):
    mark: str = Field(description="the punctuation mark")
    position: int = Field(description="insertion offset in the input text: the mark follows text[position - 1]")
    output_position: int = Field(description="index of the mark in 'punctuated'")
    confidence: float


class Punctuated(BaseModel):
    text: str = Field(description="the input text, unchanged")
    punctuated: str = Field(description="the text with the predicted marks inserted")
    marks: list[Mark]


class Toxicity(BaseModel):
    text: str
    label: str | list[str] = Field(description="the label at the model's tuned threshold (multi-label: every label at "
                                               "or above its threshold)", json_schema_extra=one_of)
    probability: float = Field(description="binary: probability of the positive label; otherwise of 'label'")
    threshold: float | list[float] | None = Field(description="the decision threshold the label was taken at",
                                                 json_schema_extra=one_of)
    operating_point: str | None = Field(None, description="which threshold: a named operating point of the model "
                                                          "(e.g. macro_f1, f1, recall_0.9), 'request' for one the "
                                                          "request gave, or null for a model without operating points")
    positive_label: str | None = None
    probabilities: dict[str, float]


class Fill(BaseModel):
    token: str
    token_id: int
    score: float


class FilledMask(BaseModel):
    text: str
    filled: str = Field(description="the text with each mask token replaced by its best candidate")
    masks: list[list[Fill]] = Field(description="for each mask token, in order, the top-k candidates")


class SegmentResponse(BaseModel):
    task: str = "segmentation"
    results: list[Segmented]


class PunctuateResponse(BaseModel):
    task: str = "punctuation"
    results: list[Punctuated]


class ToxicityResponse(BaseModel):
    task: str = "toxicity"
    results: list[Toxicity]


class FillMaskResponse(BaseModel):
    task: str = "mlm"
    results: list[FilledMask]


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="where: the field, and the index of a text in a list "
                                             "(['texts', 1]), ['body'] for the body as a whole")
    msg: str = Field(description="what is wrong there")


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer of the API: what is wrong in one sentence, and each problem with its place."""

    error: str = Field(description="what is wrong and where, with the limit and its variable where one was hit")
    detail: list[ErrorDetail] = Field([], description="one entry per problem (empty for a problem with the request "
                                                      "as a whole)")


# --- GET /info --------------------------------------------------------------------------------------------------


class TrainingInfo(BaseModel):
    run: str | None = None
    base_model: str | None = None
    architecture: str | None = None
    data_sha256: dict[str, str] = Field({}, description="sha256 of each data split the model was trained and "
                                                        "scored on")
    git_commit: str | None = None


class ModelInfo(BaseModel):
    """One task's model, or why it is not served (``served`` false: ``problem``)."""

    model_config = ConfigDict(extra="allow")

    task: str
    route: str
    served: bool
    problem: str | None = Field(None, description="why the task's package cannot be served (its endpoint answers "
                                                  "503)")
    package: str | None = Field(None, description="the package folder")
    kind: str | None = Field(None, description="tagging, classification or mlm")
    labels: list[str] = []
    model: str | None = Field(None, description="the model variant served: int8, fp32 or fp16")
    max_length: int | None = None
    script: str | None = Field(None, description="the script the model reads (simplified, traditional, keep); "
                                                 "either script is accepted and answered in the caller's own")
    training: TrainingInfo | None = None
    metrics: dict[str, Any] = Field({}, description="validation and test scores (fractions in [0, 1])")
    parity: dict[str, dict[str, float]] = Field({}, description="PyTorch vs ONNX Runtime on validation")
    data_grade: str | None = Field(None, description="real, demo (generated data) or unknown")
    package_sha256: dict[str, str] = Field({}, description="sha256 of each package file, verified at start")
    derived_from: str | None = None
    decision_bias: Any = None
    window_overlap: int | None = None
    threshold: Any = Field(None, description="classification: the tuned decision threshold")
    positive_label: str | None = None
    operating_points: dict[str, dict[str, Any]] | None = Field(None, description="named thresholds a /toxicity "
                                                                                 "request may pick")
    threshold_objective: str | None = None
    mask_token: str | None = None


class LimitsInfo(BaseModel):
    max_chars: int = Field(description="characters in one text (TAGSMITH_MAX_CHARS)")
    max_texts: int = Field(description="texts in one request (TAGSMITH_MAX_TEXTS)")
    max_total_chars: int = Field(description="characters in all texts of one request (TAGSMITH_MAX_TOTAL_CHARS)")
    max_body_bytes: int = Field(description="bytes of one request body (TAGSMITH_MAX_BODY_BYTES)")
    max_top_k: int = Field(description="largest fill_mask top_k (TAGSMITH_MAX_TOP_K)")


class BatchingInfo(BaseModel):
    max_batch_size: int = Field(description="texts per model run")
    max_latency_ms: int = Field(description="longest wait for a model run before a request gets a 503")


class InfoResponse(BaseModel):
    """The served models, the request limits and the batching settings."""

    models: dict[str, ModelInfo] = Field(description="by task")
    tasks: dict[str, str] = Field(description="task -> route, for the tasks served here")
    limits: LimitsInfo
    batching: BatchingInfo


INFO_EXAMPLE = {
    "models": {
        "punctuation": {
            "task": "punctuation", "route": "/punctuate", "served": True, "package": "serving/shipped/punctuation",
            "kind": "tagging", "labels": ["O", "，", "。", "：", "、", "；", "？", "！"], "model": "int8",
            "max_length": 128, "script": "simplified",
            "training": {"run": "punctuation-cpu-2h", "base_model": "runs/punctuation-cpu/best",
                         "architecture": "EncoderCnnForTokenClassification",
                         "data_sha256": {"train": "f2c35efc26cb2f59f493c78ef33855472e8c1aa7eb42f6b073f942ce29f78b91"},
                         "git_commit": "54b227ca9c466ee433590be7ee1105dee92a23dd"},
            "metrics": {"test": {"micro_f1": 0.5345, "macro_f1": 0.4496, "any_mark_f1": 0.6756}},
            "parity": {"onnx_int8": {"metric": 0.505739, "max_abs_logit_diff": 0.124, "agreement": 0.998556}},
            "data_grade": "real",
            "package_sha256": {"model.int8.onnx": "36adb9509d67bc7042c5945db74c7f0082eea886084ba223d39480330b8350ec",
                               "tokenizer.json": "98d3f2749b44225bab490439cb776af729ff1dd92de4023ecfbc34d7123b30f9"},
            "decision_bias": -0.25, "window_overlap": 32,
        },
        "toxicity": {
            "task": "toxicity", "route": "/toxicity", "served": False,
            "problem": "models/toxicity: package does not match its manifest, refusing to load it: model.int8.onnx: "
                       "sha256 mismatch (manifest 3f1c0a9e7b2d..., file 9a0e4c1d2b7f...)",
        },
    },
    "tasks": {"punctuation": "/punctuate", "toxicity": "/toxicity"},
    "limits": {"max_chars": 20000, "max_texts": 64, "max_total_chars": 200000, "max_body_bytes": 2097152,
               "max_top_k": 50},
    "batching": {"max_batch_size": 32, "max_latency_ms": 20000},
}


# --- raw runtime output -> answers ------------------------------------------------------------------------


def segmented(raw: dict) -> dict:
    """``raw``: a tagging runtime's result (``Tagged.as_dict``); ``output`` is its rendering (the sentences joined
    by the separator)."""
    text, labels = raw["text"], raw["labels"]
    spans = segmentation_sentences(text, labels)
    return {"text": text, "segmented": raw["output"],
            "sentences": [{"text": text[a:b], "start": a, "end": b} for a, b in spans],
            "labels": labels, "confidence": raw["confidence"]}


def punctuated(raw: dict) -> dict:
    """``raw``: a tagging runtime's result; ``output`` is its rendering (the text with the marks inserted)."""
    text, marks = raw["text"], []
    for index, (label, confidence) in enumerate(zip(raw["labels"], raw["confidence"])):
        if label != "O":
            marks.append({"mark": label, "position": index + 1, "output_position": index + 1 + len(marks),
                          "confidence": confidence})
    return {"text": text, "punctuated": raw["output"], "marks": marks}


def toxicity(raw: dict, threshold: Any, positive: str | None, point: str | None = None,
             chosen: float | None = None) -> dict:
    """``chosen``: a threshold this request asked for (by value or by operating point ``point``), applied to the
    probability here; else the label the runtime took at the model's own ``threshold``."""
    probabilities = raw["probabilities"]
    binary = positive is not None and not isinstance(raw["label"], list) and len(probabilities) == 2
    probability = probabilities[positive] if binary else raw["score"]
    label = raw["label"]
    if binary and chosen is not None:
        other = next(name for name in probabilities if name != positive)
        label, threshold = (positive if at_threshold(probability, chosen) else other), chosen
    return {"text": raw["text"], "label": label, "probability": probability,
            "threshold": threshold if threshold is not None else (0.5 if binary else None),
            "operating_point": point, "positive_label": positive if binary else None, "probabilities": probabilities}


def choose_threshold(info: dict, threshold: float | None, operating_point: str | None) -> tuple[str | None, float | None]:
    """(operating point name, threshold to apply or None for the model's own) for a /toxicity request; ValueError
    with the reason for a request the model cannot honour."""
    points = info.get("operating_points") or {}
    default = info.get("threshold_objective") if info.get("threshold_objective") in points else None
    if threshold is None and operating_point is None:
        return default, None
    if info.get("positive_label") is None:
        raise ValueError("threshold and operating_point need a binary model; this one is not")
    if threshold is not None and operating_point is not None:
        raise ValueError("give a threshold or an operating_point, not both")
    if threshold is not None:
        return "request", float(threshold)
    if operating_point not in points:
        known = ", ".join(points) or "none (the package records no operating points)"
        raise ValueError(f"unknown operating_point {operating_point!r}; this model has: {known}")
    return operating_point, float(points[operating_point]["threshold"])


def filled_mask(text: str, masks: list[list[dict]], mask_token: str, top_k: int) -> dict:
    masks = [candidates[:top_k] for candidates in masks]
    filled = text
    for candidates in masks:
        filled = filled.replace(mask_token, candidates[0]["token"] if candidates else mask_token, 1)
    return {"text": text, "filled": filled, "masks": masks}


# --- answer shapes: what a request asks of a runtime, and its results -----------------------------------------


@dataclass(frozen=True)
class Shape:
    """How one kind of answer is made. ``prepare(runtime, texts, **request)``: the request's settings checked
    against the runtime (``serving.limits.InputError`` for what it cannot honour), before any model run;
    ``results(raw, texts, runtime, prepared)``: the runtime's raw results (one per text) -> the answers;
    ``response``: the response model (the OpenAPI document)."""

    response: type[BaseModel]
    results: Callable[..., list]
    prepare: Callable[..., dict] = lambda runtime, texts, **request: {}


def _classification_settings(runtime, texts, threshold: float | None = None, operating_point: str | None = None,
                             **_: Any) -> dict:
    from serving.limits import InputError

    settings = runtime.settings()
    try:
        point, chosen = choose_threshold(settings, threshold, operating_point)
    except ValueError as error:
        raise InputError(str(error)) from None
    return {"threshold": settings["threshold"], "positive": settings["positive_label"], "point": point,
            "chosen": chosen}


def _mask_settings(runtime, texts, top_k: int = 5, limits=None, **_: Any) -> dict:
    from serving.limits import InputError, check_top_k

    top_k = check_top_k(top_k, limits)
    mask_token = runtime.mask_token
    missing = [i for i, text in enumerate(texts) if mask_token not in text]
    if missing:
        detail = [{"loc": ["texts", i], "msg": f"no {mask_token}"} for i in missing]
        raise InputError(f"texts[{missing[0]}] has no {mask_token} token: put {mask_token} where a token should "
                         "be predicted", detail=detail)
    return {"top_k": top_k, "mask_token": mask_token}


SHAPES: dict[str, Shape] = {
    "segmented": Shape(SegmentResponse, lambda raw, texts, runtime, prepared: [segmented(r) for r in raw]),
    "punctuated": Shape(PunctuateResponse, lambda raw, texts, runtime, prepared: [punctuated(r) for r in raw]),
    "toxicity": Shape(ToxicityResponse, lambda raw, texts, runtime, prepared: [toxicity(r, **prepared) for r in raw],
                      _classification_settings),
    "filled_mask": Shape(FillMaskResponse,
                         lambda raw, texts, runtime, prepared: [filled_mask(t, m, prepared["mask_token"], prepared["top_k"])
                                                                for t, m in zip(texts, raw)],
                         _mask_settings),
}
