"""Intake node: what this run routes (the last human turn of `messages`, or `query`) and whether the run's
context and tools are valid, checked before any model or the encoder spends time on it.

A `query` input is appended to the conversation as a human turn, so both inputs leave the same state behind and
a later turn on the same thread sees the whole conversation. A conversation's last human turn is routed once:
the intake remembers its message id, so on a thread a new `query` is told apart from a turn already answered.
"""

from __future__ import annotations

import uuid
from typing import Callable, Iterable

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from coe_router.graphs.context import RouterContext, check_configurable, check_context, run_context
from coe_router.graphs.state import RouterState
from coe_router.inputs import check_query, message_text
from coe_router.routing.tool_specs import check_tools


def last_human(messages) -> HumanMessage | None:
    return next((m for m in reversed(messages or []) if isinstance(m, HumanMessage)), None)


def make_intake_node(max_query_chars: int, experts: Callable[[], Iterable[str]],
                     tasks: Iterable[str]) -> Callable[..., dict]:
    """`experts` is called per run (the live pool may change); `tasks` are the configured tasks. A `configurable`
    key that misspells a context field is refused too (see graphs/context.misspelt_context_keys)."""
    tasks = list(tasks)

    def intake(state: RouterState, config: RunnableConfig, runtime: Runtime[RouterContext]) -> dict:
        check_configurable(config.get("configurable"))
        check_context(run_context(runtime), experts(), tasks)
        check_tools(state.get("tools"))
        turn = last_human(state.get("messages"))
        if turn is not None and turn.id != state.get("routed_message_id"):
            return {"query": check_query(message_text(turn.content), max_query_chars), "routed_message_id": turn.id}
        query = check_query(state.get("query"), max_query_chars)
        message = HumanMessage(query, id=str(uuid.uuid4()))
        return {"query": query, "messages": [message], "routed_message_id": message.id}

    return intake
