"""An OpenAI-compatible HTTP service over the router graph: any OpenAI client can call the router like a model.

POST /v1/chat/completions (with streaming) and GET /v1/models. Model `coe` is single-shot routing. The response
names the expert that answered (field `coe.expert` and header `x-coe-expert`) and the task (`x-coe-task`).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, AsyncIterator, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from coe_router.defaults import MAX_QUERY_CHARS, ROUTER_TAG, RUN_NAME
from coe_router.inputs import InvalidQueryError, check_query
from coe_router.nodes.expert import ExpertsFailedError
from coe_router.routing.expert_call import ANSWER_TAG

ROUTER_MODELS = ("coe",)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage]
    stream: bool = False


class APIError(Exception):
    def __init__(self, status: int, message: str, code: str):
        self.status, self.message, self.code = status, message, code


def _error(status: int, message: str, code: str) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status)


def _query(request: ChatRequest) -> str:
    users = [m for m in request.messages if m.role == "user"]
    if not users:
        raise APIError(400, "messages must contain a user message", "no_user_message")
    return users[-1].text()


def _completion(model: str, answer: str, decision: dict) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "coe": decision,
    }


def _chunk(completion_id: str, model: str, delta: dict, finish: str | None = None, extra: dict | None = None) -> str:
    body = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **(extra or {})}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def create_app(graph, *, token_env: str | None = "COE_API_TOKEN", max_query_chars: int = MAX_QUERY_CHARS) -> FastAPI:
    """The service for a compiled router graph. With `$token_env` set, requests need `Authorization: Bearer ...`."""
    app = FastAPI(title="coe-router", version="0.1.0")
    token = os.environ.get(token_env) if token_env else None

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError):
        return _error(exc.status, exc.message, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(_: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        return _error(400, f"invalid request body: {problems}", "invalid_body")

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if token and request.url.path.startswith("/v1/") and request.headers.get("authorization") != f"Bearer {token}":
            return _error(401, "missing or wrong bearer token", "unauthorized")
        return await call_next(request)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "coe-router"} for m in ROUTER_MODELS]}

    @app.get("/healthz")
    async def health():
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest):
        if request.model not in ROUTER_MODELS:
            raise APIError(404, f"model {request.model!r} does not exist; available: {', '.join(ROUTER_MODELS)}",
                           "model_not_found")
        try:
            query = check_query(_query(request), max_query_chars)
        except InvalidQueryError as exc:
            raise APIError(400, str(exc), "invalid_query") from None
        config = {"run_name": RUN_NAME, "tags": [ROUTER_TAG, "api"], "metadata": {"api_model": request.model},
                  "configurable": {"thread_id": uuid.uuid4().hex}}
        if not request.stream:
            try:
                result = await graph.ainvoke({"query": query}, config=config)
            except ExpertsFailedError as exc:
                raise APIError(502, str(exc), "experts_failed") from None
            if "__interrupt__" in result:
                thread = config["configurable"]["thread_id"]
                raise APIError(409, f"the query needs human review (thread {thread}); resume it with `coe resume`",
                               "needs_review")
            decision = result["decision"].model_dump(mode="json")
            return JSONResponse(_completion(request.model, result["answer"], decision),
                                headers={"x-coe-expert": decision["expert"], "x-coe-task": decision["task"]})
        return await _stream(graph, query, request.model, config)

    return app


async def _stream(graph, query: str, model: str, config: dict) -> StreamingResponse:
    """Route first (so the headers can name the expert), then stream the expert's tokens as they come."""
    events = graph.astream({"query": query}, config=config, stream_mode=["updates", "messages"])
    routed = None
    try:
        async for mode, payload in events:
            if mode == "updates" and "router" in payload:
                routed = payload["router"]["decision"]
                break
    except ExpertsFailedError as exc:
        raise APIError(502, str(exc), "experts_failed") from None
    if routed is None:
        raise APIError(500, "the graph ended before routing", "no_route")
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"

    async def body() -> AsyncIterator[str]:
        yield _chunk(completion_id, model, {"role": "assistant", "content": ""})
        streamed = False
        final = None
        try:
            async for mode, payload in events:
                if mode == "messages":
                    message, meta = payload
                    if ANSWER_TAG in (meta.get("tags") or []) and message.content:
                        streamed = True
                        yield _chunk(completion_id, model, {"content": message.content})
                elif "expert" in payload:
                    final = payload["expert"]
        except ExpertsFailedError as exc:
            yield f"data: {json.dumps({'error': {'message': str(exc), 'code': 'experts_failed'}})}\n\n"
            yield "data: [DONE]\n\n"
            return
        if final and not streamed:
            yield _chunk(completion_id, model, {"content": final["answer"]})
        decision = (final["decision"] if final else routed).model_dump(mode="json")
        yield _chunk(completion_id, model, {}, finish="stop", extra={"coe": decision})
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"x-coe-expert": routed.expert, "x-coe-task": routed.task})
