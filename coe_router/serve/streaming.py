"""Server-sent events for every graph shape: one expert, a fan-out, rule gating, a plan, a review pause.

Routing comes first, so the response headers can name the routed expert (a plan names its mode); what follows
is every token of the answer path (the calls tagged `coe:answer`: the expert, the fan-out's refine step, the
plan's synthesizer), each finished plan step as a `coe_step` event, then a last chunk with the routing decision,
usage when asked for, and `[DONE]`. Failures after the headers arrive as an SSE error event.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from langchain_core.messages import AIMessage, AIMessageChunk

from coe_router.routing.expert_call import ANSWER_TAG
from coe_router.serve.protocol import DONE, ProtocolError, chunk, error_event, usage

ANSWER_NODES = ("expert", "aggregator", "synthesizer")


class GraphEvents:
    """The graph's update and message events, each awaited at most `idle_s` and all within `deadline`."""

    def __init__(self, graph, inputs: dict, config: dict, context: dict | None, idle_s: float, deadline: float):
        self._events = graph.astream(inputs, config, context=context, stream_mode=["updates", "messages"])
        self.idle_s, self.deadline = idle_s, deadline

    async def next(self) -> tuple[str, Any] | None:
        wait = min(self.idle_s, self.deadline - time.monotonic())
        if wait <= 0:
            raise TimeoutError("the request deadline passed")
        try:
            return await asyncio.wait_for(anext(self._events), wait)
        except StopAsyncIteration:
            return None

    async def aclose(self) -> None:
        await self._events.aclose()


async def route_first(events: GraphEvents, thread_id: str) -> dict[str, str]:
    """Consume events until the route (or the plan) is known; returns the response headers. Errors before this
    point become plain HTTP errors; a review pause is the same 409 as without streaming."""
    while (event := await events.next()) is not None:
        mode, payload = event
        if mode != "updates":
            continue
        if "__interrupt__" in payload:
            raise needs_review(thread_id)
        if "router" in payload:
            decision = payload["router"]["decision"]
            return {"x-coe-expert": decision.expert, "x-coe-task": decision.task,
                    "x-coe-fallbacks": ",".join(decision.fallbacks)}
        if "planner" in payload:
            return {"x-coe-mode": "plan", "x-coe-plan-status": payload["planner"]["plan_status"]}
    raise ProtocolError(502, "the router graph ended before routing", "no_route")


def needs_review(thread_id: str) -> ProtocolError:
    return ProtocolError(409, f"the query needs human review (thread {thread_id}): POST /v1/threads/{thread_id}/resume "
                              'with {"task": ...} or {"expert": ...}', "needs_review")


def _tool_call_delta(message: AIMessageChunk) -> list[dict]:
    return [{"index": call.get("index") or 0, "id": call.get("id"), "type": "function",
             "function": {"name": call.get("name"), "arguments": call.get("args") or ""}}
            for call in message.tool_call_chunks]


async def sse_body(events: GraphEvents, completion_id: str, model: str, include_usage: bool,
                   error_code) -> AsyncIterator[str]:
    """The event stream after the headers; `error_code(exc)` maps a failure to (message, code)."""
    yield chunk(completion_id, model, {"role": "assistant", "content": ""})
    streamed, final, decision = False, None, None
    try:
        while (event := await events.next()) is not None:
            mode, payload = event
            if mode == "messages":
                message, meta = payload
                if ANSWER_TAG in (meta.get("tags") or []) and isinstance(message, AIMessageChunk):
                    delta = {}
                    if message.content:
                        delta["content"] = message.text
                    if message.tool_call_chunks:
                        delta["tool_calls"] = _tool_call_delta(message)
                    if delta:
                        streamed = True
                        yield chunk(completion_id, model, delta)
                continue
            for node, update in payload.items():
                if not isinstance(update, dict):
                    continue
                decision = update.get("decision", decision)
                if node == "step" and update.get("steps"):
                    step = update["steps"][-1]
                    yield chunk(completion_id, model, {}, coe_step=step.model_dump(mode="json"))
                if node in ANSWER_NODES and update.get("messages"):
                    final = update["messages"][-1]
    except Exception as exc:  # noqa: BLE001 - after the headers, every failure is an SSE error event
        message, code = error_code(exc)
        yield error_event(message, code)
        yield DONE
        return
    finally:
        await events.aclose()
    if isinstance(final, AIMessage) and not streamed:
        delta = {"content": final.text}
        if final.tool_calls:
            delta["tool_calls"] = [{"index": i, "id": c["id"], "type": "function",
                                    "function": {"name": c["name"], "arguments": _json(c["args"])}}
                                   for i, c in enumerate(final.tool_calls)]
        yield chunk(completion_id, model, delta)
    finish = "tool_calls" if isinstance(final, AIMessage) and final.tool_calls else "stop"
    yield chunk(completion_id, model, {}, finish=finish,
                coe=decision.model_dump(mode="json") if decision is not None else None)
    if include_usage:
        yield chunk(completion_id, model, None, usage=usage(final if isinstance(final, AIMessage) else None))
    yield DONE


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
