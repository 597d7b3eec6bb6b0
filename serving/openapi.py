"""The OpenAPI document the server publishes at ``/docs.json``: BentoML's, plus the contract it leaves out.

BentoML writes each endpoint's request and 200 response from the pydantic models (so the request limits are
there: ``minLength`` / ``maxLength`` of each text, ``minItems`` / ``maxItems`` of a list; ``serving/limits.py``),
but documents its own error bodies (``{"error": str, "detail": str}``) for 400 / 404 / 500 only, and knows nothing
of the routes a mounted app serves (``GET /info``). :func:`document` adds, for every endpoint, the error answers
it can give (400, 404, 413, 415, 503, 500) as :class:`serving.answers.ErrorResponse` with examples made by the same
code that answers them, and ``GET /info`` with :class:`serving.answers.InfoResponse` and an example.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

from pydantic import ValidationError, create_model

from serving import answers
from serving.http_guards import body_too_large, not_json
from serving.limits import InputError, Limits, check_texts

REF = "#/components/schemas/{model}"
#: error answers of the text endpoints: status -> what they mean
TEXT_ERRORS = {
    400: "bad input: not JSON, a field missing or of the wrong type, an empty text, a parameter out of range",
    404: "no model for this task is served here (or no such route)",
    413: "over a request limit: characters in a text, texts in a request, characters in all, body bytes",
    415: "the body is not JSON (Content-Type)",
    503: "the task's package cannot be served (a modified file, a wrong task), or the server is overloaded "
         "(Retry-After)",
    500: "an unexpected error (the server log says more)",
}
INFO_ERRORS = {400: "the POST body is not JSON", 500: TEXT_ERRORS[500]}


def document(spec: dict, limits: Limits, routes: dict[str, str], info: dict[str, Any],
             not_served: Callable[[str], str]) -> dict:
    """BentoML's ``spec`` (``Service.openapi_spec.asdict()``) with the error answers and ``GET /info``.

    ``routes``: task -> route of the text endpoints; ``info``: what ``/info`` says about limits and batching (for
    its example); ``not_served(task)``: the 404 message for a task without a package."""
    spec = json.loads(json.dumps(spec))  # a copy, with the JSON's string keys (asdict() keeps int status codes)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    _add_model(schemas, answers.ErrorResponse)
    tasks = {route: task for task, route in routes.items()}
    for route, item in spec.get("paths", {}).items():
        operation = item.get("post") or {}
        if "x-bentoml-name" not in operation:
            continue  # BentoML's infrastructure routes (health, metrics)
        if route in tasks:
            _document_errors(operation, TEXT_ERRORS, text_errors(tasks[route], route, limits, not_served))
            operation["requestBody"]["description"] = (
                f"a JSON object, at most {limits.max_body_bytes} bytes (TAGSMITH_MAX_BODY_BYTES); at most "
                f"{limits.max_total_chars} characters in all texts together (TAGSMITH_MAX_TOTAL_CHARS)")
        elif route == "/info":
            _document_errors(operation, INFO_ERRORS, {400: {"invalid JSON": _refused(b"{")}, 500: _unexpected()})
            example = {**answers.INFO_EXAMPLE, **info}
            answers.InfoResponse.model_validate(example)  # the example is what the model says
            operation["responses"]["200"]["content"]["application/json"]["example"] = example
            get = {k: v for k, v in copy.deepcopy(operation).items() if k != "requestBody"}
            get["operationId"] = operation["operationId"] + "_get"
            get["x-bentoml-name"] = operation["x-bentoml-name"] + "_get"
            get["responses"].pop("400", None)
            item["get"] = get
    _drop_unused(spec, ("InvalidArgument", "NotFound", "InternalServerError"))
    return spec


def text_errors(task: str, route: str, limits: Limits,
                not_served: Callable[[str], str]) -> dict[int, dict[str, dict]]:
    """status -> example name -> the body the server answers a text endpoint with (made by the code that does)."""
    many = limits.max_total_chars // limits.max_chars + 1
    too_long = {"text too long": _refused_texts("天" * (limits.max_chars + 1), limits),
                "too many texts": _refused_texts(["天"] * (limits.max_texts + 1), limits),
                "body too large": body_too_large(limits.max_body_bytes)}
    if many <= limits.max_texts:  # else no request within the other limits can be over the total
        too_long["too many characters in all"] = _refused_texts(["天" * limits.max_chars] * many, limits)
    return {
        400: {"empty text": _refused_texts(["天地玄黃", " "], limits),
              "not a string": _refused_texts(["天地玄黃", 7], limits),
              "missing field": _refused(b"{}"),
              "invalid JSON": _refused(b"texts=abc")},
        404: {"no model": {"error": not_served(task), "detail": []},
              "no such route": {"error": f"no such route: POST {route}s", "detail": []}},
        413: too_long,
        415: {"not JSON": not_json("application/x-www-form-urlencoded")},
        503: {"package refused": {"error": f"the {task} model cannot be served: models/{task}: package does not "
                                           "match its manifest, refusing to load it: tokenizer.json: sha256 mismatch "
                                           "(manifest 0c2d4e6f8a1b..., file 7e9f1a3b5c2d...)", "detail": []},
              "overloaded": {"error": "the server is overloaded: a request waited longer than "
                                      "TAGSMITH_MAX_LATENCY_MS; retry later", "detail": []}},
        500: _unexpected(),
    }


def _document_errors(operation: dict, statuses: dict[int, str], examples: dict[int, dict[str, dict]]) -> None:
    responses = operation["responses"]
    for status in [s for s in responses if s.isdigit() and int(s) >= 400 and int(s) not in statuses]:
        del responses[status]
    for status, description in statuses.items():
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {
                "schema": {"$ref": REF.format(model="ErrorResponse")},
                "examples": {name: {"summary": name, "value": body} for name, body in examples[status].items()},
            }},
        }
        if status == 503:
            responses[str(status)]["headers"] = {"Retry-After": {
                "description": "seconds to wait (when overloaded)", "schema": {"type": "integer"}}}


def _refused_texts(texts: Any, limits: Limits) -> dict:
    try:
        check_texts(texts, limits)
    except InputError as error:
        return error.as_json()
    raise AssertionError(f"{texts!r} passed the checks")


def _refused(body: bytes) -> dict:
    """What the server answers a POST body that the request model refuses (the same conversion as the server's)."""
    model = create_model("Input", texts=(str, ...))
    try:
        model.model_validate_json(body)
    except ValidationError as error:
        return InputError.from_validation_error(error).as_json()
    raise AssertionError(f"{body!r} passed")


def _unexpected() -> dict[str, dict]:
    return {"unexpected": {"error": "An unexpected error has occurred, please check the server log."}}


def _add_model(schemas: dict, model) -> None:
    schema = model.model_json_schema(ref_template=REF)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema


def _drop_unused(spec: dict, names: tuple[str, ...]) -> None:
    schemas = spec["components"]["schemas"]
    for name in names:
        if name in schemas and json.dumps(spec).count(f'"{REF.format(model=name)}"') == 0:
            del schemas[name]
