"""Running a graph for one request: its events, bounded in time, turned into a completion or server-sent events.

Every request, streamed or not, runs the graph as a stream of events (`GraphEvents`), all within the request's
deadline, and once a stream has begun each awaited at most `idle_s`. `Translator` reads them: the routing decision (response headers),
a review pause (409), a fan-out or a plan that could not honour the request's sampling options or tools (400, see
`refused_parameters`), every token of the answer path (the calls tagged `coe:answer`: the expert, the fan-out's
refine step, the plan's synthesizer), each finished plan step as a `coe_step` event, and the final state.

A stream's status is decided by its first output: the graph runs until the first answer token or plan step
(or its end) before the headers go out, so a failure before any output is a plain HTTP error with the same status
as without streaming (400 too long, 409 review, 502 experts failed, 504 deadline); failures after it arrive as an
SSE error event followed by `[DONE]`.

`RequestWatch` rides along as a callback: it sums the token usage of every model call the request made
(tracing/usage.py), and once cancelled (the client went away, the deadline passed) it stops the request's
remaining work at its next node, model call or token, which closes the upstream connection of a streaming expert.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from langchain_core.messages import AIMessage, AIMessageChunk
from langgraph.checkpoint.memory import InMemorySaver

from coe_router.routing.expert_call import ANSWER_TAG
from coe_router.routing.fallback import RequestCancelled
from coe_router.routing.time_budget import with_deadline
from coe_router.serve.protocol import DONE, ProtocolError, chunk, error_event, finish_reason, tool_call_deltas
from coe_router.tracing.usage import CallUsage

ANSWER_NODES = ("expert", "aggregator", "synthesizer")


class DeadlineError(TimeoutError):
    """The request ran past its deadline (`--deadline-s`), across attempts and fallbacks."""


class StreamIdleError(TimeoutError):
    """The graph sent nothing for `--stream-idle-s` seconds."""


class RequestWatch(CallUsage):
    """Per-request callback: token usage of every model call (tracing/usage.py, priced with the service's
    prices), and cancellation of the request's remaining work."""

    raise_error = True  # a cancelled request's next callback raises into the node that runs it
    run_inline = True

    def __init__(self, prices: dict | None = None):
        super().__init__(prices)
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise RequestCancelled("the request is over (the client went away or its deadline passed)")

    def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
        self._check()

    def on_llm_start(self, *args: Any, **kwargs: Any) -> None:
        self._check()
        super().on_llm_start(*args, **kwargs)

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self._check()
        super().on_chat_model_start(*args, **kwargs)

    def on_llm_new_token(self, *args: Any, **kwargs: Any) -> None:
        self._check()
        super().on_llm_new_token(*args, **kwargs)


class GraphEvents:
    """The graph's events for one request, each awaited at most `idle_s` and all within `deadline_s`."""

    def __init__(self, graph, inputs: Any, config: dict, context: dict | None, *, modes: list[str],
                 deadline_s: float, idle_s: float = math.inf, watch: RequestWatch | None = None):
        self._events = graph.astream(inputs, with_deadline(config, deadline_s), context=context, stream_mode=modes)
        self.deadline_s, self.idle_s = deadline_s, idle_s
        self.deadline = time.monotonic() + deadline_s
        self.watch = watch
        self._closed = False
        self._graph, self._thread_id = graph, (config.get("configurable") or {}).get("thread_id")
        self._ended = self._paused = False

    def _seen(self, event: tuple[str, Any]) -> tuple[str, Any]:
        mode, payload = event
        if mode == "updates" and isinstance(payload, dict) and "__interrupt__" in payload:
            self._paused = True
        return event

    async def next(self, idle: bool = True) -> tuple[str, Any] | None:
        """The next event; None at the end. `idle=False` waits up to the deadline (before a stream has begun)."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineError(f"the request took longer than its deadline of {self.deadline_s:g}s")
        wait = min(self.idle_s, remaining) if idle else remaining
        try:
            return self._seen(await asyncio.wait_for(anext(self._events), wait))
        except StopAsyncIteration:
            self._ended = True
            return None
        except TimeoutError:
            if wait < remaining:
                raise StreamIdleError(f"the stream was silent for {self.idle_s:g}s (--stream-idle-s)") from None
            raise DeadlineError(f"the request took longer than its deadline of {self.deadline_s:g}s") from None

    async def all(self) -> AsyncIterator[tuple[str, Any]]:
        """The events without a timer each (the caller bounds the whole run)."""
        async for event in self._events:
            yield self._seen(event)
        self._ended = True

    async def aclose(self) -> None:
        if self.watch is not None:
            self.watch.cancel()
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):  # closing a failed or cancelled run must not raise again
                await self._events.aclose()
            await self._forget_if_answered()

    async def _forget_if_answered(self) -> None:
        """An in-process checkpointer (`persistence.checkpointer: memory`) would keep every answered request's
        thread for the life of the service: one that ended with an answer is dropped (a paused one is kept for
        its review; SQLite and Postgres keep theirs on disk)."""
        saver = getattr(self._graph, "checkpointer", None)
        if self._ended and not self._paused and self._thread_id and isinstance(saver, InMemorySaver):
            await saver.adelete_thread(self._thread_id)


def needs_review(thread_id: str) -> ProtocolError:
    return ProtocolError(409, f"the query needs human review (thread {thread_id}): POST /v1/threads/{thread_id}/resume "
                              'with {"task": ...} or {"expert": ...}', "needs_review")


def refused_parameters(kind: str, params: list[str]) -> ProtocolError:
    """A fan-out or a plan does not take the caller's sampling options or tools: refused, naming the first."""
    why = {"fanout": "the query was routed to a fan-out of several experts (their sampling options are applied, "
                     "but tool calls from several experts cannot be merged), which does not take",
           "plan": "a planned query (coe-plan) answers in prose and does not take"}[kind]
    return ProtocolError(400, f"unsupported parameter {params[0]!r}: {why} {', '.join(params)}; send it to one "
                              "expert (model coe/<expert>) or leave it out", "unsupported_parameter", params[0])


