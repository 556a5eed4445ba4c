"""Model names as a router menu: what a client puts in `model` chooses how the request is routed.

    coe              the config's own mode (task routing, planning or auto)
    coe-plan         expert planning (CCoE): planner -> steps -> synthesizer
    coe/<expert>     pinned to one expert, no fan-out (its fallbacks stay the task map's)
    coe-cost-<w>     cost-aware: leaderboard accuracy - w x relative price (like RouteLLM's threshold in a name)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from langgraph.pregel.main import Pregel

from coe_router.serve.protocol import ProtocolError

COST_PRESETS = (0.25, 0.5, 1.0)
_COST = re.compile(r"^coe-cost-(\d+(?:\.\d+)?)$")


@dataclass
class Served:
    """The graphs a service routes with: the config's own, and the planning graph when a planner is configured.
    `prices` (expert -> price per 1M tokens) decide whether cost-aware names are offered; `call_prices` (expert,
    model name or model id -> input/output prices, serve/costs.py) price each answer."""

    graph: Pregel
    plan_graph: Pregel | None = None
    prices: dict[str, float] = field(default_factory=dict)
    feedback: Any = None  # a FeedbackRecorder; one without a journal when not given
    call_prices: dict[str, Any] = field(default_factory=dict)  # caller -> TokenPrice, for the cost per answer
    config: Any = None  # the RouterConfig served (the admin API validates edits against it)
    build_model: Any = None  # (config, model name) -> chat model, for an expert added on a model not yet built
    pool: Any = None  # the live ExpertPool every graph here routes over (the admin API edits it); graph.pool if None
    admin_edits: Any = None  # SharedEdits (serve/admin_edits.py): admin edits shared with the other replicas

    def __post_init__(self) -> None:
        if self.pool is None:
            self.pool = self.graph.pool
        if self.feedback is None:
            from coe_router.routing.feedback import FeedbackRecorder

            self.feedback = FeedbackRecorder(self.graph)

    @property
    def experts(self) -> list[str]:
        return list(self.pool.names())

    def model_of(self, expert: str) -> str | None:
        """The model id an expert's calls name (an endpoint's `model`, a local model's name), if it has one."""
        try:
            _, model = self.pool.expert(expert)
        except KeyError:
            return None
        name = getattr(model, "model_name", None)
        return name if isinstance(name, str) else None

    def names(self) -> list[str]:
        names = ["coe"] + (["coe-plan"] if self.plan_graph is not None else [])
        names += [f"coe/{expert}" for expert in self.experts]
        if self.prices and self.pool.task_map.accuracy:
            names += [f"coe-cost-{weight:g}" for weight in COST_PRESETS]
        return names

    def resolve(self, model: str) -> tuple[Pregel, dict[str, Any]]:
        """The graph and run context of a model name; 404 naming the menu otherwise."""
        if model == "coe":
            return self.graph, {}
        if model == "coe-plan" and self.plan_graph is not None:
            return self.plan_graph, {}
        if model.startswith("coe/") and model[4:] in self.experts:
            return self.graph, {"expert": model[4:], "fanout": 1}
        if (match := _COST.match(model)) and self.prices:
            return self.graph, {"cost_weight": float(match.group(1))}
        raise ProtocolError(404, f"model {model!r} does not exist; available: {', '.join(self.names())} "
                                 "(coe-cost-<weight> takes any weight)" if self.prices else
                            f"model {model!r} does not exist; available: {', '.join(self.names())}",
                            "model_not_found", "model")
