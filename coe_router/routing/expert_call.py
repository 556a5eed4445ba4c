"""Asking one expert: Prompt 2 chain of thought for multiple choice, a plain prompt for open questions, the whole
conversation around it, and the caller's tools bound to the expert.

On a model that can score continuations (a local llama.cpp model), multiple choice is answered by scoring each
option letter's likelihood: tiny models rarely write "the answer is (X)", but their letter probabilities still
carry what they know.
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    message_chunk_to_message,
)
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import run_in_executor
from pydantic import BaseModel, ConfigDict

from coe_router.config import ExpertSpec
from coe_router.inputs import message_text
from coe_router.models.sampling import with_sampling
from coe_router.models.scoring import likelihood_scorer
from coe_router.prompts.expert import CHOICE_PREFIX, LETTERS, extract_choice, format_expert_prompt, format_options
from coe_router.routing.context_window import CHARS_PER_TOKEN, answer_budget, check_fits, count_tokens
from coe_router.routing.time_budget import attempt_clock
from coe_router.routing.tool_specs import InvalidToolsError

ANSWER_TAG = "coe:answer"
# Set in `configurable` by a plan's step whose output is not the answer (a later step or the synthesizer writes
# it): that step's expert tokens are not tagged `coe:answer`, so streams forward only the answer's own tokens.
INTERMEDIATE_KEY = "__coe_intermediate"


def on_answer_path(config: dict | None) -> bool:
    return not ((config or {}).get("configurable") or {}).get(INTERMEDIATE_KEY)
"""Tag of every model call whose tokens are the answer (the expert, the aggregator's refine, the synthesizer), so
streams forward exactly those tokens whatever the graph's shape."""


class ExpertAnswer(BaseModel):
    """An expert's answer: its text, the option letter for multiple choice, and the model's own reply message
    (token usage, tool calls) when the answer was generated rather than scored."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str
    choice: str | None = None
    message: AIMessage | None = None


class EmptyAnswerError(RuntimeError):
    """An expert answered with nothing: treated like a failure, so the next expert of the route answers."""


class ToolsUnsupportedError(RuntimeError):
    """The request carries tools and this expert's model cannot call tools."""


def with_context(question: str, context: str | None) -> str:
    """A planned step's input: the earlier steps' results first, then this step's instruction (CCoE eq. 4)."""
    if not context:
        return question
    return f"Results of the earlier steps:\n{context}\n\nUsing those results: {question}"


def _choice_prompt(question: str, options: Sequence[str], domain: str) -> str:
    return f"The following is a {domain} question.\n\n{question}\n\n{format_options(options)}{CHOICE_PREFIX}"


def expert_messages(spec: ExpertSpec, prompt: str, conversation: Sequence[BaseMessage] = ()) -> list[BaseMessage]:
    """What the expert reads: one system message (the expert's own prompt, then the conversation's), the earlier
    turns, the routed human turn as `prompt` (under its author's `name`, if it had one), then whatever followed it
    (tool calls and their results)."""
    systems = [spec.system_prompt] if spec.system_prompt else []
    systems += [text for m in conversation if isinstance(m, SystemMessage) and (text := message_text(m.content))]
    turns = [m for m in conversation if not isinstance(m, SystemMessage)]
    last_human = max((i for i, m in enumerate(turns) if isinstance(m, HumanMessage)), default=None)
    before, after = (turns[:last_human], turns[last_human + 1:]) if last_human is not None else (turns, [])
    head = [SystemMessage("\n\n".join(systems))] if systems else []
    name = turns[last_human].name if last_human is not None else None
    return [*head, *before, HumanMessage(prompt, name=name), *after]


def _with_tools(name: str, spec: ExpertSpec, model: BaseChatModel, tools: list[dict] | None,
                tool_choice: str | dict | None) -> BaseChatModel:
    if not tools:
        return model
    try:
        return model.bind_tools(tools, tool_choice=tool_choice) if tool_choice else model.bind_tools(tools)
    except NotImplementedError:
        raise ToolsUnsupportedError(f"expert {name!r} (model {spec.model!r}) cannot call tools") from None
    except (KeyError, ValueError, TypeError) as exc:  # LangChain could not convert them: the request's fault
        raise InvalidToolsError(f"the tools cannot be given to expert {name!r}: {type(exc).__name__}: {exc}") from None


class TruncatedAnswerError(RuntimeError):
    """A stream ended without a finish reason (no `finish_reason`, no `[DONE]`): the upstream dropped it
    mid-answer, so the text is incomplete and is never passed on as an answer."""


def _declares_finish(model: BaseChatModel) -> bool:
    """Models whose protocol ends every complete answer with a finish reason (OpenAI-compatible, llama.cpp)."""
    from langchain_openai.chat_models.base import BaseChatOpenAI

    from coe_router.models.llamacpp import LlamaCppChat

    return isinstance(model, (BaseChatOpenAI, LlamaCppChat))


def _prepare(name: str, spec: ExpertSpec, model: BaseChatModel, question: str, options: Sequence[str] | None,
             task: str, run_metadata: dict | None, conversation: Sequence[BaseMessage], tools: list[dict] | None,
             tool_choice: str | dict | None, sampling: dict | None, answer_path: bool):
    """Either the answer itself (multiple choice scored by likelihood) or (chat, messages, config) to stream."""
    tags = ["coe:expert", f"expert:{name}", f"task:{task}", *([ANSWER_TAG] if answer_path else [])]
    config = {
        "run_name": name,
        "tags": tags,
        "metadata": {"role": "expert", "expert": name, "task": task, **(run_metadata or {})},
    }
    scorer = likelihood_scorer(model)
    if options and scorer is not None and not tools and not sampling:
        scores = scorer.score_continuations(_choice_prompt(question, options, task), list(LETTERS[: len(options)]),
                                            config=config)
        best = max(range(len(options)), key=lambda i: scores[i][0])
        return ExpertAnswer(text=f"({LETTERS[best]}) {options[best]}", choice=LETTERS[best])
    if spec.style == "cot":
        prompt = format_expert_prompt(question, options, task)
    else:
        prompt = question + (f"\n\n{format_options(options)}" if options else "")
    messages = expert_messages(spec, prompt, conversation)
    check_fits(name, model, messages, answer_budget(model, sampling))
    return with_sampling(_with_tools(name, spec, model, tools, tool_choice), sampling), messages, config


def _add(total: AIMessageChunk | None, piece: BaseMessage, attempt) -> AIMessageChunk:
    """Sum the streamed chunks; a content or tool-call chunk is a token of the answer (it may be on its way to
    the caller, and it starts the attempt's answer budget)."""
    if attempt is not None:
        attempt.clock.check()
        if piece.content or getattr(piece, "tool_call_chunks", None):
            attempt.token()
    if total is None or not isinstance(piece, AIMessageChunk):  # a model without streaming: its whole message
        return piece
    if piece.tool_call_chunks and total.tool_call_chunks:
        piece = _without_repeats(total, piece)
    return total + piece


def _without_repeats(total: AIMessageChunk, piece: AIMessageChunk) -> AIMessageChunk:
    """Some servers (llama.cpp's) repeat a tool call's name and id in every chunk, where OpenAI sends them once;
    summed as they come, the name would read "multiplymultiply..."."""
    known = {c.get("index"): c for c in total.tool_call_chunks}
    chunks = []
    for part in piece.tool_call_chunks:
        seen = known.get(part.get("index"))
        if seen is not None:
            part = {**part, **{key: None for key in ("name", "id") if part.get(key) and seen.get(key)}}
        chunks.append(part)
    return piece.model_copy(update={"tool_call_chunks": chunks})


def _complete(total: AIMessageChunk | None, model: BaseChatModel, messages: list[BaseMessage],
              attempt) -> AIMessage:
    """The streamed reply as one message; a stream cut before its finish reason is an error, never an answer.
    A server that reports no usage in streams (llama-cpp-python's) gets an estimate, marked `usage_estimated`."""
    if total is None:
        raise EmptyAnswerError("the model returned an empty answer")
    reply = message_chunk_to_message(total)
    if not _declares_finish(model):
        return reply
    if not reply.response_metadata.get("finish_reason"):
        raise TruncatedAnswerError("the stream ended without a finish reason: the upstream closed it mid-answer")
    if not reply.usage_metadata:
        prompt = count_tokens(model, messages)
        generated = attempt.tokens if attempt is not None else math.ceil(len(reply.text) / CHARS_PER_TOKEN)
        reply = reply.model_copy(update={
            "usage_metadata": {"input_tokens": prompt, "output_tokens": generated, "total_tokens": prompt + generated},
            "response_metadata": {**reply.response_metadata, "usage_estimated": True}})
    return reply


def stream_reply(chat: Runnable, model: BaseChatModel, messages: list[BaseMessage], config: dict,
                 attempt=None) -> AIMessage:
    """The model's reply, streamed (so the first token and a proper end are seen) within `attempt`'s budget."""
    total = None
    with attempt_clock(attempt.clock) if attempt is not None else contextlib.nullcontext():
        for piece in chat.stream(messages, config=config):
            total = _add(total, piece, attempt)
    return _complete(total, model, messages, attempt)


def _streams_natively_async(model: BaseChatModel) -> bool:
    return type(model)._astream is not BaseChatModel._astream


async def astream_reply(chat: Runnable, model: BaseChatModel, messages: list[BaseMessage], config: dict,
                        attempt=None) -> AIMessage:
    """`stream_reply` on the event loop. A model without an async stream of its own (in-process llama.cpp) runs
    its whole sync stream in one worker thread: its generator holds the model's lock from start to end."""
    if not _streams_natively_async(model):
        return await run_in_executor(None, stream_reply, chat, model, messages, config, attempt)
    total = None
    with attempt_clock(attempt.clock) if attempt is not None else contextlib.nullcontext():
        async for piece in chat.astream(messages, config=config):
            total = _add(total, piece, attempt)
    return _complete(total, model, messages, attempt)


def _answer(reply: AIMessage, options: Sequence[str] | None) -> ExpertAnswer:
    text = reply.text
    if not text.strip() and not getattr(reply, "tool_calls", None):
        raise EmptyAnswerError("the model returned an empty answer")
    return ExpertAnswer(text=text.strip(), choice=extract_choice(text, len(options)) if options else None,
                        message=reply if isinstance(reply, AIMessage) else None)


def ask_expert(name: str, spec: ExpertSpec, model: BaseChatModel, question: str, options: Sequence[str] | None,
               task: str, run_metadata: dict | None = None, *, conversation: Sequence[BaseMessage] = (),
               tools: list[dict] | None = None, tool_choice: str | dict | None = None,
               sampling: dict | None = None, answer_path: bool = False, attempt=None) -> ExpertAnswer:
    """One expert's answer; raises whatever the model raises (the caller decides about fallbacks).

    The answer is always streamed from the model, so an attempt knows when its first token came and whether the
    stream ended properly (a finish reason); `attempt` (routing/fallback.Attempt) carries its time budget.
    `sampling`: the caller's generation options (models/sampling.py), honoured by every expert kind.
    `answer_path`: this call's tokens are the answer a stream forwards (tagged `coe:answer`).
    """
    prepared = _prepare(name, spec, model, question, options, task, run_metadata, conversation, tools,
                        tool_choice, sampling, answer_path)
    if isinstance(prepared, ExpertAnswer):
        return prepared
    chat, messages, config = prepared
    return _answer(stream_reply(chat, model, messages, config, attempt), options)


async def aask_expert(name: str, spec: ExpertSpec, model: BaseChatModel, question: str,
                      options: Sequence[str] | None, task: str, run_metadata: dict | None = None, *,
                      conversation: Sequence[BaseMessage] = (), tools: list[dict] | None = None,
                      tool_choice: str | dict | None = None, sampling: dict | None = None,
                      answer_path: bool = False, attempt=None) -> ExpertAnswer:
    """`ask_expert` on the event loop: a hung upstream holds a socket, never a thread. Local scoring, which is
    CPU work, runs in a worker thread."""
    prepared = await run_in_executor(None, _prepare, name, spec, model, question, options, task, run_metadata,
                                     conversation, tools, tool_choice, sampling, answer_path)
    if isinstance(prepared, ExpertAnswer):
        return prepared
    chat, messages, config = prepared
    return _answer(await astream_reply(chat, model, messages, config, attempt), options)
