"""Request-level sampling options (the OpenAI request's temperature, max_tokens, ...) applied to any expert."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

SAMPLING_PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed", "frequency_penalty", "presence_penalty",
                   "response_format")
"""What every expert kind honours: OpenAI-compatible endpoints natively, local llama.cpp models in LocalLlama.chat."""


def with_sampling(model: BaseChatModel | Runnable, sampling: dict | None) -> BaseChatModel | Runnable:
    """`model` bound to the options that are set. An OpenAI-compatible model also gets `max_tokens` in its request
    body, where llama.cpp's and some other servers read it (they ignore max_completion_tokens)."""
    options = {key: value for key, value in (sampling or {}).items() if key in SAMPLING_PARAMS and value is not None}
    if not options:
        return model
    extra_body = getattr(model, "extra_body", None)
    if "max_tokens" in options and isinstance(extra_body, dict):
        options["extra_body"] = {**extra_body, "max_tokens": options["max_tokens"]}
    return model.bind(**options)
