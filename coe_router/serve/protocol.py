"""The OpenAI chat-completions contract: the request the service accepts, and the completion and chunks it sends.

Everything of the request that can change an answer is either forwarded to the routed expert (the conversation,
sampling options, tools, response_format) or refused with a 400 `unsupported_parameter` naming it: nothing is
dropped without a word.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable, Literal

from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages
from pydantic import BaseModel, ConfigDict, Field, field_validator

from coe_router.inputs import message_text
from coe_router.models.sampling import SAMPLING_PARAMS
from coe_router.routing.tool_specs import tool_choice_problem, tools_problem

IGNORED_PARAMS = {"user", "metadata", "store", "parallel_tool_calls"}
"""Accepted and recorded, but they cannot change an answer (`parallel_tool_calls`: experts call one tool at a time
or several, as they do)."""

OFF_BY_DEFAULT = {"logprobs"}
"""Accepted when they ask for nothing (`logprobs: false` or null, which some clients always send); asked for, they
are refused as unsupported."""


class ProtocolError(ValueError):
    """A request the service cannot serve as asked; `status` and `code` go into the OpenAI-style error body."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _text_parts(cls, content):
        """Content parts must be text parts with string text (images and audio cannot be routed)."""
        if isinstance(content, list):
            for number, part in enumerate(content):
                if part.get("type") != "text":
                    raise ValueError(f"part {number}: only text parts are supported, got {part.get('type')!r}")
                if not isinstance(part.get("text"), str):
                    raise ValueError(f"part {number}: `text` must be a string")
        return content


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1)
    seed: int | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    def check_supported(self) -> None:
        """Refuse what no expert call can honour, naming the parameter."""
        where = unencodable(self.model_dump(exclude_none=True))
        if where is not None:
            raise ProtocolError(400, f"{where} is not valid Unicode text (a lone surrogate cannot be encoded as "
                                     "UTF-8)", "invalid_body", where.split("[")[0].split(".")[0])
        unknown = sorted(key for key, value in (self.model_extra or {}).items()
                         if key not in IGNORED_PARAMS and not (key in OFF_BY_DEFAULT and not value))
        if unknown:
            raise ProtocolError(400, f"unsupported parameter {unknown[0]!r}: the router forwards "
                                     f"{', '.join(SAMPLING_PARAMS)}, tools and tool_choice", "unsupported_parameter",
                                unknown[0])
        if self.n not in (None, 1):
            raise ProtocolError(400, "unsupported parameter 'n': the router answers with one choice",
                                "unsupported_parameter", "n")
        if self.response_format and self.response_format.get("type") not in ("text", "json_object", "json_schema"):
            raise ProtocolError(400, f"unsupported response_format type {self.response_format.get('type')!r}",
                                "unsupported_parameter", "response_format")
        self._check_stop()
        self._check_tools()
        self._check_schema()

    def _check_stop(self) -> None:
        """Stop sequences no upstream accepts (an empty one, more than four) are the request's fault: a 400 here,
        not a 502 after every expert refused them."""
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        if stops is not None and (not 1 <= len(stops) <= 4 or not all(stops)):
            raise ProtocolError(400, "stop must be one to four non-empty strings", "invalid_parameter", "stop")

    def _check_tools(self) -> None:
        """Tools no expert can be given are the request's fault: a 400 naming them, before any expert (and its
        circuit breaker) sees them (routing/tool_specs.py)."""
        problem = tools_problem(self.tools)
        if problem is not None:
            raise ProtocolError(400, problem, "invalid_parameter", "tools")
        problem = tool_choice_problem(self.tool_choice, self.tools)
        if problem is not None:
            raise ProtocolError(400, problem, "invalid_parameter", "tool_choice")

    def _check_schema(self) -> None:
        """A json_schema response format needs a name and a valid JSON Schema (checked with jsonschema)."""
        if not self.response_format or self.response_format.get("type") != "json_schema":
            return
        spec = self.response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(
                spec.get("schema"), dict):
            raise ProtocolError(400, "response_format.json_schema needs a `name` and a `schema` object",
                                "invalid_parameter", "response_format")
        import jsonschema

        try:
            jsonschema.validators.validator_for(spec["schema"]).check_schema(spec["schema"])
        except jsonschema.SchemaError as exc:
            raise ProtocolError(400, f"response_format.json_schema.schema is not a valid JSON Schema: {exc.message}",
                                "invalid_parameter", "response_format") from None

    def conversation(self) -> list[BaseMessage]:
        """The messages as LangChain messages (developer turns are system turns); needs a user turn. A message's
        text parts become one text, a line each (coe_router.inputs.message_text)."""
        if not any(m.role == "user" for m in self.messages):
            raise ProtocolError(400, "messages must contain a user message", "no_user_message", "messages")
        dicts = []
        for message in self.messages:
            data = message.model_dump(exclude_none=True)
            data["role"] = "system" if message.role == "developer" else message.role
            if isinstance(data.get("content"), list):
                data["content"] = message_text(data["content"])
            data.setdefault("content", "")
            dicts.append(data)
        try:
            return convert_to_messages(dicts)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(400, f"messages: {exc}", "invalid_body", "messages") from None

    def sampling(self) -> dict[str, Any]:
        options = {key: getattr(self, key) for key in SAMPLING_PARAMS if getattr(self, key, None) is not None}
        if self.max_completion_tokens is not None:
            options["max_tokens"] = self.max_completion_tokens
        if isinstance(options.get("stop"), str):
            options["stop"] = [options["stop"]]
        return options

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


