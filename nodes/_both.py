"""A node with a sync and an async body: `graph.invoke` runs the first, `graph.ainvoke`/`astream` the second.

LangGraph itself wraps every plain function node in `RunnableCallable(func, afunc, trace=False)` (a sync
function gets an async twin that runs it in a thread); giving it both bodies is the same object with a real
async body, so config and runtime are injected exactly as for any node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from langgraph._internal._runnable import RunnableCallable


def sync_and_async(name: str, func: Callable, afunc: Callable[..., Awaitable]) -> RunnableCallable:
    return RunnableCallable(func, afunc, name=name, trace=False)
