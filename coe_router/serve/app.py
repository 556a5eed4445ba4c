"""An OpenAI-compatible HTTP service over the router graphs: any OpenAI client can call the router like a model.

POST /v1/chat/completions (streamed too), GET /v1/models (the router menu, serve/menu.py), POST
/v1/threads/{id}/resume (answer a review pause). The whole conversation, the sampling options and the tools go
to the routed expert (serve/protocol.py); the response carries the expert's usage, its model in `model`, the
routing decision in `coe`, and headers `x-coe-expert`, `x-coe-task`, `x-coe-fallbacks`.

Every failure is a JSON error with a status that says whose fault it is: 4xx for the request (a query too long
for every expert, tools no expert can call, a bad context), 502 when every expert failed, 504 past the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncContextManager, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from langgraph.types import Command
from pydantic import ValidationError

from coe_router.defaults import MAX_QUERY_CHARS, ROUTER_TAG, RUN_NAME
from coe_router.errors import (
    ExpertsFailedError,
    InvalidContextError,
    InvalidQueryError,
    QueryTooLongError,
    ToolsUnsupportedError,
)
from coe_router.inputs import check_query
from coe_router.nodes.router import review_error
from coe_router.redact import redact
from coe_router.serve.auth import authorized, needs_token
from coe_router.serve.menu import Served
from coe_router.serve.protocol import ChatRequest, ProtocolError, completion, new_completion_id
from coe_router.serve.streaming import GraphEvents, needs_review, route_first, sse_body

ServedFactory = Callable[[], AsyncContextManager[Served]]


def error_status(exc: BaseException) -> tuple[int, str, str]:
    """(HTTP status, message, code) of any failure; messages are redacted of secrets."""
    if isinstance(exc, ProtocolError):
        return exc.status, str(exc), exc.code
    if isinstance(exc, QueryTooLongError):
        return 400, str(exc), "context_length_exceeded"
    if isinstance(exc, InvalidQueryError):
        return 400, str(exc), "invalid_query"
    if isinstance(exc, (InvalidContextError, ValidationError)):
        return 400, redact(str(exc).splitlines()[0] if isinstance(exc, ValidationError) else str(exc)), "invalid_parameter"
    if isinstance(exc, ToolsUnsupportedError):
        return 400, str(exc), "unsupported_parameter"
    if isinstance(exc, ExpertsFailedError):
        return 502, redact(str(exc)), "experts_failed"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return 504, f"the request took longer than its deadline ({exc or 'timed out'})", "deadline_exceeded"
    return 500, redact(f"internal error: {type(exc).__name__}: {exc}"), "internal_error"


def error_response(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code, "param": param}},
                        status_code=status)


def _as_factory(served: Served | Any | ServedFactory) -> ServedFactory:
    if callable(served) and not hasattr(served, "invoke"):
        return served

    @contextlib.asynccontextmanager
    async def ready():
        yield served if isinstance(served, Served) else Served(graph=served)

    return ready


def create_app(served: Served | Any | ServedFactory, *, token_env: str | None = "COE_API_TOKEN",
               max_query_chars: int = MAX_QUERY_CHARS, deadline_s: float = 120.0, stream_idle_s: float = 30.0,
               workers: int = 64) -> FastAPI:
    """The service for a compiled graph, a `Served` set of graphs, or an async context manager that builds one
    (so an async checkpointer opens on the server's event loop). With `$token_env` set, every path but /healthz
    needs `Authorization: Bearer ...`. `deadline_s` bounds a request across attempts and fallbacks;
    `stream_idle_s` a stream's silence; `workers` threads run the graph's synchronous nodes, so a hung expert
    holds one thread, not the service."""
    token = os.environ.get(token_env) if token_env else None
    factory = _as_factory(served)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(workers, thread_name_prefix="coe-node"))
        async with factory() as ready:
            app.state.served = ready
            yield

    app = FastAPI(title="coe-router", version="0.2.0", lifespan=lifespan)

    @app.exception_handler(ProtocolError)
    async def _protocol_error(_: Request, exc: ProtocolError):
        return error_response(exc.status, str(exc), exc.code, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(_: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        return error_response(400, f"invalid request body: {problems}", "invalid_body")

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        if token and needs_token(request.url.path) and not authorized(request.headers.get("authorization"), token):
            return error_response(401, "missing or wrong bearer token", "unauthorized")
        try:
            return await call_next(request)
        except Exception as exc:  # noqa: BLE001 - whatever escapes a route is still one JSON error, never a reset
            return error_response(*error_status(exc))

    @app.get("/v1/models")
    async def models():
        names = app.state.served.names()
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "coe-router"} for m in names]}

    @app.get("/healthz")
    async def health():
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest):
        try:
            return await _chat(app.state.served, request, max_query_chars, deadline_s, stream_idle_s)
        except Exception as exc:  # noqa: BLE001 - mapped to a status that says whose fault it is
            return error_response(*error_status(exc), getattr(exc, "param", None))

    @app.post("/v1/threads/{thread_id}/resume")
    async def resume(thread_id: str, answer: dict):
        try:
            return await _resume(app.state.served, thread_id, answer, deadline_s)
        except Exception as exc:  # noqa: BLE001
            return error_response(*error_status(exc))

    return app


def _inputs(request: ChatRequest, max_query_chars: int) -> dict[str, Any]:
    request.check_supported()
    messages = request.conversation()
    check_query(messages[-1].text if messages[-1].type == "human" else
                next(m.text for m in reversed(messages) if m.type == "human"), max_query_chars)
    inputs: dict[str, Any] = {"messages": messages, "sampling": request.sampling() or None}
    if request.tools:
        inputs["tools"], inputs["tool_choice"] = request.tools, request.tool_choice
    return inputs


def _run_config(request_model: str, thread_id: str) -> dict:
    return {"run_name": RUN_NAME, "tags": [ROUTER_TAG, "api"], "metadata": {"api_model": request_model},
            "configurable": {"thread_id": thread_id}}


async def _chat(served: Served, request: ChatRequest, max_query_chars: int, deadline_s: float, idle_s: float):
    graph, context = served.resolve(request.model)
    inputs = _inputs(request, max_query_chars)
    thread_id = uuid.uuid4().hex
    config = _run_config(request.model, thread_id)
    completion_id = new_completion_id()
    if request.stream:
        events = GraphEvents(graph, inputs, config, context or None, idle_s, time.monotonic() + deadline_s)
        try:
            headers = await route_first(events, thread_id)
        except BaseException:
            await events.aclose()
            raise
        body = sse_body(events, completion_id, request.model, request.include_usage,
                        lambda exc: error_status(exc)[1:])
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)
    result = await asyncio.wait_for(graph.ainvoke(inputs, config, context=context or None), deadline_s)
    return _answer(result, thread_id, completion_id, request.model)


def _answer(result: dict, thread_id: str, completion_id: str, request_model: str) -> JSONResponse:
    if "__interrupt__" in result:
        raise needs_review(thread_id)
    decision = result["decision"]
    body = completion(completion_id, result["messages"][-1], decision.model_dump(mode="json"), request_model)
    return JSONResponse(body, headers={"x-coe-expert": decision.expert, "x-coe-task": decision.task,
                                       "x-coe-fallbacks": ",".join(decision.fallbacks)})


async def _resume(served: Served, thread_id: str, answer: dict, deadline_s: float) -> JSONResponse:
    """Answer a review pause: 404 for a thread the service does not know, 409 when it is not paused, 400 for an
    answer naming no task or expert (the thread stays paused, so a typo costs nothing)."""
    graph = served.graph
    if graph.checkpointer is None:
        raise ProtocolError(404, "this service keeps no threads (persistence.checkpointer: none)", "thread_not_found")
    config = {"configurable": {"thread_id": thread_id}, "run_name": RUN_NAME, "tags": [ROUTER_TAG, "api", "resume"]}
    state = await graph.aget_state(config)
    if not state.values and not state.next:
        raise ProtocolError(404, f"no thread {thread_id!r}", "thread_not_found")
    if not any(task.interrupts for task in state.tasks):
        raise ProtocolError(409, f"thread {thread_id!r} is not waiting for review", "not_paused")
    problem = review_error(graph.pool.task_map, answer)
    if problem is not None:
        raise ProtocolError(400, problem, "invalid_review")
    result = await asyncio.wait_for(graph.ainvoke(Command(resume=answer), config), deadline_s)
    return _answer(result, thread_id, new_completion_id(), "coe")
