"""An OpenAI-compatible HTTP service over the router graphs: any OpenAI client can call the router like a model.

POST /v1/chat/completions (streamed too), GET /v1/models and /v1/models/{name} (the router menu, serve/menu.py), POST
/v1/threads/{id}/resume (answer a review pause). The whole conversation, the sampling options and the tools go
to the routed expert (serve/protocol.py), or the request is refused with a 400 naming the parameter (a fan-out or
a plan cannot forward them); the response carries the usage of every model call the request made, the answering
expert's model in `model`, the routing decision in `coe`, and headers `x-coe-expert`, `x-coe-task`,
`x-coe-fallbacks`.

Every failure is a JSON error with a status that says whose fault it is: 4xx for the request (a query too long
for every expert, tools no expert can call, a bad context, text that is not valid Unicode), 502 when every expert
failed, 504 past the deadline. A client that goes away cancels the rest of its run (serve/streaming.py).

With a keys file (serve/keys.py) every request carries one of its keys, and each key's requests and tokens per
minute are limited (serve/rate_limits.py): over a limit is a 429 with `Retry-After`. A resumed run's tokens are
spent from its key's budget like a completion's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, AsyncContextManager

import anyio
from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from langgraph.types import Command
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from coe_router.defaults import MAX_QUERY_CHARS, ROUTER_TAG, RUN_NAME
from coe_router.errors import (
    AnswerInterruptedError,
    ExpertsFailedError,
    ExpertsUnavailableError,
    InvalidContextError,
    InvalidQueryError,
    InvalidToolsError,
    QueryTooLongError,
    ToolsUnsupportedError,
)
from coe_router.inputs import check_query
from coe_router.models.sampling import SAMPLING_PARAMS
from coe_router.nodes.review import amove_pause_to_review, review_error
from coe_router.persistence import is_persistence_outage
from coe_router.redact import redact
from coe_router.routing.feedback import FeedbackError
from coe_router.serve.admin import ADMIN_PREFIX, ExpertAdmin, NewExpert, Remap, expert_rows
from coe_router.serve.auth import authorized, needs_token
from coe_router.serve.keys import ApiKey, KeyRing
from coe_router.serve.limits import BodyLimits
from coe_router.serve.costs import cost_header
from coe_router.serve.menu import Served
from coe_router.serve.metrics import ServiceMetrics
from coe_router.serve.protocol import ChatRequest, ProtocolError, completion, dumps, new_completion_id
from coe_router.serve.rate_limits import KeyLimiter, Refusal, is_limited, open_limiter
from coe_router.serve.streaming import (
    GraphEvents,
    RequestCancelled,
    RequestWatch,
    StreamIdleError,
    Translator,
    needs_review,
    open_stream,
    refused_parameters,
    run_to_end,
)

ServedFactory = Callable[[], AsyncContextManager[Served]]
PERSISTENCE_RETRY_AFTER_S = 5
MAX_BODY_BYTES = 4 * 1024 * 1024
log = logging.getLogger("coe_router.serve")


def error_status(exc: BaseException) -> tuple[int, str, str]:
    """(HTTP status, message, code) of any failure; messages are redacted of secrets."""
    if isinstance(exc, ProtocolError):
        return exc.status, str(exc), exc.code
    if isinstance(exc, QueryTooLongError):
        return 400, str(exc), "context_length_exceeded"
    if isinstance(exc, InvalidToolsError):
        return 400, str(exc), "invalid_parameter"
    if isinstance(exc, InvalidQueryError):
        return 400, str(exc), "invalid_query"
    if isinstance(exc, (InvalidContextError, ValidationError)):
        return 400, redact(str(exc).splitlines()[0] if isinstance(exc, ValidationError) else str(exc)), "invalid_parameter"
    if isinstance(exc, ToolsUnsupportedError):
        return 400, str(exc), "unsupported_parameter"
    if isinstance(exc, AnswerInterruptedError):
        return 502, redact(str(exc)), "expert_interrupted"
    if isinstance(exc, ExpertsUnavailableError):
        return 503, redact(str(exc)), "experts_unavailable"
    if isinstance(exc, ExpertsFailedError):
        return 502, redact(str(exc)), "experts_failed"
    if isinstance(exc, StreamIdleError):
        return 504, str(exc), "stream_idle_timeout"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return 504, str(exc) or "the request took longer than its deadline", "deadline_exceeded"
    if isinstance(exc, RequestCancelled):
        return 499, str(exc), "cancelled"
    if is_persistence_outage(exc):
        return 503, redact(f"the thread store is unavailable ({type(exc).__name__}); retry shortly"), \
            "persistence_unavailable"
    return 500, redact(f"internal error: {type(exc).__name__}: {exc}"), "internal_error"


def failure_response(exc: BaseException, param: str | None = None) -> JSONResponse:
    """The JSON error for any failure, with `Retry-After` when waiting helps (cooling experts, a database
    outage); failures that are the service's own are logged with their cause."""
    status, message, code = error_status(exc)
    headers = {}
    if code == "experts_unavailable":
        headers["retry-after"] = str(math.ceil(exc.retry_after_s))
    if code == "persistence_unavailable":
        headers["retry-after"] = str(PERSISTENCE_RETRY_AFTER_S)
        log.error("the thread store is unavailable: %s (cause: %r)", redact(f"{type(exc).__name__}: {exc}"),
                  exc.__cause__ or exc.__context__)
    elif status >= 500 and code not in ("experts_failed", "experts_unavailable", "expert_interrupted"):
        log.error("%s %s: %s", status, code, redact(f"{type(exc).__name__}: {exc}"), exc_info=exc)
    return error_response(status, message, code, param, headers)


class WireJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: any text, even a lone surrogate an upstream answered with, stays valid."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("ascii")


def error_response(status: int, message: str, code: str, param: str | None = None,
                   headers: dict[str, str] | None = None, kind: str | None = None) -> JSONResponse:
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    return WireJSONResponse({"error": {"message": message, "type": kind, "code": code, "param": param}},
                            status_code=status, headers=headers)


def rate_limited(key: ApiKey, refusal: Refusal) -> JSONResponse:
    """The 429 of a key over a limit, as OpenAI words its own (type `requests` or `tokens`)."""
    amount = key.rpm if refusal.limit == "rpm" else key.tpm
    what = "requests" if refusal.limit == "rpm" else "tokens"
    return error_response(429, f"API key {key.name!r} is over its limit of {amount} {what} per minute "
                               f"({refusal.limit}); retry in {refusal.retry_after_s} s", "rate_limit_exceeded",
                          headers={"retry-after": str(refusal.retry_after_s)}, kind=what)


def _as_factory(served: Served | Any | ServedFactory) -> ServedFactory:
    if callable(served) and not hasattr(served, "invoke"):
        return served

    @contextlib.asynccontextmanager
    async def ready():
        yield served if isinstance(served, Served) else Served(graph=served)

    return ready


def create_app(served: Served | Any | ServedFactory, *, token_env: str | None = "COE_API_TOKEN",
               max_query_chars: int = MAX_QUERY_CHARS, deadline_s: float = 120.0, stream_idle_s: float = 30.0,
               workers: int = 64, max_body_bytes: int = MAX_BODY_BYTES, body_timeout_s: float = 30.0,
               admin_token_env: str | None = "COE_ADMIN_TOKEN", keys: KeyRing | None = None,
               limiter: Callable[[], AsyncContextManager[KeyLimiter]] = open_limiter) -> FastAPI:
    """The service for a compiled graph, a `Served` set of graphs, or an async context manager that builds one
    (so an async checkpointer opens on the server's event loop). With `$token_env` set, every path but /healthz
    needs `Authorization: Bearer ...` (/docs and /openapi.json too). `deadline_s` bounds a request across attempts
    and fallbacks; `stream_idle_s` a stream's silence; `workers` threads run the graph's synchronous nodes (the
    experts are async); a body over `max_body_bytes` is a 413 and one not received within `body_timeout_s` a
    408, before any work (serve/limits.py). With `$admin_token_env` set, /admin/ manages the experts
    (serve/admin.py) behind that token. With `keys` (serve/keys.py), every path but /healthz needs one of them
    instead, and their limits are counted by the KeyLimiter that `limiter()` opens (in memory by default)."""
    token = os.environ.get(token_env) if token_env else None
    admin_token = os.environ.get(admin_token_env) if admin_token_env else None
    factory = _as_factory(served)
    metrics = ServiceMetrics(lambda: app.state.served.pool.breakers.snapshot())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        executor = ThreadPoolExecutor(workers, thread_name_prefix="coe-node")
        asyncio.get_running_loop().set_default_executor(executor)
        async with factory() as ready, (limiter() if keys is not None else contextlib.nullcontext()) as key_limiter:
            ask_stream_usage(ready)
            app.state.served, app.state.limiter = ready, key_limiter
            yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="coe-router", version="0.2.0", lifespan=lifespan, default_response_class=WireJSONResponse)
    app.add_middleware(BodyLimits, max_bytes=max_body_bytes, timeout_s=body_timeout_s)

    @app.exception_handler(ProtocolError)
    async def _protocol_error(_: Request, exc: ProtocolError):
        return error_response(exc.status, str(exc), exc.code, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(_: Request, exc: RequestValidationError):
        errors = exc.errors()
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        param = next((str(e["loc"][1]) for e in errors if len(e["loc"]) > 1 and e["loc"][0] == "body"), None)
        return error_response(400, f"invalid request body: {problems}", "invalid_body", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, str(exc.detail), code)

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        if request.url.path.startswith(ADMIN_PREFIX):
            if not admin_token:
                return error_response(404, "the admin API is off (set COE_ADMIN_TOKEN to turn it on)", "not_found")
            if not authorized(request.headers.get("authorization"), admin_token):
                return error_response(401, "missing or wrong admin bearer token", "unauthorized")
        elif keys is not None and needs_token(request.url.path):
            if (key := keys.match(request.headers.get("authorization"))) is None:
                return error_response(401, "missing or unknown API key", "unauthorized")
            request.state.api_key = key
            if is_limited(request.method, request.url.path):
                return await _limited(request, key, call_next)
        elif token and needs_token(request.url.path) and not authorized(request.headers.get("authorization"), token):
            return error_response(401, "missing or wrong bearer token", "unauthorized")
        return await _answered(request, call_next)

    async def _answered(request: Request, call_next):
        try:
            return await call_next(request)
        except Exception as exc:  # noqa: BLE001 - whatever escapes a route is still one JSON error, never a reset
            return failure_response(exc)

    async def _limited(request: Request, key: ApiKey, call_next):
        """A keyed API call: its limits checked before any work, its status counted by the key's name."""
        try:
            refusal = await app.state.limiter.admit(key)
        except Exception as exc:  # noqa: BLE001 - the counters' database down: a 503 to retry, not a free pass
            response = failure_response(exc)
        else:
            if refusal is not None:
                metrics.key_limited.labels(key.name, refusal.limit).inc()
                response = rate_limited(key, refusal)
            else:
                response = await _answered(request, call_next)
        metrics.observe_key(key.name, status=response.status_code)
        return response

    @app.get("/v1/models")
    async def models():
        names = app.state.served.names()
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "coe-router"} for m in names]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        """One name the service answers to (OpenAI's `models.retrieve`): any the chat endpoint would take, so
        `coe/<expert>` and `coe-cost-<weight>` too; another is the chat endpoint's 404 naming the menu."""
        app.state.served.resolve(model_id)
        return {"id": model_id, "object": "model", "owned_by": "coe-router"}

    @app.get("/metrics")
    async def prometheus_metrics():
        """Prometheus exposition (serve/metrics.py); behind the API token when one is set."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/healthz")
    async def health():
        return {"status": "ok"}

    @app.get("/healthz/experts")
    async def expert_health():
        """Each model's circuit breaker: closed, open (with the seconds until its probe and the last error) or
        half_open. Behind the API token, unlike /healthz: it names models and upstream errors."""
        return {"status": "ok", "breakers": app.state.served.pool.breakers.snapshot()}

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest, http: Request):
        observed = Observed(metrics, "stream" if request.stream else "json", getattr(http.state, "api_key", None),
                            app.state.limiter)
        try:
            response = await _chat(app.state.served, request, max_query_chars, deadline_s, stream_idle_s, http,
                                   observed)
        except Exception as exc:  # noqa: BLE001 - mapped to a status that says whose fault it is
            response = failure_response(exc, getattr(exc, "param", None))
            observed.done(response.status_code)
        await observed.settled()  # the key's next request sees this answer's tokens
        return response

    def admin() -> ExpertAdmin:
        served = app.state.served
        if served.config is None:
            raise ProtocolError(404, "this service was built without a config: the admin API needs one", "not_found")
        return ExpertAdmin(served.pool, served.config, served.build_model, served.admin_edits)

    async def edited(edit, *args):
        """An admin edit, off the event loop (it may build a model, and on replicas it writes to PostgreSQL). A
        database that cannot take it is a 503: the edit was applied on no replica, not on this one alone."""
        try:
            return await asyncio.to_thread(edit, *args)
        except Exception as exc:
            if not is_persistence_outage(exc):
                raise
            log.error("an admin edit could not reach the shared database: %s", redact(f"{type(exc).__name__}: {exc}"))
            return error_response(503, "the database that shares admin edits between replicas is unavailable "
                                       f"({type(exc).__name__}): the edit was applied on no replica; retry shortly",
                                  "persistence_unavailable", headers={"retry-after": str(PERSISTENCE_RETRY_AFTER_S)})

    @app.get("/admin/experts")
    async def admin_experts():
        served = app.state.served
        edits = served.admin_edits
        return {"experts": expert_rows(served.pool), "edit_version": edits.version if edits is not None else None}

    @app.post("/admin/experts")
    async def admin_add_expert(body: NewExpert):
        return await edited(admin().add, body)

    @app.delete("/admin/experts/{name}")
    async def admin_remove_expert(name: str, write_config: bool = False):
        refused = await edited(admin().remove, name, write_config)
        if isinstance(refused, Response):
            return refused
        return {"removed": name, "experts": app.state.served.experts}

    @app.put("/admin/task-map/{task}")
    async def admin_remap(task: str, body: Remap):
        return await edited(admin().remap, task, body)

    @app.post("/v1/feedback")
    async def feedback(body: Annotated[Any, Body()]):
        """A score on a served answer: {"id": "<completion id>", "score": 0..1}; it becomes a recorded outcome."""
        try:
            if not isinstance(body, dict) or not isinstance(body.get("id"), str):
                raise ProtocolError(400, 'feedback needs {"id": "<completion id>", "score": <0..1>}', "invalid_body")
            answer = app.state.served.feedback.record(body["id"], body.get("score"))
        except FeedbackError as exc:
            status = 404 if "no served answer" in str(exc) else 400
            return error_response(status, str(exc), "feedback_refused", "id" if status == 404 else "score")
        except Exception as exc:  # noqa: BLE001
            return failure_response(exc)
        return {"id": body["id"], "expert": answer.expert, "task": answer.task, "score": float(body["score"])}

    @app.post("/v1/threads/{thread_id}/resume")
    async def resume(thread_id: str, answer: Annotated[Any, Body()], http: Request):
        """A resumed run is an answer like any other: its tokens and dollars are counted (metrics, shape
        `resume`) and spent from its key's tokens-per-minute budget."""
        observed = Observed(metrics, "resume", getattr(http.state, "api_key", None), app.state.limiter)
        try:
            response = await _resume(app.state.served, thread_id, answer, deadline_s, observed)
        except Exception as exc:  # noqa: BLE001
            response = failure_response(exc, getattr(exc, "param", None))
            observed.done(response.status_code)
        await observed.settled()  # the key's next request sees this answer's tokens
        return response

    return app


