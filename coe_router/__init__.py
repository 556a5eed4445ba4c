"""coe-router: a Collaboration-of-Experts LLM router as a LangGraph state machine.

    from coe_router import build_graph
    graph = build_graph()                      # the embedded local default (configs/local.yaml)
    result = graph.invoke({"query": "What is 17 * 23?"})
    result["answer"], result["decision"].expert
"""

from coe_router.builder import build_graph, task_map_from_config
from coe_router.config import ConfigError, RouterConfig, load_config
from coe_router.schema import RetrievedExample, Route, RoutingDecision, TaskDecision

__all__ = [
    "ConfigError",
    "RetrievedExample",
    "Route",
    "RouterConfig",
    "RoutingDecision",
    "TaskDecision",
    "build_graph",
    "load_config",
    "task_map_from_config",
]
