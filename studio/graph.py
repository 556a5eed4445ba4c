"""LangGraph Studio entry points: the router compiled with $COE_CONFIG, or the embedded local default.

`graph` is the config's own mode; `plan_graph` is the same config in planning mode, so Studio can show the planner
loop (None when the config has no planner model). This is the only module that compiles graphs at import time
(`langgraph dev` imports it via langgraph.json).

LangGraph's Agent Server (`langgraph dev`, and the standalone server of deploy/langgraph.json) checkpoints every
thread itself, in PostgreSQL in production: the config's own checkpointer, which `coe serve` opens, is not opened
here. A config that reviews unknown queries is compiled with an in-memory one (review needs a checkpointer to
validate) that is then dropped, so the server's is used; the planning graph never pauses for review.
"""

import os

from coe_router import build_graph, load_config

config = load_config(os.environ.get("COE_CONFIG") or None)


def _served_by_the_agent_server(graph):
    graph.checkpointer = None
    return graph


if config.persistence.checkpointer == "none":
    graph = build_graph(config)
    plan_graph = build_graph(config.replace(mode="plan")) if config.planner.model else None
else:
    _persistence = config.persistence.model_dump()
    graph = _served_by_the_agent_server(build_graph(config.replace(persistence={**_persistence,
                                                                                 "checkpointer": "memory"})))
    plan_graph = _served_by_the_agent_server(build_graph(config.replace(
        mode="plan", persistence={**_persistence, "checkpointer": "memory", "review_unknown": False}))
    ) if config.planner.model else None
