"""Several node functions run as one graph step: the single-shot graph's `router` node is the intake, the
retriever, the classifier and the expert choice, in that order (graphs/two_stage.py).

Why one step and not four: every LangGraph step costs 0.25-0.4 ms of its own (set-up, writes, the checkpoint of
every channel), most of it in caches the query's forward pass has just emptied, and a routing decision is
judged against that one forward pass (docs/PERFORMANCE.md, "The knn router on a real memory"). The parts stay
functions of their own modules and run in order, each seeing the state as the one before left it. When a
callback listens (LangSmith, `astream_events`, a Studio run), each part runs as its own child run under its
name, so a trace still shows every part's input, output, time and error; with nobody listening they are plain
calls.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime

from coe_router.graphs.context import RouterContext
from coe_router.graphs.state import RouterState
from coe_router.tracing.annotations import heard

Part = Callable[..., dict]


def _uniform(part: Part) -> Callable[[dict, RunnableConfig, Runtime], dict]:
    """`part` called as `(state, config, runtime)`, passing only what its signature asks for (as LangGraph does)."""
    wants = inspect.signature(part).parameters
    pass_config, pass_runtime = "config" in wants, "runtime" in wants

    def call(state: dict, config: RunnableConfig, runtime: Runtime) -> dict:
        extra = {}
        if pass_config:
            extra["config"] = config
        if pass_runtime:
            extra["runtime"] = runtime
        return part(state, **extra)

    return call


def _apply(view: dict, update: dict, changes: dict) -> None:
    """Fold one part's `changes` into the state the next part sees and into the node's update, as the graph's
    reducers would between steps: `messages` appends (add_messages), every other key keeps the latest value (the
    router's parts write no other accumulating key; `consultations: None` resets it either way)."""
    for key, value in changes.items():
        if key == "messages":
            new = value if isinstance(value, list) else [value]
            view[key] = add_messages(view.get(key) or [], new)
            update[key] = [*update.get(key, []), *new]
        else:
            view[key] = update[key] = value


def make_composite_node(parts: Sequence[tuple[str, Part]]) -> Callable[..., dict]:
    """One node running `parts` ((name, node function) pairs) in order and returning all their updates.

    No part may pause the run (a LangGraph `interrupt`): on resume LangGraph runs a node again from its start, so
    the parts before the pause would decide again, maybe differently (a run context not passed on resume, an llm
    classifier asked twice). The human review is a node of its own for that reason (nodes/review.py)."""
    calls = [(name, _uniform(part)) for name, part in parts]

    def composite(state: RouterState, config: RunnableConfig, runtime: Runtime[RouterContext]) -> dict:
        view, update = dict(state), {}
        traced = heard(config)
        for name, call in calls:
            if traced:
                child = RunnableLambda(lambda part_state, config, call=call: call(part_state, config, runtime),
                                       name=name)
                changes = child.invoke(dict(view), config)  # a copy: event streams keep the input they were given
            else:
                changes = call(view, config, runtime)
            _apply(view, update, changes)
        return update

    return composite
