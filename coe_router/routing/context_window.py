"""Does a prompt fit an expert? Counted before the call, so a long query is refused for what it is (too long for
every expert: a 400 that says so) instead of failing as a 502 that blames the experts.

Local llama.cpp models count exactly with their own tokenizer; other models count only where the config gives
their window (`models.<name>.context_window`), at a conservative 3 characters per token (no tokenizer download
at run time).
"""

from __future__ import annotations

import math
import weakref
from typing import Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from coe_router.inputs import InvalidQueryError
from coe_router.models.llamacpp import LlamaCppChat

CHARS_PER_TOKEN = 3
MESSAGE_OVERHEAD = 4  # role and separators of a chat template, per message


class ContextWindowError(RuntimeError):
    """This expert's context window cannot hold the prompt and its answer."""


class QueryTooLongError(InvalidQueryError):
    """No expert of the route can hold the prompt."""


_DECLARED: dict[int, tuple[weakref.ref, int]] = {}


MAX_CHARS_PER_TOKEN = 16
"""No tokenizer packs more characters than this into a token on real text, so a longer prompt is refused without
tokenizing it (a 10 MB message took a minute of CPU to count before its 400)."""


def declare_window(model: BaseChatModel, tokens: int) -> None:
    """Record the context window of an endpoint's model (config `models.<name>.context_window`)."""
    _DECLARED[id(model)] = (weakref.ref(model), tokens)


def window_of(model: BaseChatModel) -> int | None:
    if isinstance(model, LlamaCppChat):
        return int(model.local.llama.n_ctx())
    declared = _DECLARED.get(id(model))
    # the id of a model that is gone may be reused by another object: only the declared object itself counts
    return declared[1] if declared is not None and declared[0]() is model else None


def answer_budget(model: BaseChatModel, sampling: dict | None) -> int:
    """Tokens kept for the answer: the request's max_tokens, else the model's configured one."""
    if sampling and sampling.get("max_tokens"):
        return int(sampling["max_tokens"])
    body = getattr(model, "extra_body", None) or {}
    return int(body.get("max_tokens") or getattr(model, "max_tokens", None) or 256)


def count_text_tokens(model: BaseChatModel, text: str) -> int:
    """Exact for a local model (its tokenizer), else the conservative estimate: never a tokenizer download."""
    if isinstance(model, LlamaCppChat):
        return len(model.local.llama.tokenize(text.encode("utf-8"), add_bos=True, special=False))
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def count_tokens(model: BaseChatModel, messages: Sequence[BaseMessage]) -> int:
    text = "\n".join(message.text for message in messages)
    return count_text_tokens(model, text) + MESSAGE_OVERHEAD * len(messages)


def check_fits(name: str, model: BaseChatModel, messages: Sequence[BaseMessage], answer_tokens: int) -> None:
    """Raise ContextWindowError when the prompt plus `answer_tokens` exceed the expert's known window."""
    window = window_of(model)
    if window is None:
        return
    chars = sum(len(message.text) for message in messages)
    if chars > window * MAX_CHARS_PER_TOKEN:  # cannot fit whatever the tokenizer says: no need to run it
        raise ContextWindowError(f"expert {name!r}: the prompt has {chars} characters, more than any tokenizer "
                                 f"fits in its context window of {window} tokens")
    needed = count_tokens(model, messages)
    if needed + answer_tokens > window:
        raise ContextWindowError(f"expert {name!r}: the prompt needs {needed} tokens and the answer up to "
                                 f"{answer_tokens}, its context window is {window}")
