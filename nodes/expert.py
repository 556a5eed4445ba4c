"""Expert node: asks the routed expert, walking the fallback chain when one fails, and records what happened.

The chain is walked by `routing/fallback.RouteWalk` (time budgets, circuit breakers, retries, the stream rule);
the node has a sync and an async body so that in an async run (the service) a hung expert holds a socket on the
event loop, never one of the threads that every other request needs.
"""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig

from coe_router.graphs.state import RouterState, read
from coe_router.routing.expert_call import aask_expert, ask_expert, on_answer_path, with_context
from coe_router.routing.fallback import ExpertsFailedError, RouteWalk, no_expert_could, walk_result
from coe_router.routing.pool import ExpertPool
from coe_router.routing.reply import answer_message
from coe_router.tracing.annotations import annotate_router_run

from ._both import sync_and_async

__all__ = ["ExpertsFailedError", "make_expert_node", "no_expert_could"]


def _trace_metadata(decision, errors: dict[str, str]) -> dict:
    """The routing decision as run metadata of the expert call, so a LangSmith trace can be filtered by it."""
    return {
        "confidence": decision.confidence,
        "classifier": decision.classifier,
        "retrieved_ids": [example.id for example in decision.retrieved],
        "routed_expert": decision.expert,
        "fallbacks": decision.fallbacks,
        "failed_experts": list(errors),
        "task_map_version": decision.task_map_version,
    }


def make_expert_node(pool: ExpertPool):
    def start(state: RouterState, config: RunnableConfig):
        route, decision = read(state, "route"), read(state, "decision")
        walk = RouteWalk(pool, [route.expert, *route.fallbacks], config)
        question = with_context(state["query"], state.get("context"))

        def arguments(attempt) -> dict:
            """ask_expert's arguments for this attempt (the same for its async twin)."""
            return {"name": attempt.expert, "spec": attempt.spec, "model": attempt.model, "question": question,
                    "options": state.get("options"), "task": decision.task,
                    "run_metadata": _trace_metadata(decision, walk.errors),
                    "conversation": state.get("messages") or [], "tools": state.get("tools"),
                    "tool_choice": state.get("tool_choice"), "sampling": state.get("sampling"),
                    "answer_path": on_answer_path(config), "attempt": attempt}

        return walk, decision, arguments

    def done(walk, decision, found, config) -> dict:
        if found is None:
            raise walk.error()
        attempt, answer = found
        final = decision.model_copy(update=walk_result(walk, attempt))
        annotate_router_run(config, final)
        return {"answer": answer.text, "choice": answer.choice, "decision": final,
                "messages": [answer_message(answer.text, final, answer.message)]}

    def expert(state: RouterState, config: RunnableConfig) -> dict:
        walk, decision, arguments = start(state, config)
        found = walk.run(lambda attempt: ask_expert(**arguments(attempt)))
        return done(walk, decision, found, config)

    async def aexpert(state: RouterState, config: RunnableConfig) -> dict:
        walk, decision, arguments = start(state, config)
        found = await walk.arun(lambda attempt: aask_expert(**arguments(attempt)))
        return done(walk, decision, found, config)

    return sync_and_async("expert", expert, aexpert)
