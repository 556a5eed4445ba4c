"""Synthesizer node: the final answer of a planned run, written from every step's result."""

from __future__ import annotations

from typing import Callable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig

from coe_router.graphs.state import PlanState, read
from coe_router.prompts.planner import format_synthesizer_prompt
from coe_router.routing.expert_call import ANSWER_TAG
from coe_router.routing.fallback import write_answer
from coe_router.routing.reply import answer_message
from coe_router.tracing.annotations import annotate_plan_run, annotate_router_run


def make_synthesizer_node(model: BaseChatModel | None) -> Callable[[PlanState, RunnableConfig], dict]:
    """One step: its answer is the answer. Several: the model writes one from all results; without a model the
    last step's output stands (the chain's end, CCoE eq. 4)."""

    def synthesizer(state: PlanState, config: RunnableConfig) -> dict:
        steps, decision = read(state, "steps"), read(state, "decision")
        text, choice = steps[-1].output, state.get("choice") if len(steps) == 1 else None
        reply, author = None, steps[-1].expert
        if len(steps) > 1 and model is not None:
            prompt = format_synthesizer_prompt(state["query"], [(s.text, s.output) for s in steps])
            reply, why = write_answer("synthesizer", model, model, [HumanMessage(prompt)], {
                "run_name": "synthesizer", "tags": ["coe:synthesizer", ANSWER_TAG],
                "metadata": {"role": "synthesizer"}}, config)
            if reply is not None and reply.text.strip():
                text, author = reply.text.strip(), "synthesizer"
            else:  # failed before its first token reached anyone: the chain's last output stands (CCoE eq. 4)
                reply = None
            if why is not None:
                decision = decision.model_copy(update={"errors": {**decision.errors, "synthesizer": why}})
        if len(steps) > 1:
            annotate_plan_run(config, steps, author)
        else:
            annotate_router_run(config, decision)
        return {"answer": text, "choice": choice, "messages": [answer_message(text, decision, reply, author)]}

    return synthesizer