def ask_stream_usage(served: Served) -> None:
    """Ask OpenAI-compatible experts for usage in streams too (`stream_options.include_usage`), so a streamed
    answer reports what the server counted; servers that ignore it are estimated (streaming.RequestWatch)."""
    for name in served.experts:
        _, model = served.pool.expert(name)
        if "stream_usage" in getattr(type(model), "model_fields", {}) and model.stream_usage is not True:
            with contextlib.suppress(AttributeError, TypeError, ValueError):
                model.stream_usage = True


def _inputs(request: ChatRequest, max_query_chars: int) -> dict[str, Any]:
    request.check_supported()
    messages = request.conversation()
    check_query(next(m.text for m in reversed(messages) if m.type == "human"), max_query_chars)
    inputs: dict[str, Any] = {"messages": messages, "sampling": request.sampling() or None}
    if request.tools:
        inputs["tools"], inputs["tool_choice"] = request.tools, request.tool_choice
    return inputs


def _run_config(request_model: str, thread_id: str, watch: RequestWatch, *tags: str) -> dict:
    return {"run_name": RUN_NAME, "tags": [ROUTER_TAG, "api", *tags], "metadata": {"api_model": request_model},
            "configurable": {"thread_id": thread_id}, "callbacks": [watch]}


def _forwarded(request: ChatRequest) -> list[str]:
    """The request's parameters that only a single expert call can honour (refused by a fan-out or a plan)."""
    params = [key for key in SAMPLING_PARAMS if getattr(request, key, None) is not None]
    if request.max_completion_tokens is not None and "max_tokens" not in params:
        params.append("max_completion_tokens")
    return params + (["tools"] if request.tools else [])


