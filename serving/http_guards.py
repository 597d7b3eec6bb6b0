"""ASGI middlewares that keep malformed HTTP away from the API: each answers in JSON with a 4xx status.

* :class:`BodyLimitMiddleware`: a body over ``max_bytes`` is refused (413) before anything buffers or parses it;
* :class:`JSONOnlyMiddleware`: the API routes take JSON; another declared Content-Type is refused (415) instead of
  reaching BentoML's form parser (which answers a malformed multipart body with a 500);
* :class:`JSONErrorsMiddleware`: Starlette's plain-text 404 / 405 become JSON like every other error;
* :class:`DocumentMiddleware`: ``GET /docs.json`` answers the project's OpenAPI document (``serving/openapi.py``).
"""

from __future__ import annotations

import json
from typing import Callable


def body_too_large(max_bytes: int) -> dict:
    """The 413 body for a request body over ``max_bytes``."""
    return {"error": f"request body too large: more than {max_bytes} bytes (TAGSMITH_MAX_BODY_BYTES)",
            "detail": [{"loc": ["body"], "msg": "too large"}]}


def not_json(media_type: str) -> dict:
    """The 415 body for a POST whose Content-Type is ``media_type``."""
    return {"error": f"unsupported Content-Type {media_type!r}: the API takes JSON "
                     "(send Content-Type: application/json)",
            "detail": [{"loc": ["headers", "content-type"], "msg": "not JSON"}]}


class BodyLimitMiddleware:
    """Refuse (413, JSON) a request body larger than ``max_bytes`` before anything parses it.

    A pure ASGI middleware: the declared Content-Length is checked first, then the bytes actually received, so a
    client that lies or streams without a length cannot make the server buffer more than ``max_bytes``.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return await _send_json(send, 400, {"error": "invalid Content-Length header", "detail": []})
            if int(declared) > self.max_bytes:
                return await self._too_large(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._too_large(send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send):
        # close: the rest of an oversized body is never read
        await _send_json(send, 413, body_too_large(self.max_bytes), close=True)


class JSONOnlyMiddleware:
    """POSTs to ``paths`` must carry JSON (no Content-Type, ``application/json`` or ``*/*+json``); 415 otherwise."""

    def __init__(self, app, paths):
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in self.paths:
            declared = dict(scope.get("headers") or []).get(b"content-type", b"").decode("latin-1")
            media_type = declared.split(";")[0].strip().lower()
            if media_type and media_type != "application/json" and not media_type.endswith("+json"):
                return await _send_json(send, 415, not_json(media_type))
        await self.app(scope, receive, send)


class JSONErrorsMiddleware:
    """Starlette answers an unknown route (404) or a wrong method (405) in plain text; the API answers in JSON.

    Only those two plain-text answers are rewritten; the demo page's own responses pass untouched.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rewritten = False

        async def send_json_errors(message):
            nonlocal rewritten
            if message["type"] == "http.response.start" and message["status"] in (404, 405):
                content_type = dict(message.get("headers") or []).get(b"content-type", b"")
                if content_type.startswith(b"text/plain"):
                    rewritten = True
                    what = "no such route" if message["status"] == 404 else "method not allowed"
                    allow = dict(message.get("headers") or []).get(b"allow", b"").decode()
                    hint = f"; allowed: {allow}" if allow else ""
                    return await _send_json(send, message["status"], {
                        "error": f"{what}: {scope['method']} {scope['path']}{hint}", "detail": []})
            elif rewritten:
                return  # the original plain-text body
            await send(message)

        await self.app(scope, receive, send_json_errors)


class DocumentMiddleware:
    """``GET path`` answers ``document()`` (built at the first request, then kept): the served OpenAPI document."""

    def __init__(self, app, document: Callable[[], dict], path: str = "/docs.json"):
        self.app = app
        self.document = document
        self.path = path
        self._body: dict | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == self.path and scope["method"] == "GET":
            if self._body is None:
                self._body = self.document()
            return await _send_json(send, 200, self._body)
        await self.app(scope, receive, send)


async def _send_json(send, status: int, value: dict, close: bool = False) -> None:
    body = json.dumps(value, ensure_ascii=False).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + ([(b"connection", b"close")] if close else [])})
    await send({"type": "http.response.body", "body": body})
