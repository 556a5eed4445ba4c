"""Synthesizer node: the final answer of a planned run, written from every step's result."""

from __future__ import annotations

from typing import Callable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from coe_router.graphs.state import PlanState
from coe_router.prompts.planner import format_synthesizer_prompt


def make_synthesizer_node(model: BaseChatModel | None) -> Callable[[PlanState], dict]:
    """One step: its answer is the answer. Several: the model writes one from all results; without a model the
    last step's output stands (the chain's end, CCoE eq. 4)."""

    def synthesizer(state: PlanState) -> dict:
        steps = state["steps"]
        if len(steps) == 1 or model is None:
            return {"answer": steps[-1].output}
        reply = model.invoke(
            [HumanMessage(format_synthesizer_prompt(state["query"], [(s.text, s.output) for s in steps]))],
            config={"run_name": "synthesizer", "tags": ["coe:synthesizer"], "metadata": {"role": "synthesizer"}},
        )
        text = reply.text
        return {"answer": text.strip() or steps[-1].output, "choice": None}

    return synthesizer
