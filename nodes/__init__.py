"""Graph nodes, one module each; each factory takes its dependencies and returns a function of the state."""

from .aggregator import make_aggregator_node
from .classifier import make_classifier_node
from .composite import make_composite_node
from .consult import make_consult_node
from .expert import ExpertsFailedError, make_expert_node
from .intake import make_intake_node
from .retriever import make_retriever_node
from .review import make_review_node
from .router import make_router_node

__all__ = [
    "ExpertsFailedError",
    "make_aggregator_node",
    "make_classifier_node",
    "make_composite_node",
    "make_consult_node",
    "make_expert_node",
    "make_intake_node",
    "make_retriever_node",
    "make_review_node",
    "make_router_node",
]
