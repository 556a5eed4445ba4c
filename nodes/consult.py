"""Consult node: one expert of a fan-out, run in parallel with the others (LangGraph Send); failures are recorded,
not raised, so the aggregator can still use the experts that answered."""

from __future__ import annotations

from typing import Callable

from coe_router.graphs.state import RouterState, read
from coe_router.redact import redact
from coe_router.routing.expert_call import ask_expert, with_context
from coe_router.routing.pool import ExpertPool
from coe_router.schema import Consultation


def make_consult_node(pool: ExpertPool) -> Callable[[RouterState], dict]:
    def consult(state: RouterState) -> dict:
        name, decision = state["consult_expert"], read(state, "decision")
        task = decision.task
        record = Consultation(expert=name, task=task, rank=state["consult_rank"])
        question = with_context(state["query"], state.get("context"))
        try:
            spec, model = pool.expert(name)
            answer = ask_expert(name, spec, model, question, state.get("options"), task,
                                {"fanout_rank": record.rank, "task_map_version": decision.task_map_version},
                                conversation=state.get("messages") or [], sampling=state.get("sampling"))
        except Exception as exc:  # noqa: BLE001 - one expert's failure must not sink the others
            return {"consultations": [record.model_copy(update={"error": redact(f"{type(exc).__name__}: {exc}")})]}
        return {"consultations": [record.model_copy(update={"answer": answer.text, "choice": answer.choice})]}

    return consult
