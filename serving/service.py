"""The HTTP API (BentoML) and the demo page: ``bentoml serve serving.service:TagsmithService``.

Two services, as BentoML composes them: ``TagsmithModels`` holds one ONNX Runtime per model package and answers
lists of texts behind adaptive batching; ``TagsmithService`` is the public API. It checks every request
(``serving/limits.py``), sends the texts to the batched model endpoints, and shapes the answer
(``serving/answers.py``); it also mounts the Gradio demo at ``/demo``. Model packages come from
``TAGSMITH_MODELS`` (default ``models/``): only the tasks present there are served.
"""

from __future__ import annotations

import os
from typing import Any, Union

import bentoml
from pydantic import Field

with bentoml.importing():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from serving import answers
    from serving.demo_page import demo_app
    from serving.http_guards import BodyLimitMiddleware, JSONErrorsMiddleware, JSONOnlyMiddleware
    from serving.limits import InputError, Limits, check_texts, check_top_k
    from serving.packages import TASKS, load_all, model_info, models_dir, present_tasks, runtime_threads

LIMITS = Limits.from_env()
BATCHING = {"batchable": True, "max_batch_size": int(os.environ.get("TAGSMITH_MAX_BATCH_SIZE", 32)),
            # long enough that a queue full of long texts is served, not dropped with a 503
            "max_latency_ms": int(os.environ.get("TAGSMITH_MAX_LATENCY_MS", 20_000))}
TRAFFIC = {"timeout": 300}

Texts = Union[str, list[str]]
TEXTS_HELP = (f"one text or a list of texts (at most {LIMITS.max_texts} texts of at most {LIMITS.max_chars} "
              f"characters each, {LIMITS.max_total_chars} in all)")


def texts_field(*examples: str, description: str = TEXTS_HELP):
    return Field(description=description, examples=list(examples), json_schema_extra=answers.one_of)


@bentoml.service(name="tagsmith-models", traffic=TRAFFIC, workers=1)
class TagsmithModels:
    """The model packages, one runtime per task; each task's endpoint takes a batch of already checked texts."""

    def __init__(self) -> None:
        self.served = load_all(models_dir(), runtime_threads())

    def __is_ready__(self) -> bool:
        return True

    @bentoml.api
    def status(self) -> dict:
        return {task: model_info(entry) for task, entry in self.served.items()}

    @bentoml.api(**BATCHING)
    def segmentation(self, texts: list[str]) -> list[dict]:
        return [result.as_dict() for result in self.served["segmentation"].runtime.predict(texts)]

    @bentoml.api(**BATCHING)
    def punctuation(self, texts: list[str]) -> list[dict]:
        return [result.as_dict() for result in self.served["punctuation"].runtime.predict(texts)]

    @bentoml.api(**BATCHING)
    def toxicity(self, texts: list[str]) -> list[dict]:
        return [result.as_dict() for result in self.served["toxicity"].runtime.predict(texts)]

    @bentoml.api(**BATCHING)
    def mlm(self, texts: list[str]) -> list[list]:
        return self.served["mlm"].runtime.predict(texts, top_k=LIMITS.max_top_k)


async def get_info(request) -> JSONResponse:
    return JSONResponse(await bentoml.get_current_service().describe())


