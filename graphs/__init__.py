"""Graph builders and state schemas."""

from .state import InputState, OutputState, RouterState
from .two_stage import build_two_stage_graph

__all__ = ["InputState", "OutputState", "RouterState", "build_two_stage_graph"]
