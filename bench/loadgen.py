"""A small closed-loop HTTP load generator for the API (asyncio + aiohttp): N clients, each sending its next request
as soon as its last one is answered, for a fixed time or a fixed number of requests. bench/serving_bench.py and the
robustness tests use it; it talks to whatever URL it is given (use loopback).

aiohttp rather than httpx: on a 2-core machine an httpx client used most of a core itself and capped what it could
measure at about a third of what the server does; aiohttp comes with BentoML anyway."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence


@dataclass
class LoadResult:
    clients: int
    requests: int
    errors: int
    seconds: float
    texts: int
    latencies_ms: list[float] = field(repr=False, default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]

    def summary(self) -> dict:
        values = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        values.update(requests_per_s=round(self.throughput, 1),
                      texts_per_s=round(self.texts / self.seconds, 1) if self.seconds else 0.0,
                      p50_ms=round(self.percentile(50), 2), p90_ms=round(self.percentile(90), 2),
                      p99_ms=round(self.percentile(99), 2), max_ms=round(max(self.latencies_ms, default=0.0), 2))
        return values


async def _run(url: str, bodies: Sequence[dict], clients: int, duration: float | None, total: int | None,
               timeout: float) -> LoadResult:
    import aiohttp

    result = LoadResult(clients=clients, requests=0, errors=0, seconds=0.0, texts=0)
    next_body = itertools.cycle(bodies).__next__
    sent = itertools.count()
    started = time.perf_counter()
    deadline = started + duration if duration else float("inf")

    async def client(http: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline and (total is None or next(sent) < total):
            body = next_body()
            begin = time.perf_counter()
            try:
                async with http.post(url, json=body) as response:
                    text = await response.text()
                    ok, problem = response.status == 200, f"{response.status}: {text[:200]}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                ok, problem = False, f"{type(error).__name__}: {error}"
            result.latencies_ms.append((time.perf_counter() - begin) * 1000)
            result.requests += 1
            texts = body.get("texts")
            result.texts += len(texts) if isinstance(texts, list) else 1
            if not ok:
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(problem)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
                                     trust_env=False) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


def run_load(url: str, bodies: Sequence[dict], clients: int = 32, duration: float | None = 10.0,
             total: int | None = None, timeout: float = 60.0) -> LoadResult:
    """``clients`` concurrent clients POST ``bodies`` (cycled) to ``url`` for ``duration`` s or ``total`` requests."""
    if duration is None and total is None:
        raise ValueError("give a duration, a number of requests, or both")
    try:  # the client shares the machine with the server it measures: the cheaper its event loop, the better
        import uvloop
    except ImportError:
        return asyncio.run(_run(url, bodies, clients, duration, total, timeout))
    return uvloop.run(_run(url, bodies, clients, duration, total, timeout))
