"""Planner node: the query's plan (ordered subtasks) and whether it was used or fell back to one step."""

from __future__ import annotations

from typing import Callable

from coe_router.graphs.state import PlanState
from coe_router.inputs import check_query
from coe_router.routing.plans import Planner


def make_planner_node(planner: Planner, max_query_chars: int) -> Callable[[PlanState], dict]:
    def planner_node(state: PlanState) -> dict:
        query = check_query(state.get("query"), max_query_chars)
        plan, status = planner(query)
        return {"plan": plan, "plan_status": status, "steps": []}

    return planner_node
