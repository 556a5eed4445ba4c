"""The expert's prompts: CoE-Ops Prompt 2 (chain of thought for multiple choice) and a plain prompt for open questions.

Placeholders: {domain} the task's name (Prompt 2 says "DEVOPS"; we name the routed task), {question} the query,
{options} lettered options.
"""

from __future__ import annotations

import re
from typing import Sequence

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

EXPERT_COT_PROMPT = (
    "Please answer the following {domain} question.\n\n"
    "The question is: {question}\n\n"
    "The options are as follows:\n{options}\n\n"
    'Think step by step and then finish your answer with "the answer is (X)" where X is the correct letter choice.'
)

EXPERT_PLAIN_PROMPT = "{question}"

# Base models (no chat template, e.g. Gemma 3 270M) continue a plain transcript. Without an example of an answer
# they often stop at once or repeat the question; two short worked turns make them answer.
BASE_MODEL_PREAMBLE = (
    "Question: What is the capital of Japan?\nAnswer: The capital of Japan is Tokyo.\n\n"
    "Question: What is 7 * 6?\nAnswer: 7 * 6 = 42."
)

# Likelihood scoring of multiple choice asks for the letter right after this prefix.
CHOICE_PREFIX = "\n\nAnswer: ("

_ANSWER_PATTERNS = [
    re.compile(r"answer is \(?([A-Z])\)?", re.IGNORECASE),
    re.compile(r"answer\s*[:：]\s*\(?([A-Z])\)?", re.IGNORECASE),
]


def format_options(options: Sequence[str], bullet: str = "") -> str:
    return "\n".join(f"{bullet}{LETTERS[i]}. {option}" for i, option in enumerate(options))


def format_expert_prompt(question: str, options: Sequence[str] | None, domain: str) -> str:
    """Prompt 2 for multiple choice, the bare question otherwise."""
    if options:
        return EXPERT_COT_PROMPT.format(domain=domain, question=question, options=format_options(options))
    return EXPERT_PLAIN_PROMPT.format(question=question)


def extract_choice(text: str, n_options: int) -> str | None:
    """The letter in "the answer is (X)" (last occurrence), if it names one of the options."""
    valid = set(LETTERS[:n_options])
    for pattern in _ANSWER_PATTERNS:
        letters = [m.group(1).upper() for m in pattern.finditer(text)]
        letters = [letter for letter in letters if letter in valid]
        if letters:
            return letters[-1]
    return None
