"""Aggregator node: combines the answers of a fan-out.

Multiple choice: majority vote, ties broken by leaderboard rank (the order the router consulted the experts).
Free text: a synthesizer model refines the answers into one (prompts/aggregator.py); without one, the answer of the
best-ranked expert that answered is kept.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig

from coe_router.graphs.state import RouterState, read
from coe_router.models.sampling import with_sampling
from coe_router.prompts.aggregator import format_refine_prompt
from coe_router.routing.expert_call import ANSWER_TAG
from coe_router.routing.fallback import write_answer
from coe_router.routing.reply import answer_message
from coe_router.schema import Consultation
from coe_router.tracing.annotations import annotate_router_run

from .expert import ExpertsFailedError


def vote(answers: list[Consultation]) -> Consultation:
    """The majority choice; among tied choices, the one the best-ranked expert gave."""
    counts = Counter(a.choice for a in answers)
    top = max(counts.values())
    return min((a for a in answers if counts[a.choice] == top), key=lambda a: a.rank)


def make_aggregator_node(synthesizer: BaseChatModel | None) -> Callable[[RouterState, RunnableConfig], dict]:
    def aggregator(state: RouterState, config: RunnableConfig) -> dict:
        consulted = sorted(read(state, "consultations", []), key=lambda c: c.rank)
        answered = [c for c in consulted if c.error is None]
        if not answered:
            raise ExpertsFailedError({c.expert: c.error or "no answer" for c in consulted})
        decision = read(state, "decision")
        errors = {c.expert: c.error for c in consulted if c.error}
        with_choice = [c for c in answered if c.choice]
        if with_choice:
            winner = vote(with_choice)
            share = sum(c.choice == winner.choice for c in with_choice)
            text, choice, how = winner.answer, winner.choice, f"vote {share}/{len(with_choice)}"
        else:
            winner, text, choice, how = answered[0], answered[0].answer, None, "best-ranked answer"
            if synthesizer is not None and len(answered) > 1:
                prompt = format_refine_prompt(state["query"], [(c.expert, c.answer) for c in answered])
                reply, why = write_answer("aggregator", with_sampling(synthesizer, state.get("sampling")), synthesizer,
                                          [HumanMessage(prompt)], {"run_name": "aggregator", "tags": [
                                              "coe:aggregator", ANSWER_TAG], "metadata": {"role": "aggregator"}},
                                          config)
                if reply is not None:
                    text, how = reply.text, "refine"
                else:  # failed before its first token reached anyone: the best-ranked answer stands
                    errors["aggregator"], how = why, "best-ranked answer (refine failed)"
        final = decision.model_copy(update={
            "expert": winner.expert, "consulted": consulted, "aggregation": how, "errors": errors,
            "tried": [c.expert for c in consulted],
        })
        annotate_router_run(config, final)
        return {"answer": text.strip(), "choice": choice, "decision": final,
                "messages": [answer_message(text.strip(), final)]}

    return aggregator