async def _until_disconnected(http: Request) -> None:
    while (await http.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(http: Request | None, work, watch: RequestWatch):
    """Await `work` unless the client goes away first; then the run is cancelled (the watch stops its thread at
    its next callback) and the client, gone, gets nothing."""
    task = asyncio.ensure_future(work)
    if http is None:
        return await task
    gone = asyncio.ensure_future(_until_disconnected(http))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            watch.cancel()
            task.cancel()  # only asks: the task is not done (nor `cancelled()`) until it next runs
            task.add_done_callback(_retrieve)
        gone.cancel()
    if not task.done() or task.cancelled():
        raise RequestCancelled("the client went away")
    return task.result()


def _retrieve(task: asyncio.Future) -> None:
    """A run cancelled for a client that left ends unawaited: take its outcome, so asyncio logs no "exception was
    never retrieved" for it."""
    if not task.cancelled():
        task.exception()


class Observed:
    """One answer (a chat completion, or a resumed run) on its way to the metrics: counted in flight from its
    start, recorded once at its end (a stream's end is its body's last byte). A keyed request's tokens and
    dollars are counted by the key's name, and its tokens spent from the key's tokens-per-minute budget."""

    def __init__(self, metrics: ServiceMetrics, shape: str, key: ApiKey | None = None,
                 limiter: KeyLimiter | None = None):
        self.metrics, self.shape, self.key, self.limiter = metrics, shape, key, limiter
        self.started = time.monotonic()
        self.translator: Translator | None = None
        self.watch: RequestWatch | None = None
        self.cost: dict | None = None
        self._done = False
        self._spending: asyncio.Future | None = None
        metrics.in_flight.inc()

    def done(self, status: int) -> None:
        if self._done:
            return
        self._done = True
        self.metrics.in_flight.dec()
        t = self.translator
        if self.cost is None and t is not None and t.cost is not None:
            self.cost = t.cost()  # a stream's, as its closing chunk carried it
        by_model = self.watch.by_model if self.watch else {}
        self.metrics.observe(shape=self.shape, status=status, decision=t.decision if t else None,
                             by_model=by_model, cost=self.cost,
                             decided_s=t.decided_s if t else None, first_s=t.first_s if t else None,
                             total_s=time.monotonic() - self.started)
        if self.key is not None:
            tokens = sum(used_in + used_out for used_in, used_out in by_model.values())
            priced = [d for d in ((self.cost or {}).get("by_model") or {}).values() if d is not None]
            self.metrics.key_spent(self.key.name, tokens=tokens, dollars=sum(priced))
            if self.limiter is not None and tokens:
                self._spending = _in_background(self.limiter.spend(self.key, tokens))

    async def settled(self) -> None:
        """Once the answer's tokens are counted against its key (a failure to count is logged, not raised: the
        answer is already made)."""
        if self._spending is not None:
            await asyncio.wait([self._spending])


_BACKGROUND: set[asyncio.Future] = set()


def _in_background(work) -> asyncio.Future:
    """`work` run to its end even if nobody awaits it (a stream's last byte is out before its tokens are
    counted), its failure logged."""
    task = asyncio.ensure_future(work)
    _BACKGROUND.add(task)

    def finished(task: asyncio.Future) -> None:
        _BACKGROUND.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not count tokens against an API key: %s", redact(repr(task.exception())))

    task.add_done_callback(finished)
    return task


async def _observed_body(body, observed: Observed):
    status = 200
    try:
        async for piece in body:
            if piece.startswith("data: {\"error\""):
                status = 502
            yield piece
    except BaseException:
        status = 499  # the client went away mid-stream
        raise
    finally:
        observed.done(status)
        await body.aclose()  # an exception out of `async for` leaves the stream it iterates open


class ClosingStreamingResponse(StreamingResponse):
    """A streamed answer whose body, once started, is closed however the response ends.

    When the client goes away, Starlette stops iterating the body but leaves the generator suspended, so its
    `finally` (the graph run's end, the request's metrics) ran only once the generator happened to be
    garbage-collected: an idle service showed a request in flight, and its status was never counted. (A body that
    never started runs no code on close; the first bytes go out before the client can reset under uvicorn.)"""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):  # the response's task may be cancelled: close it anyway
                    await close()


