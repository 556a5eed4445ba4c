"""Step node: runs the next subtask of the plan through the single-shot router (its router step: intake, retriever,
classifier, expert choice; then the expert), with the outputs of the earlier steps as the expert's context (CCoE
eq. 4)."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from coe_router.graphs.context import RouterContext
from coe_router.graphs.state import PlanState, read
from coe_router.prompts.planner import format_steps
from coe_router.routing.expert_call import INTERMEDIATE_KEY
from coe_router.schema import Step

from ._both import sync_and_async


def make_step_node(step_graph, synthesized: bool = False):
    """Each step runs the single-shot graph with this run's context (a pinned expert or task applies to every
    step); steps never bind the caller's tools: a plan's steps answer in prose. A step whose output is not the
    answer (`synthesized`: a model writes it from every step) runs marked intermediate, so its tokens are not
    streamed as the answer's."""

    def inputs(state: PlanState, config: RunnableConfig) -> tuple[dict, str, RunnableConfig]:
        done = read(state, "steps", [])
        subtasks = read(state, "plan").subtasks
        subtask = subtasks[len(done)]
        single = len(subtasks) == 1
        last = len(done) == len(subtasks) - 1
        if not last or (synthesized and not single):
            config = {**config, "configurable": {**(config.get("configurable") or {}), INTERMEDIATE_KEY: True}}
        return {
            "query": subtask.text,
            "options": state.get("options") if single else None,
            "context": format_steps([(s.text, s.output) for s in done]) if done else None,
            "task_hint": subtask.task,
        }, subtask.text, config

    def recorded(state: PlanState, text: str, result: dict) -> dict:
        decision = result["decision"]
        record = Step(text=text, task=decision.task, expert=decision.expert, output=result["answer"])
        return {"steps": [*read(state, "steps", []), record], "decision": decision, "answer": result["answer"],
                "choice": result.get("choice")}

    def step(state: PlanState, config: RunnableConfig, runtime: Runtime[RouterContext]) -> dict:
        step_inputs, text, config = inputs(state, config)
        return recorded(state, text, step_graph.invoke(step_inputs, config, context=runtime.context))

    async def astep(state: PlanState, config: RunnableConfig, runtime: Runtime[RouterContext]) -> dict:
        step_inputs, text, config = inputs(state, config)
        return recorded(state, text, await step_graph.ainvoke(step_inputs, config, context=runtime.context))

    return sync_and_async("step", step, astep)
