"""The task classifier's prompts: CoE-Ops Prompt 1 (task list) and Prompt 3 (task list + retrieved examples).

Placeholders: {task_list} the tasks with their descriptions, {question} the query with its options (if any),
{context} retrieved examples as "question -> task" lines (Prompt 3 only).
"""

from __future__ import annotations

import re
from typing import Sequence

from coe_router.defaults import UNKNOWN_TASK

from .expert import format_options

CLASSIFIER_PROMPT = (
    "You are a classifier that can categorize questions into specific tasks. Your job is to analyze the following "
    "given question and determine which task from the provided list it most likely belongs to.\n\n"
    "The tasks are as follows: {task_list}.\n\n"
    "The question is:\n{question}\n\n"
    'Provide your answer in the format: "***Task: [selected task] ***".'
)

CLASSIFIER_RAG_PROMPT = (
    "You are a classifier that can categorize questions into specific tasks. Your job is to analyze the following "
    "given question and determine which task from the provided list it most likely belongs to.\n\n"
    "The tasks are as follows: {task_list}.\n\n"
    "The question is:\n{question}\n\n"
    "You can refer to the following examples of questions and their corresponding tasks to decide the current "
    "question's task:\n{context}\n\n"
    'Provide your answer in the format: "***Task: [selected task] ***".'
)

# Where a likelihood-scoring classifier starts the answer for the model, so that the next tokens are the label.
ANSWER_PREFIX = "***Task: "

_TASK_PATTERN = re.compile(r"\*{2,3}\s*Task\s*:\s*\[?\s*([^*\]\n]+?)\s*\]?\s*\*{2,3}", re.IGNORECASE)


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_classifier_prompt(
    tasks: dict[str, str], question: str, options: Sequence[str] | None = None,
    examples: Sequence[tuple[str, str]] = (),
) -> str:
    """Prompt 1, or Prompt 3 when `examples` ((question, task) pairs) are given."""
    task_list = "; ".join(f"{name} ({description})" if description else name for name, description in tasks.items())
    body = f'- "{question}"' + ("\n" + format_options(options, bullet="- ") if options else "")
    if not examples:
        return CLASSIFIER_PROMPT.format(task_list=task_list, question=body)
    context = "\n".join(f'- "{_shorten(q)}" -> ***Task: {t}***' for q, t in examples)
    return CLASSIFIER_RAG_PROMPT.format(task_list=task_list, question=body, context=context)


def parse_task(text: str, tasks: Sequence[str]) -> str:
    """The task named in a "***Task: ...***" answer, matched case-insensitively to the task list, else "unknown"."""
    found = _TASK_PATTERN.search(text)
    if not found:
        return UNKNOWN_TASK
    said = found.group(1).strip().strip("\"'.").lower()
    by_name = {task.lower(): task for task in tasks}
    if said in by_name:
        return by_name[said]
    partial = [task for name, task in by_name.items() if name in said or said in name]
    return partial[0] if len(partial) == 1 else UNKNOWN_TASK
