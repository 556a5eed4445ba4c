"""LangGraph Studio entry point: the router compiled with $COE_CONFIG, or the embedded local default.

This is the only module that compiles a graph at import time (`langgraph dev` imports it via langgraph.json).
"""

import os

from coe_router import build_graph

graph = build_graph(os.environ.get("COE_CONFIG") or None)
