"""Asking one expert: Prompt 2 chain of thought for multiple choice, a plain prompt for open questions.

On a local llama.cpp model, multiple choice is answered by scoring each option letter's likelihood: tiny models
rarely write "the answer is (X)", but their letter probabilities still carry what they know.
"""

from __future__ import annotations

from typing import Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel

from coe_router.config import ExpertSpec
from coe_router.models.scoring import likelihood_scorer
from coe_router.prompts.expert import CHOICE_PREFIX, LETTERS, extract_choice, format_expert_prompt, format_options


class ExpertAnswer(BaseModel):
    text: str
    choice: str | None = None


def with_context(question: str, context: str | None) -> str:
    """A planned step's input: the earlier steps' results first, then this step's instruction (CCoE eq. 4)."""
    if not context:
        return question
    return f"Results of the earlier steps:\n{context}\n\nUsing those results: {question}"


def _choice_prompt(question: str, options: Sequence[str], domain: str) -> str:
    return f"The following is a {domain} question.\n\n{question}\n\n{format_options(options)}{CHOICE_PREFIX}"


class EmptyAnswerError(RuntimeError):
    """An expert answered with nothing: treated like a failure, so the next expert of the route answers."""


def ask_expert(name: str, spec: ExpertSpec, model: BaseChatModel, question: str, options: Sequence[str] | None,
               task: str, run_metadata: dict | None = None) -> ExpertAnswer:
    """One expert's answer; raises whatever the model raises (the caller decides about fallbacks)."""
    config = {
        "run_name": name,
        "tags": ["coe:expert", f"expert:{name}", f"task:{task}"],
        "metadata": {"role": "expert", "expert": name, "task": task, **(run_metadata or {})},
    }
    scorer = likelihood_scorer(model)
    if options and scorer is not None:
        scores = scorer.score_continuations(_choice_prompt(question, options, task), list(LETTERS[: len(options)]),
                                            config=config)
        best = max(range(len(options)), key=lambda i: scores[i][0])
        return ExpertAnswer(text=f"({LETTERS[best]}) {options[best]}", choice=LETTERS[best])
    messages = [SystemMessage(spec.system_prompt)] if spec.system_prompt else []
    if spec.style == "cot":
        prompt = format_expert_prompt(question, options, task)
    else:
        prompt = question + (f"\n\n{format_options(options)}" if options else "")
    messages.append(HumanMessage(prompt))
    reply = model.invoke(messages, config=config)
    text = reply.text
    if not text.strip():
        raise EmptyAnswerError("the model returned an empty answer")
    return ExpertAnswer(text=text.strip(), choice=extract_choice(text, len(options)) if options else None)
