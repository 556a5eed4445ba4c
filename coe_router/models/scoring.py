"""Likelihood scoring: the question a router asks a small local model instead of parsing its prose.

Tiny local models do not reliably write "the answer is (X)" or "***Task: ...***", but their next-token
probabilities still carry what they know. So where a model can score continuations (CoE-Ops eq. 6 taken
literally: argmax P(T | X, prompt)), the classifier scores task labels and an expert scores option letters.
A chat model offers this by implementing `LikelihoodScorer`; callers ask `likelihood_scorer(model)` and
otherwise talk to the model as to any chat model.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from langchain_core.runnables import RunnableConfig


@runtime_checkable
class LikelihoodScorer(Protocol):
    """A model that scores continuations of a prompt: (sum of log P(continuation | prompt), its token count).

    `config` carries run name, tags and metadata like any LangChain call, so a scoring call shows in traces
    beside the chat calls of the same run.
    """

    def score_continuations(self, prompt: str, continuations: Sequence[str], *,
                            config: RunnableConfig | None = None) -> list[tuple[float, int]]: ...


def likelihood_scorer(model: object) -> LikelihoodScorer | None:
    """The model itself when it can score continuations, else None (ask it in prose)."""
    return model if isinstance(model, LikelihoodScorer) else None