def unencodable(value: Any, path: str = "") -> str | None:
    """The path of the first string in `value` that UTF-8 cannot encode (a lone surrogate), else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "the request"
        return None
    if isinstance(value, dict):
        items = ((f"{path}.{key}" if path else str(key), key, item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{i}]", None, item) for i, item in enumerate(value))
    else:
        return None
    for where, key, item in items:
        found = unencodable(key, where) if isinstance(key, str) else None
        if found is None:
            found = unencodable(item, where)
        if found is not None:
            return found
    return None


def dumps(body: Any) -> str:
    """JSON for the wire: ASCII-escaped, so any text (a lone surrogate an upstream sent too) stays valid."""
    return json.dumps(body, ensure_ascii=True, separators=(",", ":"))


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(message: AIMessage | None) -> dict[str, int]:
    """The usage one answer message reported (the service reports the whole request's, see streaming.RequestWatch)."""
    counts = (message.usage_metadata if message is not None else None) or {}
    prompt, completion = counts.get("input_tokens", 0), counts.get("output_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def tool_calls(message: AIMessage) -> list[dict]:
    return [{"id": call["id"], "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call["args"], ensure_ascii=False)}}
            for call in message.tool_calls]


def tool_call_deltas(calls: list[dict], complete: bool = False) -> list[dict]:
    """Tool calls as stream deltas: streamed chunks (`args` a JSON fragment), or whole calls (`complete`)."""
    if complete:
        return [{"index": i, "id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["args"], ensure_ascii=False)}}
                for i, c in enumerate(calls)]
    return [{"index": c.get("index") or 0, "id": c.get("id"), "type": "function",
             "function": {"name": c.get("name"), "arguments": c.get("args") or ""}} for c in calls]


def answer_model(message: AIMessage | None, fallback: str, model_of: Callable[[str], str | None] = lambda _: None) -> str:
    """One rule, streamed or not: the model id of whoever wrote the answer's text (the answering expert's, a fan-out
    refiner's, a plan synthesizer's: the id its upstream reported); a fan-out vote, which writes nothing, names
    the winning expert's model."""
    if message is None:
        return fallback
    metadata = message.response_metadata
    return metadata.get("expert_model") or model_of(message.name or "") or metadata.get("model_name") or fallback


def completion(completion_id: str, message: AIMessage, decision: dict, fallback_model: str,
               request_usage: dict | None = None, model_of: Callable[[str], str | None] = lambda _: None) -> dict:
    body: dict[str, Any] = {"role": "assistant", "content": message.text}
    finish = finish_reason(message)
    if message.tool_calls:
        body["tool_calls"] = tool_calls(message)
        body["content"] = message.text or None  # as OpenAI answers a call with no text
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer_model(message, fallback_model, model_of),
        "choices": [{"index": 0, "message": body, "finish_reason": finish, "logprobs": None}],
        "usage": request_usage if request_usage is not None else usage(message),
        "coe": decision,
    }


def finish_reason(message: AIMessage) -> str:
    """tool_calls, length (the answer hit max_tokens, as the expert said) or stop."""
    if message.tool_calls:
        return "tool_calls"
    return "length" if message.response_metadata.get("finish_reason") == "length" else "stop"


def chunk(completion_id: str, model: str, delta: dict | None, finish: str | None = None, **extra: Any) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    body = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": choices, **extra}
    return f"data: {dumps(body)}\n\n"


def error_event(message: str, code: str, **extra: Any) -> str:
    """An SSE error event: the stream failed (`extra` says more, e.g. the expert whose tokens were cut)."""
    return f"data: {dumps({'error': {'message': message, 'type': 'server_error', 'code': code, **extra}})}\n\n"


DONE = "data: [DONE]\n\n"
