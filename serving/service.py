"""The HTTP API (BentoML) and the demo page: ``bentoml serve serving.service:TagsmithService``.

One service holds one ONNX Runtime per model package found in ``TAGSMITH_MODELS`` (default ``models/``; only the
tasks present there are served). Each public endpoint (``/segment``, ``/punctuate``, ``/toxicity``,
``/fill_mask``: one text or a list) checks the request (``serving/limits.py``), hands the texts to the task's
adaptive batcher (``serving/batching.py``: BentoML's batching dispatcher, so concurrent requests share one model
run) and shapes the answer (``serving/answers.py``). The Gradio demo, mounted at ``/demo``, answers through the
same path. Malformed HTTP is stopped before BentoML parses it (``serving/http_guards.py``).

The request models carry the limits (``serving.limits.texts_type``), and ``/docs.json`` is BentoML's OpenAPI document
with the error answers and ``GET /info`` added (``serving/openapi.py``).
"""

from __future__ import annotations

import gc
import os
from typing import Any, Optional

from serving import bentoml_fixes

bentoml_fixes.apply()  # before BentoML builds anything: its per-request leaks under load (see the module)

import bentoml  # noqa: E402
from pydantic import Field  # noqa: E402

with bentoml.importing():
    import anyio
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from serving import answers
    from serving.batching import Batcher, Overloaded
    from serving.demo_page import demo_app
    from serving.http_guards import BodyLimitMiddleware, DocumentMiddleware, JSONErrorsMiddleware, JSONOnlyMiddleware
    from serving.limits import InputError, Limits, check_texts, texts_type
    from serving.openapi import document
    from tagsmith.tasks import get_task
    from serving.packages import (TASKS, load_all, log_to_stderr, model_info, models_dir, not_served_message,
                                  present_tasks, runtime_threads)

LIMITS = Limits.from_env()
MAX_BATCH_SIZE = int(os.environ.get("TAGSMITH_MAX_BATCH_SIZE", 32))  # texts per model run
MAX_LATENCY_MS = int(os.environ.get("TAGSMITH_MAX_LATENCY_MS", 20_000))  # then a waiting request gets a 503
BATCH_SIZES = bentoml.metrics.Histogram(name="tagsmith_batch_size", documentation="texts per model run, by task",
                                        labelnames=["task"], buckets=(1, 2, 4, 8, 16, 32, 64, 128))

Texts = texts_type(LIMITS)  # one text or a list, with the limits (published in the OpenAPI document)
TEXTS_HELP = (f"one text or a list of texts (at most {LIMITS.max_texts} texts of at most {LIMITS.max_chars} "
              f"characters each, {LIMITS.max_total_chars} in all)")


def texts_field(*examples: str, description: str = TEXTS_HELP):
    return Field(description=description, examples=list(examples), json_schema_extra=answers.one_of)


def raw_predictor(runtime):
    """The runtime's answer for a list of texts, as plain JSON-able values."""
    if runtime.kind == "mlm":
        return lambda texts: runtime.predict(texts, top_k=LIMITS.max_top_k)
    return lambda texts: [result.as_dict() for result in runtime.predict(texts)]


async def get_info(request) -> JSONResponse:
    return JSONResponse(bentoml.get_current_service().describe())


