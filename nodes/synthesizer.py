"""Synthesizer node: the final answer of a planned run, written from every step's result."""

from __future__ import annotations

from typing import Callable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig

from coe_router.graphs.state import PlanState, read
from coe_router.prompts.planner import format_synthesizer_prompt
from coe_router.routing.expert_call import ANSWER_TAG, stream_reply
from coe_router.routing.reply import answer_message
from coe_router.tracing.annotations import annotate_router_run


def make_synthesizer_node(model: BaseChatModel | None) -> Callable[[PlanState, RunnableConfig], dict]:
    """One step: its answer is the answer. Several: the model writes one from all results; without a model the
    last step's output stands (the chain's end, CCoE eq. 4)."""

    def synthesizer(state: PlanState, config: RunnableConfig) -> dict:
        steps, decision = read(state, "steps"), read(state, "decision")
        if len(steps) == 1 or model is None:
            text, choice = steps[-1].output, state.get("choice") if len(steps) == 1 else None
        else:
            prompt = format_synthesizer_prompt(state["query"], [(s.text, s.output) for s in steps])
            reply = stream_reply(model, model, [HumanMessage(prompt)], {
                "run_name": "synthesizer", "tags": ["coe:synthesizer", ANSWER_TAG], "metadata": {"role": "synthesizer"}})
            text, choice = reply.text.strip() or steps[-1].output, None
        annotate_router_run(config, decision)
        return {"answer": text, "choice": choice, "messages": [answer_message(text, decision)]}

    return synthesizer
