"""Defaults that several rooms share, kept in one place so the CLI, the service, the graphs and the config agree."""

UNKNOWN_TASK = "unknown"
"""The task of a query the classifier cannot place; it routes to the best-average expert (CoE-Ops eq. 8)."""

MAX_QUERY_CHARS = 20_000
"""Longest query accepted before any model runs (config `limits.max_query_chars`)."""

RUN_NAME = "coe-router"
"""Name of the root run of every routed query, whoever calls it (CLI, service, Studio, a LangChain app)."""

ROUTER_TAG = "coe-router"
"""Tag on every root run, so LangSmith users filter the router's runs from the rest of their app's."""
