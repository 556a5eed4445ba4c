"""Step node: runs the next subtask of the plan through the single-shot router (retriever -> classifier -> router
-> expert), with the outputs of the earlier steps as the expert's context (CCoE eq. 4)."""

from __future__ import annotations

from typing import Callable

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from coe_router.graphs.context import RouterContext
from coe_router.graphs.state import PlanState, read
from coe_router.prompts.planner import format_steps
from coe_router.schema import Step


def make_step_node(step_graph) -> Callable[[PlanState, RunnableConfig, Runtime[RouterContext]], dict]:
    """Each step runs the single-shot graph with this run's context (a pinned expert or task applies to every
    step); steps never bind the caller's tools: a plan's steps answer in prose."""

    def step(state: PlanState, config: RunnableConfig, runtime: Runtime[RouterContext]) -> dict:
        done = read(state, "steps", [])
        subtasks = read(state, "plan").subtasks
        subtask = subtasks[len(done)]
        single = len(subtasks) == 1
        inputs = {
            "query": subtask.text,
            "options": state.get("options") if single else None,
            "context": format_steps([(s.text, s.output) for s in done]) if done else None,
            "task_hint": subtask.task,
        }
        result = step_graph.invoke(inputs, config, context=runtime.context)
        decision = result["decision"]
        record = Step(text=subtask.text, task=decision.task, expert=decision.expert, output=result["answer"])
        return {"steps": [*done, record], "decision": decision, "answer": result["answer"],
                "choice": result.get("choice")}

    return step
