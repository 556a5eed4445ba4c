"""How the router chat model runs its inner graph: as a child of the model's own run, seeing only what it is given.

A chat model that runs a graph that runs a chat model trips LangChain in three ways, each handled here:
- the inner expert's tokens would reach an enclosing `stream_mode="messages"` or `astream_events` a second time,
  under the expert's name (`child_callbacks` leaves the message streamer out and makes the event stream deaf to
  the inner model runs; tracers keep everything);
- LangGraph merges the ambient runnable config (an enclosing chain's or graph's) into a graph's own, re-adding
  those callbacks and making the inner graph a sibling of the model's run (`without_ambient_config`);
- `stream`/`astream` do not hand their run manager to `_stream`/`_astream`, and no path hands the caller's config
  (its `configurable`) to `_generate`: the model's public entry points record the call here (`called_with`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from contextvars import Context, ContextVar, copy_context
from typing import Any, AsyncIterator, Callable, Iterator

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    BaseCallbackManager,
    CallbackManager,
)
from langchain_core.runnables import RunnableConfig, ensure_config
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tracers.event_stream import _AstreamEventsCallbackHandler
from langgraph.pregel._messages import StreamMessagesHandler

_CALL: ContextVar[RunnableConfig | None] = ContextVar("coe_chat_call", default=None)


@contextlib.contextmanager
def called_with(config: RunnableConfig | None):
    """Record the caller's config for the model methods this call reaches (set and reset in one context)."""
    token = _CALL.set(ensure_config(config))
    try:
        yield
    finally:
        _CALL.reset(token)


def with_run_id(config: RunnableConfig | None) -> RunnableConfig:
    """The config with the id the model's run will have (langchain-core takes `run_id` from it)."""
    config = ensure_config(config)
    return {**config, "run_id": config.get("run_id") or uuid.uuid4()}


def caller_configurable() -> dict[str, Any]:
    return dict((_CALL.get() or {}).get("configurable") or {})


def opened_run(model, kind: type[BaseCallbackManager]) -> BaseCallbackManager | None:
    """The run `stream`/`astream` opened, as a manager with its handlers (configured as langchain-core configured
    them) and its `run_id`; None outside a recorded stream."""
    config = _CALL.get()
    if config is None or config.get("run_id") is None:
        return None
    manager = kind.configure(config.get("callbacks"), model.callbacks, model.verbose, config.get("tags"), model.tags,
                             config.get("metadata"), model.metadata)
    manager.run_id = config["run_id"]
    return manager


def _without_model_runs(handler: BaseCallbackHandler) -> BaseCallbackHandler:
    """The same event stream (its state shared), deaf to chat model and LLM runs: `astream_events` still shows the
    inner graph's nodes, but not the expert's tokens a second time under the router's own."""
    quiet = type(f"Quiet{type(handler).__name__}", (type(handler),), {"ignore_llm": True, "ignore_chat_model": True})
    clone = object.__new__(quiet)
    clone.__dict__ = handler.__dict__
    return clone


def child_callbacks(parent) -> BaseCallbackManager | None:
    """Callbacks for the inner graph, a child of this model's run. This model streams the answer tokens itself, so
    the inner expert call must not reach them again: an enclosing graph's message streamer (`stream_mode=
    "messages"`) is left out, and `astream_events` hears the inner nodes but not the inner model runs. Tracers
    (LangSmith) keep everything."""
    if parent is None:
        return None
    handlers = [_without_model_runs(h) if isinstance(h, _AstreamEventsCallbackHandler) else h
                for h in parent.inheritable_handlers if not isinstance(h, StreamMessagesHandler)]
    kind = AsyncCallbackManager if isinstance(parent, (AsyncCallbackManagerForLLMRun, AsyncCallbackManager)) \
        else CallbackManager
    return kind(handlers=handlers, inheritable_handlers=handlers, parent_run_id=parent.run_id,
                tags=parent.inheritable_tags, inheritable_tags=parent.inheritable_tags,
                metadata=parent.inheritable_metadata, inheritable_metadata=parent.inheritable_metadata)


def without_ambient_config() -> Context:
    """A context in which the inner graph sees only the config this model gives it. LangGraph merges the ambient
    runnable config (an enclosing chain's or graph's) into a graph's own, which would re-add the callbacks
    `child_callbacks` left out and make the inner graph a sibling of this model's run instead of its child."""
    context = copy_context()
    context.run(var_child_runnable_config.set, None)
    return context


def run_in(context: Context, make: Callable[[], Iterator]) -> Iterator:
    iterator = context.run(make)
    while True:
        try:
            yield context.run(next, iterator)
        except StopIteration:
            return


async def arun_in(context: Context, make: Callable[[], AsyncIterator]) -> AsyncIterator:
    iterator = context.run(make)
    try:
        while True:
            try:
                yield await asyncio.create_task(anext(iterator), context=context)
            except StopAsyncIteration:
                return
    finally:
        await asyncio.create_task(iterator.aclose(), context=context)