@bentoml.asgi_app(demo_app(present_tasks(models_dir())), path="/demo")
@bentoml.asgi_app(Starlette(routes=[Route("/info", get_info, methods=["GET"])]), path="/")
@bentoml.service(name="tagsmith", traffic={"timeout": 300}, workers=int(os.environ.get("TAGSMITH_WORKERS", 1)))
class TagsmithService:
    """Segmentation and punctuation of Classical Chinese, toxicity, and fill-mask, on ONNX Runtime."""

    def __init__(self) -> None:
        log_to_stderr()
        self.served = load_all(models_dir(), runtime_threads())
        self.status = {task: model_info(entry) for task, entry in self.served.items()}
        limiter = anyio.CapacityLimiter(1)
        observe = lambda task, size: BATCH_SIZES.labels(task=task).observe(size)  # noqa: E731
        self.batchers = {task: Batcher(task, raw_predictor(entry.runtime), MAX_BATCH_SIZE, MAX_LATENCY_MS, limiter,
                                       observe)
                         for task, entry in self.served.items() if entry.runtime is not None}
        # BentoML, Gradio and pydantic leave a few hundred thousand objects that live as long as the server: out of
        # the collector's sight, a full garbage collection no longer walks them while requests wait
        gc.freeze()

    @bentoml.on_shutdown
    def stop_batchers(self) -> None:
        for batcher in self.batchers.values():
            batcher.shutdown()

    async def answer(self, task: str, texts: Any, checked: bool = False, **request: Any) -> dict:
        """The answer for ``task``, the same for the API and the demo page; InputError for what cannot be answered.
        ``checked``: ``texts`` passed ``check_texts`` already (the API's request model runs it). ``request``: the
        endpoint's own settings (``top_k``, ``threshold``, ``operating_point``), checked against the task's runtime
        by its answer shape before the texts are batched."""
        texts = texts if checked else check_texts(texts, LIMITS)
        entry = self.served.get(task)
        if entry is None:
            raise InputError(not_served_message(task, models_dir()), status=404)
        if entry.runtime is None:
            raise InputError(f"the {task} model cannot be served: {entry.problem}", status=503)
        shape = answers.SHAPES[get_task(task).answer]
        prepared = shape.prepare(entry.runtime, texts, limits=LIMITS, **request)
        raw = await self.batchers[task](texts)
        return {"task": task, "results": shape.results(raw, texts, entry.runtime, prepared)}

    async def respond(self, task: str, texts: Any, **options: Any) -> JSONResponse:
        # the answers are built to the response models' shape already: no second validation of large outputs
        try:
            return JSONResponse(await self.answer(task, texts, checked=True, **options))
        except InputError as error:
            return JSONResponse(error.as_json(), status_code=error.status)
        except Overloaded as error:
            return JSONResponse({"error": str(error), "detail": []}, status_code=503, headers={"Retry-After": "1"})

    def describe(self) -> dict:
        return {"models": self.status, "tasks": {task: TASKS[task][0] for task in self.status},
                "limits": LIMITS.as_dict(), "batching": {"max_batch_size": MAX_BATCH_SIZE,
                                                         "max_latency_ms": MAX_LATENCY_MS}}

    @bentoml.api(route="/segment")
    async def segment(self, texts: Texts = texts_field("天地玄黃宇宙洪荒日月盈昃辰宿列張")) -> answers.SegmentResponse:
        """Sentence segmentation (断句): sentences with character offsets, B/M/E/S labels and confidences."""
        return await self.respond("segmentation", texts)

    @bentoml.api(route="/punctuate")
    async def punctuate(self, texts: Texts = texts_field("学而时习之不亦说乎")) -> answers.PunctuateResponse:
        """Punctuation: the punctuated text and each inserted mark with its position and confidence."""
        return await self.respond("punctuation", texts)

    @bentoml.api(route="/toxicity")
    async def toxicity(
        self,
        texts: Texts = texts_field("you are a lovely person"),
        threshold: Optional[float] = Field(None, ge=0.0, le=1.0, description="decide at this probability instead of "
                                           "the model's tuned threshold"),
        operating_point: Optional[str] = Field(None, max_length=64, description="decide at one of the model's named "
                                               "operating points (GET /info lists them: macro_f1, f1, recall_0.9)"),
    ) -> answers.ToxicityResponse:
        """Toxicity: the probability, and the label at the model's tuned threshold (or at a threshold or named
        operating point the request picks; the answer says which)."""
        return await self.respond("toxicity", texts, threshold=threshold, operating_point=operating_point)

    @bentoml.api(route="/fill_mask")
    async def fill_mask(
        self,
        texts: Texts = texts_field("天地玄[MASK]，宇宙洪荒。", description=TEXTS_HELP + "; each with a mask token"),
        top_k: int = Field(5, ge=1, le=LIMITS.max_top_k, description="candidates per mask token"),
    ) -> answers.FillMaskResponse:
        """Fill-mask: the top-k tokens, with probabilities, for every mask token of each text."""
        return await self.respond("mlm", texts, top_k=top_k)

    @bentoml.api(route="/info")
    async def info(self) -> answers.InfoResponse:
        """The served models: task, labels, training data, metrics, data grade; the request limits; batching.
        (Also ``GET /info``.)"""
        return JSONResponse(self.describe())


def openapi_document() -> dict:
    """BentoML's OpenAPI document with the error answers and ``GET /info`` (serving/openapi.py)."""
    return document(TagsmithService.openapi_spec.asdict(), LIMITS, {task: route for task, (route, _) in TASKS.items()},
                    {"limits": LIMITS.as_dict(), "batching": {"max_batch_size": MAX_BATCH_SIZE,
                                                              "max_latency_ms": MAX_LATENCY_MS}},
                    lambda task: not_served_message(task, models_dir()))


# outermost first: the OpenAPI document, JSON errors for unknown routes, JSON-only API routes, then the body size
TagsmithService.add_asgi_middleware(DocumentMiddleware, document=openapi_document)
TagsmithService.add_asgi_middleware(JSONErrorsMiddleware)
TagsmithService.add_asgi_middleware(JSONOnlyMiddleware, paths=[route for route, _ in TASKS.values()] + ["/info"])
TagsmithService.add_asgi_middleware(BodyLimitMiddleware, max_bytes=LIMITS.max_body_bytes)
