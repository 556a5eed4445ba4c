"""Planner node: the query's plan (ordered subtasks) and whether it was used or fell back to one step."""

from __future__ import annotations

from typing import Callable

from coe_router.graphs.state import PlanState
from coe_router.routing.plans import Planner


def make_planner_node(planner: Planner) -> Callable[[PlanState], dict]:
    def planner_node(state: PlanState) -> dict:
        plan, status = planner(state["query"])
        return {"plan": plan, "plan_status": status, "steps": []}

    return planner_node
