"""Consult node: one expert of a fan-out, run in parallel with the others (LangGraph Send); failures are recorded,
not raised, so the aggregator can still use the experts that answered. A consulted expert has the same time
budget, breaker and retries as a routed one (routing/fallback.py), with no fallback of its own."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig

from coe_router.graphs.state import RouterState, read
from coe_router.routing.expert_call import aask_expert, ask_expert, with_context
from coe_router.routing.fallback import RouteWalk
from coe_router.routing.pool import ExpertPool
from coe_router.schema import Consultation

from ._both import sync_and_async


def make_consult_node(pool: ExpertPool):
    def start(state: RouterState, config: RunnableConfig):
        name, decision = state["consult_expert"], read(state, "decision")
        record = Consultation(expert=name, task=decision.task, rank=state["consult_rank"])
        question = with_context(state["query"], state.get("context"))

        def arguments(attempt) -> dict:
            return {"name": name, "spec": attempt.spec, "model": attempt.model, "question": question,
                    "options": state.get("options"), "task": decision.task,
                    "run_metadata": {"fanout_rank": record.rank, "task_map_version": decision.task_map_version},
                    "conversation": state.get("messages") or [], "sampling": state.get("sampling"),
                    "attempt": attempt}

        return RouteWalk(pool, [name], config), record, arguments

    def outcome(walk: RouteWalk, record: Consultation, found) -> dict:
        if found is None:
            why = walk.errors.get(record.expert) or str(walk.error())
            return {"consultations": [record.model_copy(update={"error": why})]}
        answer = found[1]
        return {"consultations": [record.model_copy(update={"answer": answer.text, "choice": answer.choice})]}

    def consult(state: RouterState, config: RunnableConfig) -> dict:
        walk, record, arguments = start(state, config)
        return outcome(walk, record, walk.run(lambda attempt: ask_expert(**arguments(attempt))))

    async def aconsult(state: RouterState, config: RunnableConfig) -> dict:
        walk, record, arguments = start(state, config)
        return outcome(walk, record, await walk.arun(lambda attempt: aask_expert(**arguments(attempt))))

    return sync_and_async("consult", consult, aconsult)