async def _chat(served: Served, request: ChatRequest, max_query_chars: int, deadline_s: float, idle_s: float,
                http: Request | None = None, observed: Observed | None = None):
    graph, context = served.resolve(request.model)
    inputs = _inputs(request, max_query_chars)
    params = _forwarded(request)
    if params and "planner" in graph.nodes:
        raise refused_parameters("plan", params)
    thread_id = uuid.uuid4().hex
    watch = RequestWatch(served.call_prices)  # priced: the router's trace run carries the cost too
    config = _run_config(request.model, thread_id, watch)
    query = next(m.text for m in reversed(inputs["messages"]) if m.type == "human")
    completion_id = new_completion_id()

    def remember(decision) -> None:  # a served answer may get feedback (POST /v1/feedback)
        served.feedback.served(completion_id, query, decision.task, decision.expert)

    translator = Translator(thread_id, completion_id, request.model, params, served.model_of, remember)
    translator.cost = watch.cost
    if observed is not None:
        observed.translator, observed.watch = translator, watch
    if request.stream:
        events = GraphEvents(graph, inputs, config, context or None, modes=["updates", "messages"],
                             deadline_s=deadline_s, idle_s=idle_s, watch=watch)
        headers, body = await _unless_disconnected(http, open_stream(
            events, translator, request.include_usage, watch.usage, lambda exc: error_status(exc)[1:]), watch)
        if observed is not None:
            body = _observed_body(body, observed)
        return ClosingStreamingResponse(body, media_type="text/event-stream", headers=headers)
    events = GraphEvents(graph, inputs, config, context or None, modes=["updates", "values"], deadline_s=deadline_s,
                         watch=watch)
    result = await _unless_disconnected(http, run_to_end(events, translator), watch)
    cost = translator.cost()
    response = _answer(result, thread_id, translator.completion_id, request.model, watch.usage(), served.model_of,
                       cost)
    remember(result["decision"])
    if observed is not None:
        observed.cost = cost
        observed.done(response.status_code)
    return response


