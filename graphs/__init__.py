"""Graph builders and state schemas."""

from .planning import build_planning_graph
from .state import InputState, OutputState, PlanOutputState, PlanState, RouterState
from .two_stage import build_two_stage_graph

__all__ = [
    "InputState",
    "OutputState",
    "PlanOutputState",
    "PlanState",
    "RouterState",
    "build_planning_graph",
    "build_two_stage_graph",
]
