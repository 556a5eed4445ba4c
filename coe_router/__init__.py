"""coe-router: a Collaboration-of-Experts LLM router as a LangGraph state machine.

    from coe_router import build_graph, CoERouterChatModel
    graph = build_graph()                      # the embedded local default (configs/local.yaml)
    result = graph.invoke({"messages": [("user", "What is 17 * 23?")]})     # or {"query": "..."}
    result["answer"], result["decision"].expert, result["messages"][-1]
    router = CoERouterChatModel.from_graph(graph)                            # a LangChain chat model
"""

from coe_router.builder import build_graph, task_map_from_config
from coe_router.chat_model import CoERouterChatModel, NeedsReviewError
from coe_router.config import ConfigError, ExpertSpec, RouterConfig, load_config
from coe_router.errors import (
    AnswerInterruptedError,
    ExpertsFailedError,
    ExpertsUnavailableError,
    InvalidToolsError,
    QueryTooLongError,
    ToolsUnsupportedError,
    TruncatedAnswerError,
)
from coe_router.persistence import checkpoint_serializer
from coe_router.routing.decide import NoDecisionError, decide
from coe_router.schema import RetrievedExample, Route, RoutingDecision, TaskDecision

__all__ = [
    "AnswerInterruptedError",
    "CoERouterChatModel",
    "NeedsReviewError",
    "ExpertsFailedError",
    "ExpertsUnavailableError",
    "InvalidToolsError",
    "TruncatedAnswerError",
    "QueryTooLongError",
    "ToolsUnsupportedError",
    "ConfigError",
    "ExpertSpec",
    "RetrievedExample",
    "Route",
    "RouterConfig",
    "RoutingDecision",
    "TaskDecision",
    "NoDecisionError",
    "build_graph",
    "checkpoint_serializer",
    "decide",
    "load_config",
    "task_map_from_config",
]