def _attr(value: Any, name: str, default: Any = None) -> Any:
    return value.get(name, default) if isinstance(value, dict) else getattr(value, name, default)


class Translator:
    """Reads a request's graph events: headers, review pauses, refusals, answer tokens as SSE chunks, the final
    state. `params` are the request's sampling options and tools, refused by a fan-out or a plan; `model_of`
    names an expert's model, the `model` of a stream's chunks once that expert's first token is known."""

    def __init__(self, thread_id: str, completion_id: str, model: str, params: list[str],
                 model_of: Callable[[str], str | None] = lambda expert: None,
                 on_answer: Callable[[Any], None] = lambda decision: None):
        self.thread_id, self.completion_id, self.model, self.params = thread_id, completion_id, model, params
        self.model_of, self.on_answer = model_of, on_answer
        self.headers: dict[str, str] | None = None
        self.decision = None
        self.final: AIMessage | None = None
        self.values: dict | None = None
        self.streamed = False
        self.answerer: str | None = None
        self.emitted = False  # once a chunk is out, its `model` stays that of every later chunk
        self.started = time.monotonic()
        self.decided_s: float | None = None  # seconds to the router's decision (metrics)
        self.first_s: float | None = None  # seconds to the first answer chunk of a stream
        self.cost: Callable[[], dict] | None = None  # the request's cost, added to the closing chunk's `coe`

    def feed(self, event: tuple[str, Any]) -> list[str]:
        mode, payload = event
        if mode == "values":
            self.values = payload
            return []
        if mode == "messages":
            return self._token(*payload)
        out = []
        if "__interrupt__" in payload:
            raise needs_review(self.thread_id)
        for node, update in payload.items():
            if not isinstance(update, dict):
                continue
            if update.get("decision") is not None:
                self.decision = update["decision"]
            routed = node in ("router", "review") and update.get("decision") is not None  # None: left to review
            if routed and self.decided_s is None:
                self.decided_s = time.monotonic() - self.started
            if routed and self.headers is None:
                tools = [param for param in self.params if param == "tools"]
                if tools and _attr(update.get("route"), "consult"):
                    raise refused_parameters("fanout", tools)
                decision = update["decision"]
                self.headers = {"x-coe-expert": decision.expert, "x-coe-task": decision.task,
                                "x-coe-fallbacks": ",".join(decision.fallbacks)}
            if node == "planner" and self.headers is None:
                if self.params:
                    raise refused_parameters("plan", self.params)
                self.headers = {"x-coe-mode": "plan", "x-coe-plan-status": str(update.get("plan_status", ""))}
            if node == "step" and update.get("steps"):
                step = update["steps"][-1]
                self.emitted = True
                out.append(chunk(self.completion_id, self.model, {}, coe_step=step.model_dump(mode="json")))
            if node in ANSWER_NODES and update.get("messages"):
                self.final = update["messages"][-1]
        return out

    def _token(self, message: Any, meta: dict) -> list[str]:
        tags = meta.get("tags") or []
        if ANSWER_TAG not in tags or not isinstance(message, AIMessageChunk):
            return []
        delta: dict[str, Any] = {}
        if message.content:
            delta["content"] = message.text
        if message.tool_call_chunks:
            delta["tool_calls"] = tool_call_deltas(message.tool_call_chunks)
        if not delta:
            return []
        if self.answerer is None:
            self.answerer = next((t[7:] for t in tags if t.startswith("expert:")), None)
        if not self.streamed:  # the writer's model (expert, refiner or synthesizer), as without streaming
            self.model = meta.get("ls_model_name") or (self.answerer and self.model_of(self.answerer)) or self.model
        if self.first_s is None:
            self.first_s = time.monotonic() - self.started
        self.streamed = self.emitted = True
        return [chunk(self.completion_id, self.model, delta)]

    def stream_headers(self) -> dict[str, str]:
        if self.headers is None:
            raise ProtocolError(502, "the router graph ended before routing", "no_route")
        headers = dict(self.headers)
        if self.answerer and "x-coe-expert" in headers:
            headers["x-coe-expert"] = self.answerer
        return headers

    def finish(self, include_usage: bool, usage: Callable[[], dict]) -> list[str]:
        """The closing chunks: the answer when it was not streamed token by token, the finish reason with the
        routing decision, the usage when asked for, and [DONE]."""
        out = []
        final = self.final if isinstance(self.final, AIMessage) else None
        if final is not None and self.decision is not None:
            self.on_answer(self.decision)
        if final is not None and not self.streamed:
            delta: dict[str, Any] = {"content": final.text}
            if final.tool_calls:
                delta["tool_calls"] = tool_call_deltas(final.tool_calls, complete=True)
            out.append(chunk(self.completion_id, self.model, delta))
        finish = finish_reason(final) if final is not None else "stop"
        coe = self.decision.model_dump(mode="json") if self.decision is not None else None
        if coe is not None and self.cost is not None:
            coe["cost"] = self.cost()
        out.append(chunk(self.completion_id, self.model, {}, finish=finish, coe=coe))
        if include_usage:
            out.append(chunk(self.completion_id, self.model, None, usage=usage()))
        out.append(DONE)
        return out


