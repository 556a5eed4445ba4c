"""The CCoE planning graph: planner -> step (looped once per subtask) -> synthesizer.

Each step is a full single-shot routing run (the two-stage graph), so planned subtasks share the classifier,
retriever, router and fallbacks of the single-shot path; Studio draws the planner loop.
"""

from __future__ import annotations

from typing import Literal

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph

from coe_router.defaults import MAX_QUERY_CHARS, RUN_NAME
from coe_router.graphs.context import RouterContext
from coe_router.nodes.intake import make_intake_node
from coe_router.nodes.planner import make_planner_node
from coe_router.nodes.step import make_step_node
from coe_router.nodes.synthesizer import make_synthesizer_node
from coe_router.routing.plans import Planner

from .state import InputState, PlanOutputState, PlanState, read


def next_step(state: PlanState) -> Literal["step", "synthesizer"]:
    return "step" if len(read(state, "steps", [])) < len(read(state, "plan").subtasks) else "synthesizer"


def build_planning_graph(*, planner: Planner, step_graph, synthesizer: BaseChatModel | None = None,
                         max_query_chars: int = MAX_QUERY_CHARS, checkpointer=None, name: str = RUN_NAME):
    builder = StateGraph(PlanState, input_schema=InputState, output_schema=PlanOutputState,
                         context_schema=RouterContext)
    builder.add_node("intake", make_intake_node(max_query_chars, step_graph.pool.names, planner.tasks))
    builder.add_node("planner", make_planner_node(planner))
    builder.add_node("step", make_step_node(step_graph, synthesized=synthesizer is not None))
    builder.add_node("synthesizer", make_synthesizer_node(synthesizer))
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "planner")
    builder.add_edge("planner", "step")
    builder.add_conditional_edges("step", next_step, ["step", "synthesizer"])
    builder.add_edge("synthesizer", END)
    graph = builder.compile(checkpointer=checkpointer, name=name)
    graph.pool = step_graph.pool
    graph.query_router = getattr(step_graph, "query_router", None)
    return graph
