"""Prompt templates, as constants with documented placeholders (CoE-Ops Prompts 1-3)."""

from .classifier import CLASSIFIER_PROMPT, CLASSIFIER_RAG_PROMPT, format_classifier_prompt, parse_task
from .expert import (
    EXPERT_COT_PROMPT,
    EXPERT_PLAIN_PROMPT,
    LETTERS,
    extract_choice,
    format_expert_prompt,
    format_options,
)

__all__ = [
    "CLASSIFIER_PROMPT",
    "CLASSIFIER_RAG_PROMPT",
    "EXPERT_COT_PROMPT",
    "EXPERT_PLAIN_PROMPT",
    "LETTERS",
    "extract_choice",
    "format_classifier_prompt",
    "format_expert_prompt",
    "format_options",
    "parse_task",
]
