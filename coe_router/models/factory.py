"""Model factories: turn the config's `models` section into LangChain chat models.

Only this module and `studio/` construct clients; graph builders receive the resulting dict, so tests pass fakes.
"""

from __future__ import annotations

import functools
import os

from langchain_core.language_models import BaseChatModel

from coe_router.config import ConfigError, LlamaCppModel, OpenAIModel, RouterConfig
from coe_router.models.llamacpp import LlamaCppChat, LocalLlama, ModelFileError, gguf_from_package
from coe_router.redact import register_secret
from coe_router.routing.context_window import declare_window


@functools.lru_cache(maxsize=None)
def _shared_llama(path: str, n_ctx: int, n_threads: int | None) -> LocalLlama:
    """One llama.cpp instance per file per process: experts and the classifier sharing a model share its memory."""
    return LocalLlama(path, n_ctx=n_ctx, n_threads=n_threads)


def _local_chat(name: str, spec: LlamaCppModel, config: RouterConfig) -> LlamaCppChat:
    try:
        path = config.resolve_path(spec.path) if spec.path else gguf_from_package(spec.package)
        local = _shared_llama(str(path), spec.n_ctx, spec.n_threads)
    except ModelFileError as exc:
        raise ConfigError(f"models.{name}: {exc}") from None
    return LlamaCppChat(local=local, model_name=name, max_tokens=spec.max_tokens, temperature=spec.temperature)


@functools.lru_cache(maxsize=None)
def _http_clients(base_url: str | None, model: str) -> tuple:
    """One HTTP connection pool per served model (a bulkhead: requests stuck on a hung model never take the
    connections of another), on the transport that bounds each attempt by its time budget (time_budget.py)."""
    import httpx

    from coe_router.routing.time_budget import AsyncBoundedTransport, BoundedTransport

    return (httpx.Client(timeout=None, transport=BoundedTransport()),
            httpx.AsyncClient(timeout=None, transport=AsyncBoundedTransport()))


def _schema_as_json_object(payload: dict) -> dict:
    """OpenAI's `{"type": "json_schema", "json_schema": {"schema": S}}` in the dialect of servers that take a
    schema only as `{"type": "json_object", "schema": S}` (llama-cpp-python's server refuses the other)."""
    response_format = payload.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        payload = {**payload, "response_format": {"type": "json_object", "schema": schema}}
    return payload


@functools.cache
def _chat_openai_json_object() -> type:
    """ChatOpenAI speaking the json_object schema dialect (one class for every such model)."""
    from langchain_openai import ChatOpenAI

    class ChatOpenAIJsonObject(ChatOpenAI):
        def _get_request_payload(self, input_, *, stop=None, **kwargs) -> dict:
            return _schema_as_json_object(super()._get_request_payload(input_, stop=stop, **kwargs))

    return ChatOpenAIJsonObject


def _openai_chat(name: str, spec: OpenAIModel) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    if spec.structured_output == "json_object":
        ChatOpenAI = _chat_openai_json_object()  # noqa: N806 - the same model, another structured-output dialect

    api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
    if spec.api_key_env and not api_key:
        raise ConfigError(f"models.{name}.api_key_env: environment variable {spec.api_key_env} is not set")
    register_secret(api_key)
    http_client, http_async_client = _http_clients(spec.base_url, spec.model)
    chat = ChatOpenAI(
        model=spec.model,
        base_url=spec.base_url,
        api_key=api_key or "not-needed",
        temperature=spec.temperature,
        timeout=spec.timeout_s,  # per read: a stall mid-answer; the whole attempt is bounded by its time budget
        max_retries=0,  # retries are the router's (routing/fallback.py): only while the fallback chain still fits
        # llama.cpp's and some other servers ignore max_completion_tokens; max_tokens in the body works everywhere.
        extra_body={"max_tokens": spec.max_tokens},
        http_client=http_client,
        http_async_client=http_async_client,
        stream_usage=True,  # streamed answers report their tokens too
        name=name,
    )
    if spec.context_window:
        declare_window(chat, spec.context_window)
    return chat


def build_models(config: RouterConfig, names: set[str] | None = None) -> dict[str, BaseChatModel]:
    """Chat models for the config's models (or only `names`), keyed by model name."""
    models: dict[str, BaseChatModel] = {}
    for name, spec in config.models.items():
        if names is not None and name not in names:
            continue
        models[name] = _local_chat(name, spec, config) if isinstance(spec, LlamaCppModel) else _openai_chat(name, spec)
    return models


def used_models(config: RouterConfig) -> set[str]:
    """Models an expert or the classifier actually uses (unused entries are not loaded)."""
    names = {expert.model for expert in config.experts.values()}
    if config.classifier.kind in ("llm", "hybrid") and config.classifier.model:
        names.add(config.classifier.model)
    if config.mode != "single" or config.fanout > 1 or config.classifier.kind == "rules":
        names |= {m for m in (config.planner.model, config.planner.synthesizer_model) if m}
    return names