@bentoml.asgi_app(demo_app(present_tasks(models_dir())), path="/demo")
@bentoml.asgi_app(Starlette(routes=[Route("/info", get_info, methods=["GET"])]), path="/")
@bentoml.service(name="tagsmith", traffic=TRAFFIC, workers=1)
class TagsmithService:
    """Segmentation and punctuation of Classical Chinese, toxicity, and fill-mask, on ONNX Runtime."""

    models = bentoml.depends(TagsmithModels)

    def __init__(self) -> None:
        self.status: dict | None = None

    async def model_status(self) -> dict:
        if self.status is None:  # asked once: the model service loads its packages at start and never again
            self.status = await self.models.to_async.status()
        return self.status

    async def answer(self, task: str, texts: Any, top_k: int = 5) -> dict:
        """The answer for ``task``, the same for the API and the demo page; InputError for what cannot be answered."""
        texts = check_texts(texts, LIMITS)
        entry = (await self.model_status()).get(task)
        route = TASKS[task][0]
        if entry is None:
            raise InputError(f"no {task} model is served here: {route} needs a package in "
                             f"{models_dir() / task} (TAGSMITH_MODELS)", status=404)
        if not entry["served"]:
            raise InputError(f"the {task} model cannot be served: {entry['problem']}", status=503)
        if task == "mlm":
            return await self.fill_masks(texts, check_top_k(top_k, LIMITS), entry["mask_token"])
        raw = await getattr(self.models.to_async, task)(texts)
        if task == "segmentation":
            results = [answers.segmented(r) for r in raw]
        elif task == "punctuation":
            results = [answers.punctuated(r) for r in raw]
        else:
            results = [answers.toxicity(r, entry["threshold"], entry["positive_label"]) for r in raw]
        return {"task": task, "results": results}

    async def fill_masks(self, texts: list[str], top_k: int, mask_token: str) -> dict:
        missing = [i for i, text in enumerate(texts) if mask_token not in text]
        if missing:
            raise InputError(f"texts[{missing[0]}] has no {mask_token} token: put {mask_token} where a token should "
                             f"be predicted", detail=[{"loc": ["texts", i], "msg": f"no {mask_token}"} for i in missing])
        raw = await self.models.to_async.mlm(texts)
        return {"task": "mlm", "results": [answers.filled_mask(t, m, mask_token, top_k) for t, m in zip(texts, raw)]}

    async def respond(self, task: str, texts: Any, **options: Any) -> JSONResponse:
        # the answers are built to the response models' shape already: no second validation of large outputs
        try:
            return JSONResponse(await self.answer(task, texts, **options))
        except InputError as error:
            return JSONResponse(error.as_json(), status_code=error.status)

    async def describe(self) -> dict:
        status = await self.model_status()
        return {"models": status, "tasks": {task: route for task, (route, _) in TASKS.items() if task in status},
                "limits": LIMITS.as_dict()}

    @bentoml.api(route="/segment")
    async def segment(self, texts: Texts = texts_field("天地玄黃宇宙洪荒日月盈昃辰宿列張")) -> answers.SegmentResponse:
        """Sentence segmentation (断句): sentences with character offsets, B/M/E/S labels and confidences."""
        return await self.respond("segmentation", texts)

    @bentoml.api(route="/punctuate")
    async def punctuate(self, texts: Texts = texts_field("学而时习之不亦说乎")) -> answers.PunctuateResponse:
        """Punctuation: the punctuated text and each inserted mark with its position and confidence."""
        return await self.respond("punctuation", texts)

    @bentoml.api(route="/toxicity")
    async def toxicity(self, texts: Texts = texts_field("you are a lovely person")) -> answers.ToxicityResponse:
        """Toxicity: the probability, and the label at the model's tuned threshold."""
        return await self.respond("toxicity", texts)

    @bentoml.api(route="/fill_mask")
    async def fill_mask(
        self,
        texts: Texts = texts_field("天地玄[MASK]，宇宙洪荒。", description=TEXTS_HELP + "; each with a mask token"),
        top_k: int = Field(5, ge=1, le=LIMITS.max_top_k, description="candidates per mask token"),
    ) -> answers.FillMaskResponse:
        """Fill-mask: the top-k tokens, with probabilities, for every mask token of each text."""
        return await self.respond("mlm", texts, top_k=top_k)

    @bentoml.api(route="/info")
    async def info(self) -> dict:
        """The served models: task, labels, training data, metrics, data grade; and the request limits."""
        return await self.describe()


# outermost first: JSON errors for unknown routes, JSON-only API routes, then the body size
TagsmithService.add_asgi_middleware(JSONErrorsMiddleware)
TagsmithService.add_asgi_middleware(JSONOnlyMiddleware, paths=[route for route, _ in TASKS.values()] + ["/info"])
TagsmithService.add_asgi_middleware(BodyLimitMiddleware, max_bytes=LIMITS.max_body_bytes)
