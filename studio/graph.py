"""LangGraph Studio entry points: the router compiled with $COE_CONFIG, or the embedded local default.

`graph` is the config's own mode; `plan_graph` is the same config in planning mode, so Studio can show the planner
loop (None when the config has no planner model). This is the only module that compiles graphs at import time
(`langgraph dev` imports it via langgraph.json).

LangGraph's Agent Server (`langgraph dev`, and the standalone server of deploy/langgraph.json) checkpoints every
thread itself, in PostgreSQL in production, so a config's own checkpointer (which `coe serve` opens) is replaced by
`checkpointer: parent`: the graphs use the server's, and a config that reviews unknown queries pauses there. The
planning graph never pauses for review.
"""

import os

from coe_router import build_graph, load_config

config = load_config(os.environ.get("COE_CONFIG") or None)
if config.persistence.checkpointer != "none":
    config = config.replace(persistence={**config.persistence.model_dump(), "checkpointer": "parent"})

graph = build_graph(config)
plan_graph = build_graph(config.replace(
    mode="plan", persistence={**config.persistence.model_dump(), "review_unknown": False})) if config.planner.model else None
