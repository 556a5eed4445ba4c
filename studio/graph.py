"""LangGraph Studio entry points: the router compiled with $COE_CONFIG, or the embedded local default.

`graph` is the config's own mode; `plan_graph` is the same config in planning mode, so Studio can show the planner
loop. This is the only module that compiles graphs at import time (`langgraph dev` imports it via langgraph.json).
"""

import os

from coe_router import build_graph, load_config

config = load_config(os.environ.get("COE_CONFIG") or None)
graph = build_graph(config)
plan_graph = build_graph(config.replace(mode="plan"))
