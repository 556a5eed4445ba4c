"""Graph nodes, one module each; each factory takes its dependencies and returns a function of the state."""

from .classifier import make_classifier_node
from .expert import ExpertsFailedError, make_expert_node
from .retriever import make_retriever_node
from .router import TaskMap, make_router_node

__all__ = [
    "ExpertsFailedError",
    "TaskMap",
    "make_classifier_node",
    "make_expert_node",
    "make_retriever_node",
    "make_router_node",
]