async def open_stream(events: GraphEvents, translator: Translator, include_usage: bool, usage: Callable[[], dict],
                      error_code: Callable[[BaseException], tuple[str, str]]) -> tuple[dict, AsyncIterator[str]]:
    """Run the graph to its first output (or its end) and return the response headers and the SSE body. Failures
    until then raise (a plain HTTP error); later ones end the body with an SSE error event."""
    first: list[str] = []
    ended = False
    try:
        while not first:
            event = await events.next(idle=False)
            if event is None:
                ended = True
                break
            first = translator.feed(event)
        headers = translator.stream_headers()
        if ended:
            first = translator.finish(include_usage, usage)
    except BaseException:
        await events.aclose()
        raise

    async def body() -> AsyncIterator[str]:
        try:
            yield chunk(translator.completion_id, translator.model, {"role": "assistant", "content": ""})
            for piece in first:
                yield piece
            if ended:
                return
            while (event := await events.next()) is not None:
                for piece in translator.feed(event):
                    yield piece
            for piece in translator.finish(include_usage, usage):
                yield piece
        except Exception as exc:  # noqa: BLE001 - after the headers, every failure is an SSE error event
            message, code = error_code(exc)
            expert = getattr(exc, "expert", None)
            yield error_event(message, code, **({"expert": expert} if expert else {}))
            yield DONE
        finally:
            with anyio.CancelScope(shield=True):  # a client reset cancels this task while it waits for an event:
                await events.aclose()             # the run's end must still run whole

    return headers, body()


async def run_to_end(events: GraphEvents, translator: Translator) -> dict:
    """Run the graph for a non-streamed request (one timer for the whole deadline); returns its final state."""
    timer = asyncio.timeout(max(events.deadline - time.monotonic(), 0))
    try:
        async with timer:
            async for event in events.all():
                translator.feed(event)
    except TimeoutError:
        if not timer.expired():
            raise
        raise DeadlineError(f"the request took longer than its deadline of {events.deadline_s:g}s") from None
    finally:
        await events.aclose()
    if translator.values is None:
        raise ProtocolError(502, "the router graph ended without an answer", "no_answer")
    return translator.values
