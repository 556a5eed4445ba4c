"""Expert node: asks the routed expert, walking the fallback chain when one fails, and records what happened."""

from __future__ import annotations

from typing import Callable

from langchain_core.runnables import RunnableConfig

from coe_router.graphs.state import RouterState, read
from coe_router.redact import redact
from coe_router.routing.context_window import ContextWindowError, QueryTooLongError
from coe_router.routing.expert_call import ToolsUnsupportedError, ask_expert, with_context
from coe_router.routing.pool import ExpertPool
from coe_router.routing.reply import answer_message
from coe_router.tracing.annotations import annotate_router_run


class ExpertsFailedError(RuntimeError):
    """Every expert on the route failed; `errors` maps each expert tried to why."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        tried = "; ".join(f"{name}: {why}" for name, why in errors.items())
        super().__init__(f"all {len(errors)} experts failed: {tried}")


def no_expert_could(failures: dict[str, Exception]) -> Exception:
    """The error for a route on which every expert failed: the request's own fault when every expert refused it
    for the same reason (too long for every context window, tools none can call), else the experts'."""
    errors = {name: redact(f"{type(exc).__name__}: {exc}") for name, exc in failures.items()}
    if failures and all(isinstance(exc, ContextWindowError) for exc in failures.values()):
        return QueryTooLongError("the query is too long for every expert: " + "; ".join(map(str, failures.values())))
    if failures and all(isinstance(exc, ToolsUnsupportedError) for exc in failures.values()):
        return ToolsUnsupportedError("no expert on the route can call tools: " + "; ".join(map(str, failures.values())))
    return ExpertsFailedError(errors)


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


def make_expert_node(pool: ExpertPool) -> Callable[[RouterState, RunnableConfig], dict]:
    def expert(state: RouterState, config: RunnableConfig) -> dict:
        route, decision = read(state, "route"), read(state, "decision")
        question = with_context(state["query"], state.get("context"))
        errors: dict[str, str] = {}
        failures: dict[str, Exception] = {}
        for name in [route.expert, *route.fallbacks]:
            try:
                spec, model = pool.expert(name)
                answer = ask_expert(name, spec, model, question, state.get("options"), decision.task,
                                    _trace_metadata(decision, errors), conversation=state.get("messages") or [],
                                    tools=state.get("tools"), tool_choice=state.get("tool_choice"),
                                    sampling=state.get("sampling"), answer_path=True)
            except Exception as exc:  # noqa: BLE001 - any failure of one expert moves on to the next
                errors[name] = redact(f"{type(exc).__name__}: {exc}")
                failures[name] = exc
                continue
            final = decision.model_copy(update={"expert": name, "tried": [*errors, name], "errors": errors})
            annotate_router_run(config, final)
            return {"answer": answer.text, "choice": answer.choice, "decision": final,
                    "messages": [answer_message(answer.text, final, answer.message)]}
        raise no_expert_could(failures)

    return expert
