"""Consult node: one expert of a fan-out, run in parallel with the others (LangGraph Send); failures are recorded,
not raised, so the aggregator can still use the experts that answered. A consulted expert has the same time
budget, breaker and retries as a routed one (routing/fallback.py), with no fallback of its own."""

from __future__ import annotations

import asyncio
import time

from langchain_core.runnables import RunnableConfig

from coe_router.graphs.state import RouterState, read
from coe_router.routing.expert_call import aask_expert, ask_expert, with_context
from coe_router.routing.fallback import RouteWalk, RequestCancelled
from coe_router.routing.pool import ExpertPool
from coe_router.schema import Consultation

from ._both import sync_and_async


def make_consult_node(pool: ExpertPool):
    def start(state: RouterState, config: RunnableConfig):
        name, decision = state["consult_expert"], read(state, "decision")
        record = Consultation(expert=name, task=decision.task, rank=state["consult_rank"])
        question = with_context(state["query"], state.get("context"))

        def request(attempt) -> tuple[tuple, dict]:
            args = (name, attempt.spec, attempt.model, question, state.get("options"), decision.task,
                    {"fanout_rank": record.rank, "task_map_version": decision.task_map_version})
            return args, {"conversation": state.get("messages") or [], "sampling": state.get("sampling"),
                          "attempt": attempt}

        return RouteWalk(pool, [name], config), record, request

    def outcome(walk: RouteWalk, record: Consultation, answer=None) -> dict:
        if answer is None:
            why = walk.errors.get(record.expert) or str(walk.error())
            return {"consultations": [record.model_copy(update={"error": why})]}
        return {"consultations": [record.model_copy(update={"answer": answer.text, "choice": answer.choice})]}

    def consult(state: RouterState, config: RunnableConfig) -> dict:
        walk, record, request = start(state, config)
        while (attempt := walk.next()) is not None:
            args, kwargs = request(attempt)
            try:
                answer = ask_expert(*args, **kwargs)
            except RequestCancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - one expert's failure must not sink the others
                if (wait := walk.failed(attempt, exc)) is not None:
                    time.sleep(wait)
                continue
            walk.succeeded(attempt)
            return outcome(walk, record, answer)
        return outcome(walk, record)

    async def aconsult(state: RouterState, config: RunnableConfig) -> dict:
        walk, record, request = start(state, config)
        while (attempt := walk.next()) is not None:
            args, kwargs = request(attempt)
            try:
                answer = await aask_expert(*args, **kwargs)
            except RequestCancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - one expert's failure must not sink the others
                if (wait := walk.failed(attempt, exc)) is not None:
                    await asyncio.sleep(wait)
                continue
            walk.succeeded(attempt)
            return outcome(walk, record, answer)
        return outcome(walk, record)

    return sync_and_async("consult", consult, aconsult)
