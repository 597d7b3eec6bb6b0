"""The JSON the HTTP API answers with: pydantic models (they are the OpenAPI document) and the functions that
turn a runtime's raw output into them. Positions are offsets into the caller's own text, in characters."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

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


class ErrorResponse(BaseModel):
    error: str
    detail: list[dict[str, Any]] = []


# --- raw runtime output -> answers ------------------------------------------------------------------------


def segmented(raw: dict) -> dict:
    text, labels = raw["text"], raw["labels"]
    spans = segmentation_sentences(text, labels)
    return {"text": text, "segmented": SEGMENT_SEPARATOR.join(text[a:b] for a, b in spans),
            "sentences": [{"text": text[a:b], "start": a, "end": b} for a, b in spans],
            "labels": labels, "confidence": raw["confidence"]}


def punctuated(raw: dict) -> dict:
    text, out, marks = raw["text"], [], []
    for index, (char, label, confidence) in enumerate(zip(text, raw["labels"], raw["confidence"])):
        out.append(char)
        if label != "O":
            marks.append({"mark": label, "position": index + 1, "output_position": index + 1 + len(marks),
                          "confidence": confidence})
            out.append(label)
    return {"text": text, "punctuated": "".join(out), "marks": marks}


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
        label, threshold = (positive if probability >= chosen else other), chosen
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
