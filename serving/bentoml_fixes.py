"""Two leaks of bentoml 1.4 (seen with 1.4.39) that a long-running, busy server must not have; applied by
``serving/service.py`` before the server starts. Each costs memory per request and, worse, lengthens every full
garbage collection, which then stalls all requests in flight (a p99 of several hundred ms under load).

* OpenTelemetry: BentoML opens a span for every request even when tracing is off (sample rate 0), and those spans
  are never freed (about 4 KB per request, for ever). Unless tracing is wanted (``OTEL_SDK_DISABLED=false`` and
  BentoML's ``tracing`` config), the SDK is disabled so that spans are no-ops.
* ``TimeoutMiddleware`` schedules a timer per request (``traffic.timeout`` seconds) and never cancels it, so each
  request's objects live on for the whole timeout. The replacement below is BentoML's middleware with the timer
  cancelled once the request is done.

And one for the API's error bodies: BentoML answers a request its input model refuses with a 400 of its own
(``"1 validation error for Input"``, whatever the limit), and a 4xx ``BentoMLException`` with a JSON *list*.
:func:`answer_errors_in_one_shape` makes both the project's ``{"error": ..., "detail": [...]}`` with the status the
project gives (``serving.limits.InputError.from_validation_error``: e.g. 413 for a text over TAGSMITH_MAX_CHARS).
"""

from __future__ import annotations

import asyncio
import os


def disable_idle_tracing() -> None:
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")


def cancel_request_timers() -> None:
    from bentoml._internal.server.http import traffic
    from starlette.responses import JSONResponse

    original = traffic.TimeoutMiddleware
    if getattr(original, "cancels_its_timer", False):
        return

    class TimeoutMiddleware(original):
        cancels_its_timer = True

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] not in ("http", "websocket"):
                return await self.app(scope, receive, send)
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

            async def first_send_ends_the_wait(message) -> None:
                if not waiter.done():
                    waiter.set_result(None)
                await send(message)

            handling = asyncio.ensure_future(self.app(scope, receive, first_send_ends_the_wait), loop=loop)
            try:
                await waiter
            except asyncio.TimeoutError:
                if handling.cancel():
                    message = f"Not able to process the request in {self.timeout} seconds"
                    await JSONResponse({"error": message, "detail": []}, status_code=504)(scope, receive, send)
            else:
                await handling
            finally:
                timer.cancel()

    # BentoML imports the class from this module each time it builds an app, so replacing it here is enough
    traffic.TimeoutMiddleware = TimeoutMiddleware


def answer_errors_in_one_shape() -> None:
    from _bentoml_impl.server.app import ServiceAppFactory
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError
    from starlette.responses import JSONResponse

    from serving.limits import InputError

    original = ServiceAppFactory.api_endpoint
    if getattr(original, "answers_errors_in_one_shape", False):
        return

    async def api_endpoint(self, name, request):
        try:
            return await original(self, name, request)
        except ValidationError as exc:
            error = InputError.from_validation_error(exc)
        except BentoMLException as exc:
            status = exc.error_code.value
            if not 400 <= status < 500 or status in (401, 403):
                raise  # BentoML's own answer (it hides the details of these)
            error = InputError(str(exc), status=status)
        return JSONResponse(error.as_json(), status_code=error.status)

    api_endpoint.answers_errors_in_one_shape = True
    # api_endpoint_wrapper looks the method up on the instance for every request
    ServiceAppFactory.api_endpoint = api_endpoint


def apply() -> None:
    disable_idle_tracing()
    cancel_request_timers()
    answer_errors_in_one_shape()
