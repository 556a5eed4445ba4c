"""The routing decision on the router's own run, so a LangSmith user filters runs by expert or task.

The decision is known only halfway through a run (after the router node; the answering expert after the last
fallback), while a run's metadata is normally fixed when it starts. Tracers keep every open run until it ends and
send its tags and metadata with the final update, so the nodes add the decision to the open run named
`coe-router` (the router's root run; the nearest one when the router is a node of a larger app) before it ends.

Next to it goes what the run cost so far (`cost`: dollars, tokens and the breakdown by caller, or `unpriced`
naming the models without a price; `cost_dollars`: the total, or "unpriced", a filterable scalar), when the run has
a priced usage tally among its callbacks (tracing/usage.py: the service's every request; a Python caller's own).
It is written on the outermost `coe-router` run, whose calls the tally sums; the last node to write it (the
answering expert, the aggregator, the synthesizer) has seen every call.
"""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_callback_manager_for_config

from coe_router.defaults import RUN_NAME
from coe_router.schema import RoutingDecision
from coe_router.tracing.usage import CallUsage

DECISION_TAG_PREFIXES = ("task:", "expert:", "mode:")


def decision_metadata(decision: RoutingDecision) -> dict:
    """The decision as flat run metadata (LangSmith filters on these keys). `fallback_used`: the routed expert
    failed and another one answered (a fan-out vote won by another consulted expert is no fallback)."""
    routed = (decision.tried or [decision.expert])[0]
    return {
        "task": decision.task,
        "confidence": decision.confidence,
        "classifier": decision.classifier,
        "expert": decision.expert,
        "routed_expert": routed,
        "fallbacks": decision.fallbacks,
        "fallback_used": decision.expert != routed and routed in decision.errors,
        "failed_experts": list(decision.errors),
        "consulted": [consultation.expert for consultation in decision.consulted],
        "aggregation": decision.aggregation,
        "retrieved_ids": [example.id for example in decision.retrieved],
        "retrieved_scores": [example.score for example in decision.retrieved],
        "task_map_version": decision.task_map_version,
        "overrides": decision.overrides,
    }


def cost_metadata(cost: dict) -> dict:
    """A run's cost as flat run metadata: the whole figure, and its total (or "unpriced") to filter on."""
    return {"cost": cost, "cost_dollars": "unpriced" if cost["dollars"] is None else cost["dollars"]}


def heard(config: RunnableConfig | None) -> bool:
    """Whether any callback handler hears this call. Without one there is no open run to annotate and no tally,
    so an untraced run skips building a callback manager (two per annotating node, 70 us on two cores). A
    tracer that the environment would add now would not hold this run either: it was not there when it started."""
    callbacks = (config or {}).get("callbacks")
    handlers = callbacks if isinstance(callbacks, list) else getattr(callbacks, "handlers", None)
    return bool(handlers)


def _router_runs(config: RunnableConfig | None, outermost: bool = False):
    """The nearest (or outermost) open `coe-router` run of every tracer of this call (else the trace's root
    run)."""
    if not heard(config):
        return
    manager = get_callback_manager_for_config(config)
    for handler in manager.handlers:
        run_map = getattr(handler, "run_map", None)
        if not run_map or manager.parent_run_id is None:
            continue
        run = run_map.get(str(manager.parent_run_id))
        found = None
        while run is not None:
            if run.name == RUN_NAME:
                found = run
                if not outermost:
                    break
            if run.parent_run_id is None or (parent := run_map.get(str(run.parent_run_id))) is None:
                break
            run = parent
        if found is None:
            found = run
        if found is not None:
            yield found


def _tally(config: RunnableConfig | None) -> CallUsage | None:
    """The priced usage tally among this call's callbacks, if any."""
    if not heard(config):
        return None
    manager = get_callback_manager_for_config(config)
    return next((h for h in manager.handlers if isinstance(h, CallUsage) and h.prices is not None), None)


def annotate_cost(config: RunnableConfig | None) -> int:
    """Put the cost so far of this call's priced usage tally on the outermost open `coe-router` run of every
    tracer; a later call replaces it. Returns how many runs were annotated (0 without a tally or tracers)."""
    tally = _tally(config)
    cost = tally.run_cost() if tally is not None else None
    if cost is None:
        return 0
    annotated = 0
    for run in _router_runs(config, outermost=True):
        run.extra = run.extra or {}
        run.extra["metadata"] = {**(run.extra.get("metadata") or {}), **cost_metadata(cost)}
        annotated += 1
    return annotated


def _annotate(config: RunnableConfig | None, metadata: dict, tags: list[str]) -> int:
    annotated = 0
    for run in _router_runs(config):
        # replaced, not updated in place: the decision belongs to this run only, not to any dict it shares
        run.extra = run.extra or {}
        run.extra["metadata"] = {**(run.extra.get("metadata") or {}), **metadata}
        kept = [tag for tag in (run.tags or []) if not tag.startswith(DECISION_TAG_PREFIXES)]
        run.tags = [*kept, *tags]
        annotated += 1
    return annotated


def annotate_router_run(config: RunnableConfig | None, decision: RoutingDecision) -> int:
    """Put `decision` on the nearest open `coe-router` run of every tracer of this call (else on the trace's
    root run); replaces earlier `task:`/`expert:` tags, so the last word (after fallbacks) wins. Returns how many
    runs were annotated (0 without tracers). With a priced usage tally, the cost so far goes with it
    (`annotate_cost`)."""
    annotate_cost(config)
    return _annotate(config, decision_metadata(decision), [f"task:{decision.task}", f"expert:{decision.expert}"])


def annotate_plan_run(config: RunnableConfig | None, steps: list, answered_by: str) -> int:
    """A planned run's root: every step's task and expert (each step's own `coe-router` run has its decision),
    `mode:plan`, and who wrote the answer (`synthesizer`, or the last step's expert when its output stands)."""
    tasks = list(dict.fromkeys(step.task for step in steps))
    experts = list(dict.fromkeys([*(step.expert for step in steps), answered_by]))
    metadata = {"mode": "plan", "answered_by": answered_by, "plan_tasks": [s.task for s in steps],
                "plan_experts": [s.expert for s in steps]}
    annotate_cost(config)
    return _annotate(config, metadata, ["mode:plan", *(f"task:{t}" for t in tasks), *(f"expert:{e}" for e in experts)])
