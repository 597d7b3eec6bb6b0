"""What one request may ask of the server, and the checks that turn bad input into a 4xx answer naming the problem.

Every limit is configurable through the environment (read when the service starts):

=========================  =========  ==================================================================
variable                   default    limit
=========================  =========  ==================================================================
TAGSMITH_MAX_CHARS         20000      characters in one text (a longer text is refused, never truncated)
TAGSMITH_MAX_TEXTS         64         texts in one request
TAGSMITH_MAX_TOTAL_CHARS   200000     characters in all texts of one request together
TAGSMITH_MAX_BODY_BYTES    2097152    bytes of one request body (checked before the body is parsed)
TAGSMITH_MAX_TOP_K         50         fill_mask: largest ``top_k``
=========================  =========  ==================================================================

The limits a JSON schema can say are also in the request model (:func:`texts_type`: ``minLength`` / ``maxLength`` of a
text, ``minItems`` / ``maxItems`` of the list), so the OpenAPI document publishes them; a request over a limit is
still answered by :func:`check_texts`'s message and status (:meth:`InputError.from_validation_error`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from typing import Annotated, Any, Mapping, Union

from pydantic import Field, StringConstraints, ValidationError, WrapValidator
from pydantic_core import PydanticCustomError

#: the pydantic error type that carries an InputError through request validation
INPUT_ERROR = "tagsmith_input"

ENV = {"max_chars": "TAGSMITH_MAX_CHARS", "max_texts": "TAGSMITH_MAX_TEXTS",
       "max_total_chars": "TAGSMITH_MAX_TOTAL_CHARS", "max_body_bytes": "TAGSMITH_MAX_BODY_BYTES",
       "max_top_k": "TAGSMITH_MAX_TOP_K"}


@dataclass(frozen=True)
class Limits:
    max_chars: int = 20_000
    max_texts: int = 64
    max_total_chars: int = 200_000
    max_body_bytes: int = 2 * 1024 * 1024
    max_top_k: int = 50

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Limits":
        values = {}
        for item in fields(cls):
            raw = env.get(ENV[item.name])
            if raw is None or raw.strip() == "":
                continue
            try:
                values[item.name] = int(raw)
            except ValueError:
                raise ValueError(f"{ENV[item.name]}={raw!r}: expected a positive whole number") from None
            if values[item.name] < 1:
                raise ValueError(f"{ENV[item.name]}={raw!r}: expected a positive whole number")
        return cls(**values)

    def as_dict(self) -> dict[str, int]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


class InputError(ValueError):
    """Input the server refuses: answered with ``status`` and ``{"error": message, "detail": [...]}``."""

    def __init__(self, message: str, status: int = 400, detail: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail or []

    def as_json(self) -> dict[str, Any]:
        return {"error": self.message, "detail": self.detail}

    def as_pydantic(self) -> PydanticCustomError:
        """This error as a pydantic validation error that keeps its status and detail (for request models)."""
        return PydanticCustomError(INPUT_ERROR, "{message}",
                                   {"message": self.message, "status": self.status, "detail": self.detail})

    @classmethod
    def from_validation_error(cls, error: ValidationError) -> "InputError":
        """The answer to a request its model refused: the InputError a validator raised (same message and status
        as :func:`check_texts` gives), else a 400 naming every field pydantic refused and why."""
        problems = error.errors(include_url=False, include_input=False)
        for problem in problems:
            if problem["type"] == INPUT_ERROR:
                ctx = problem["ctx"]
                return cls(ctx["message"], status=ctx["status"], detail=ctx["detail"])
        detail = [{"loc": list(p["loc"]) or ["body"], "msg": p["msg"]} for p in problems]
        prefix = "" if len(detail) == 1 else f"{len(detail)} problems in the request; first: "
        return cls(prefix + _located(detail[0]), detail=detail)


def check_texts(texts: Any, limits: Limits) -> list[str]:
    """``texts`` (one string or a list of strings) as a list; InputError naming every problem otherwise."""
    if isinstance(texts, str):
        texts, where = [texts], lambda i: ["texts"]
    elif isinstance(texts, list):
        where = lambda i: ["texts", i]  # noqa: E731
        if not texts:
            raise InputError("'texts' is an empty list: send one text or a list of 1 or more texts",
                             detail=[{"loc": ["texts"], "msg": "empty list"}])
        if len(texts) > limits.max_texts:
            raise InputError(f"too many texts: {len(texts)} in one request, at most {limits.max_texts} "
                             f"(TAGSMITH_MAX_TEXTS)", status=413, detail=[{"loc": ["texts"], "msg": "too many texts"}])
    else:
        raise InputError(f"'texts' must be a string or a list of strings, not {_json_type(texts)}",
                         detail=[{"loc": ["texts"], "msg": "wrong type"}])
    problems = []
    for index, text in enumerate(texts):
        message = _text_problem(text, limits)
        if message:
            problems.append({"loc": where(index), "msg": message})
    if problems:
        prefix = "" if len(problems) == 1 else f"{len(problems)} bad texts; first: "
        only_too_long = all(p["msg"].startswith("text too long") for p in problems)
        raise InputError(prefix + _located(problems[0]), status=413 if only_too_long else 400, detail=problems)
    total = sum(map(len, texts))
    if total > limits.max_total_chars:
        raise InputError(f"request too large: {total} characters in all texts together, at most "
                         f"{limits.max_total_chars} (TAGSMITH_MAX_TOTAL_CHARS)", status=413,
                         detail=[{"loc": ["texts"], "msg": "too many characters in total"}])
    return texts


def texts_type(limits: Limits) -> Any:
    """The type of a request's ``texts``: one text or a list of 1 to ``max_texts`` texts, each of 1 to ``max_chars``
    characters; its JSON schema publishes those limits. Validation runs :func:`check_texts` first (so the message
    and status are the ones it gives, carried as :meth:`InputError.as_pydantic`) and yields the texts as a list."""
    text = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_chars)]
    texts = Annotated[list[text], Field(min_length=1, max_length=limits.max_texts)]

    def checked(value: Any, handler) -> list[str]:
        try:
            value = check_texts(value, limits)
        except InputError as error:
            raise error.as_pydantic() from None
        return handler(value)

    return Annotated[Union[text, texts], WrapValidator(checked)]


def check_top_k(top_k: Any, limits: Limits) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= limits.max_top_k:
        raise InputError(f"'top_k' must be a whole number from 1 to {limits.max_top_k}, got {json.dumps(top_k)[:40]}",
                         detail=[{"loc": ["top_k"], "msg": "out of range"}])
    return top_k


def _text_problem(text: Any, limits: Limits) -> str | None:
    if not isinstance(text, str):
        return f"must be a string, not {_json_type(text)}"
    if not text.strip():
        return "empty text (nothing but whitespace)" if text else "empty text"
    if len(text) > limits.max_chars:
        return f"text too long: {len(text)} characters, at most {limits.max_chars} (TAGSMITH_MAX_CHARS)"
    surrogate = next((i for i, c in enumerate(text) if "\ud800" <= c <= "\udfff"), None)
    if surrogate is not None:
        return f"unpaired UTF-16 surrogate {text[surrogate].encode('unicode_escape').decode()} at character {surrogate}"
    return None


def _located(problem: dict) -> str:
    """``texts[1]: msg``, ``top_k: msg``, ``body: msg`` for a problem at ``loc``."""
    name = "".join(f"[{part}]" if isinstance(part, int) else (f".{part}" if i else str(part))
                   for i, part in enumerate(problem["loc"]))
    return f"{name}: {problem['msg']}"


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "a list",
             str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)
