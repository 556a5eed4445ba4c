"""Intake node: what this run routes (the last human turn of `messages`, or `query`) and whether the run's
context is valid, checked before any model or the encoder spends time on it.

A `query` input is appended to the conversation as a human turn, so both inputs leave the same state behind and
a later turn on the same thread sees the whole conversation. A conversation's last human turn is routed once:
the intake remembers its message id, so on a thread a new `query` is told apart from a turn already answered.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterable

from langchain_core.messages import HumanMessage, convert_to_messages
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from coe_router.graphs.context import RouterContext, check_configurable, check_context, run_context
from coe_router.graphs.state import RouterState
from coe_router.inputs import check_query


def last_human(messages) -> HumanMessage | None:
    return next((m for m in reversed(messages or []) if isinstance(m, HumanMessage)), None)


def input_query(inputs: Any) -> str | None:
    """The text the intake will route for the run input `inputs`, where the input alone tells: the last human turn
    of its `messages`, else its `query`; None when it does not (no such key, a malformed message)."""
    if not isinstance(inputs, dict):
        return None
    if inputs.get("messages"):
        try:
            turn = last_human(convert_to_messages(inputs["messages"]))
        except (ValueError, TypeError, NotImplementedError):  # the intake reports a malformed message itself
            return None
        return turn.text if turn is not None else None
    query = inputs.get("query")
    return query if isinstance(query, str) else None


def make_input_prefetch(prefetch: Callable[[str], None], max_query_chars: int) -> Callable[[Any], None]:
    """`prefetch` of the query a run input carries, for callers that hold the input before the graph starts
    (`decide`, `coe serve`): the embedding then runs beside LangGraph's start-up too, not only beside the step
    from intake to retriever. A text the intake would refuse is not embedded."""

    def prefetch_input(inputs: Any) -> None:
        query = input_query(inputs)
        if query is not None and query.strip() and len(query) <= max_query_chars:
            prefetch(query)

    return prefetch_input


def make_intake_node(max_query_chars: int, experts: Callable[[], Iterable[str]],
                     tasks: Iterable[str], prefetch: Callable[[str], None] | None = None) -> Callable[..., dict]:
    """`experts` is called per run (the live pool may change); `tasks` are the configured tasks. A `configurable`
    key that misspells a context field is refused too (see graphs/context.misspelt_context_keys). `prefetch`
    (the retriever's `ExampleStore.prefetch`) starts the query's embedding once the query is valid, so it runs
    beside LangGraph's step to the retriever (coe_router/retrieval/prefetch.py)."""
    tasks = list(tasks)
    start = prefetch or (lambda _query: None)

    def intake(state: RouterState, config: RunnableConfig, runtime: Runtime[RouterContext]) -> dict:
        check_configurable(config.get("configurable"))
        check_context(run_context(runtime), experts(), tasks)
        turn = last_human(state.get("messages"))
        if turn is not None and turn.id != state.get("routed_message_id"):
            query = check_query(turn.text, max_query_chars)
            start(query)
            return {"query": query, "routed_message_id": turn.id}
        query = check_query(state.get("query"), max_query_chars)
        start(query)
        message = HumanMessage(query, id=str(uuid.uuid4()))
        return {"query": query, "messages": [message], "routed_message_id": message.id}

    return intake
