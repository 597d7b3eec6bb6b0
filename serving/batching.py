"""Adaptive batching in front of a model runtime, in-process: BentoML's own dispatcher (``CorkDispatcher``, the
one behind ``@bentoml.api(batchable=True)``) merges the texts of concurrent requests into one model run, with a
bounded batch size and a bounded wait, and learns from the model's timings how long to wait.

Why the public endpoints do not call ``batchable=True`` endpoints through the service's own client
(``self.to_async``), the way BentoML batches calls made inside a service: with bentoml 1.4.39 that client keeps
about 13 KB per call for as long as its session lives, and the session recycling meant to bound it closes calls
still in flight (HTTP 500 under load, bentoml issue #5540). Calling the dispatcher directly also saves a second
pass through the whole HTTP stack for every request.
"""

from __future__ import annotations

from typing import Callable, Sequence

import anyio


class Overloaded(RuntimeError):
    """A request waited longer than the batch latency bound: the server is overloaded (answered with 503)."""


def _overloaded():
    raise Overloaded("the server is overloaded: a request waited longer than TAGSMITH_MAX_LATENCY_MS; retry later")


class Batcher:
    """``await batcher(texts)`` = ``predict(texts)``, run in a batch with the texts of concurrent calls."""

    def __init__(self, name: str, predict: Callable[[list[str]], list], max_batch_size: int, max_latency_ms: int,
                 limiter: anyio.CapacityLimiter, observe: Callable[[str, int], None] | None = None):
        from bentoml._internal.marshal.dispatcher import CorkDispatcher

        self.name = name
        self.predict = predict
        self.limiter = limiter  # one model run at a time per process: ONNX Runtime already uses every core
        self.observe = observe
        self.dispatcher = CorkDispatcher(max_latency_in_ms=max_latency_ms, max_batch_size=max_batch_size,
                                         fallback=_overloaded, get_batch_size=len, batch_dim=(0, 0))
        self._call = self.dispatcher(self._run_batch)

    async def __call__(self, texts: list[str]) -> list:
        return await self._call(texts)

    async def _run_batch(self, requests: Sequence[list[str]]) -> list[list]:
        texts = [text for request in requests for text in request]
        if self.observe:
            self.observe(self.name, len(texts))
        results = await anyio.to_thread.run_sync(self.predict, texts, limiter=self.limiter)
        split, start = [], 0
        for request in requests:
            split.append(results[start:start + len(request)])
            start += len(request)
        return split

    def shutdown(self) -> None:
        self.dispatcher.shutdown()