def _answer(result: dict, thread_id: str, completion_id: str, request_model: str, usage: dict,
            model_of=lambda expert: None, cost: dict | None = None) -> JSONResponse:
    if "__interrupt__" in result:
        raise needs_review(thread_id)
    decision = result["decision"]
    coe = decision.model_dump(mode="json")
    headers = {"x-coe-expert": decision.expert, "x-coe-task": decision.task,
               "x-coe-fallbacks": ",".join(decision.fallbacks)}
    if cost is not None:
        coe["cost"] = cost
        headers["x-coe-cost"] = cost_header(cost)
    body = completion(completion_id, result["messages"][-1], coe, request_model, usage, model_of)
    return WireJSONResponse(body, headers=headers)


async def _resume(served: Served, thread_id: str, answer: Any, deadline_s: float,
                  observed: Observed | None = None) -> JSONResponse:
    """Answer a review pause: 404 for a thread the service does not know, 409 when it has nothing to resume, 400
    for an answer naming no task or expert (the thread stays paused, so a typo costs nothing).

    A thread that a crash left mid-run (pending steps, no pause: a process killed while a resumed review was at
    its expert) is continued from its last checkpoint, whatever the body says: that is the only way on for it."""
    graph = served.graph
    if graph.checkpointer is None:
        raise ProtocolError(404, "this service keeps no threads (persistence.checkpointer: none)", "thread_not_found")
    watch = RequestWatch(served.call_prices)
    config = _run_config("coe", thread_id, watch, "resume")
    state = await graph.aget_state(config)
    if not state.values and not state.next:
        raise ProtocolError(404, f"no thread {thread_id!r}", "thread_not_found")
    paused = any(task.interrupts for task in state.tasks)
    if not paused and not state.next:
        raise ProtocolError(409, f"thread {thread_id!r} is not waiting for review", "not_paused")
    if paused and (problem := review_error(served.pool.task_map, answer)) is not None:
        raise ProtocolError(400, problem, "invalid_review")
    if paused:
        await amove_pause_to_review(graph, config, state)
    translator = Translator(thread_id, new_completion_id(), "coe", [])
    translator.cost = watch.cost
    if observed is not None:
        observed.translator, observed.watch = translator, watch
    events = GraphEvents(graph, Command(resume=answer) if paused else None, config, None,
                         modes=["updates", "values"], deadline_s=deadline_s, watch=watch)
    result = await run_to_end(events, translator)
    cost = translator.cost()
    response = _answer(result, thread_id, translator.completion_id, "coe", watch.usage(), served.model_of, cost)
    if observed is not None:
        observed.cost = cost
        observed.done(response.status_code)
    return response
