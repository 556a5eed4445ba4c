"""The router as a LangChain chat model: drop it wherever a chat model goes (LCEL chains, agents, other graphs).

    from coe_router import CoERouterChatModel
    router = CoERouterChatModel.from_config()                # the embedded default, or a YAML path
    (prompt | router | StrOutputParser()).invoke({...})
    router.invoke(messages, context={"expert": "coder"})     # per-call control (graphs/context.py)

Each call routes the conversation's last human turn and returns the answering expert's AIMessage: `name` and
`response_metadata["model_name"]` are the expert (a plan's synthesizer when it wrote the answer),
`response_metadata["coe"]` the routing decision, `usage_metadata` the writer's tokens. Tools bound with
`bind_tools` go to the routed expert; an expert whose model cannot call tools fails over to the next expert of the
route, and when none can, the error names each expert. `with_structured_output` sends a JSON schema as
`response_format`, which every expert kind honours. The router's fields of `configurable` are run context too; a
review pause raises `NeedsReviewError`, answered with `resume`. How the inner graph stays a clean child of this
model's run is in chat_runs.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from operator import itemgetter
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Literal, Sequence

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput, ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import (
    JsonOutputKeyToolsParser,
    JsonOutputParser,
    PydanticOutputParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.pregel.main import Pregel
from langgraph.types import Command
from pydantic import BaseModel, ConfigDict, Field

from coe_router.chat_runs import (
    arun_in,
    called_with,
    caller_configurable,
    child_callbacks,
    opened_run,
    run_in,
    with_run_id,
    without_ambient_config,
)
from coe_router.defaults import RUN_NAME
from coe_router.graphs.context import RouterContext, check_configurable
from coe_router.models.sampling import SAMPLING_PARAMS
from coe_router.nodes.review import amove_pause_to_review, move_pause_to_review
from coe_router.routing.context_window import count_text_tokens
from coe_router.routing.expert_call import ANSWER_TAG


class NeedsReviewError(RuntimeError):
    """The graph paused for human review (persistence.review_unknown). `thread_id` is the paused run and `request`
    what the reviewer is asked (the query, the tasks and experts to choose from); answer it with
    `router.resume(error, {"task": ...})` or `{"expert": ...}` (the same graph, or one on the same checkpointer)."""

    def __init__(self, thread_id: str, request: dict):
        self.thread_id, self.request = thread_id, request
        super().__init__(f"the router paused this query for human review (persistence.review_unknown) on thread "
                         f"{thread_id!r}: answer with router.resume(error, {{'task': one of {request.get('tasks')}}}) "
                         f"or {{'expert': one of {request.get('experts')}}}")


class CoERouterChatModel(BaseChatModel):
    """A compiled coe-router graph behind LangChain's chat model interface."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    graph: Pregel = Field(exclude=True)
    context: dict[str, Any] | None = Field(None, description="run context for every call (graphs/context.py)")
    model_name: str = RUN_NAME

    @classmethod
    def from_config(cls, config: str | Path | Any | None = None, *, context: dict | None = None,
                    **build: Any) -> "CoERouterChatModel":
        """Build the graph of a config (a path, a RouterConfig, or None for the embedded default); `build` goes
        to `build_graph` (injected models, store, encoder, ...)."""
        from coe_router.builder import build_graph

        return cls(graph=build_graph(config, **build), context=context)

    @classmethod
    def from_graph(cls, graph: Pregel, *, context: dict | None = None) -> "CoERouterChatModel":
        return cls(graph=graph, context=context)

    @property
    def _llm_type(self) -> str:
        return "coe-router"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "graph": self.graph.get_name(), "context": self.context}

    def bind_tools(self, tools: Sequence[dict | type | Callable | Any], *, tool_choice: str | dict | None = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (OpenAI schemas, pydantic classes, functions or LangChain tools) for the routed expert."""
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], tool_choice=tool_choice, **kwargs)

    def _resolve_model_profile(self) -> ModelProfile:
        """Every expert honours a JSON schema through `response_format` (llama.cpp grammars locally, the upstream's
        structured output otherwise), so `create_agent(..., response_format=Model)` uses it rather than a tool."""
        return {"structured_output": True, "tool_calling": True}

    def get_num_tokens(self, text: str) -> int:
        """Tokens of `text` for the best-average expert: exact for a local model (its own tokenizer), else an
        estimate at 3 characters per token (LangChain's default downloads GPT-2's tokenizer, which offline
        counts 0 after a warning)."""
        pool = self.graph.pool
        _, model = pool.expert(pool.task_map.default_expert)
        return count_text_tokens(model, text)

    def with_structured_output(self, schema: dict | type, *, include_raw: bool = False,
                               method: Literal["json_schema", "json_mode", "function_calling"] = "json_schema",
                               strict: bool | None = None, **kwargs: Any) -> Runnable[LanguageModelInput, Any]:
        """Answers as `schema` (a pydantic class, TypedDict or JSON schema) whichever expert is routed to.

        `json_schema` (the default) sends the schema as `response_format`, which every expert kind honours;
        `json_mode` asks for any JSON object; `function_calling` binds the schema as a tool the expert must call by
        name, so it needs experts that call tools (an OpenAI-compatible endpoint, not the local GGUF models)."""
        if kwargs:
            raise ValueError(f"with_structured_output: unsupported arguments {sorted(kwargs)}")
        tool = convert_to_openai_tool(schema)["function"]
        is_model = isinstance(schema, type) and issubclass(schema, BaseModel)
        traced = {"ls_structured_output_format": {"kwargs": {"method": method}, "schema": {"type": "function",
                                                                                           "function": tool}}}
        if method == "function_calling":
            model = self.bind_tools([schema], tool_choice=tool["name"], **traced)
            parser = PydanticToolsParser(tools=[schema], first_tool_only=True) if is_model else \
                JsonOutputKeyToolsParser(key_name=tool["name"], first_tool_only=True)
        elif method in ("json_schema", "json_mode"):
            json_schema = {"name": tool["name"], "schema": tool.get("parameters") or {"type": "object"},
                           **({"strict": strict} if strict is not None else {})}
            response_format = {"type": "json_schema", "json_schema": json_schema} if method == "json_schema" \
                else {"type": "json_object"}
            model = self.bind(response_format=response_format, **traced)
            parser = PydanticOutputParser(pydantic_object=schema) if is_model else JsonOutputParser()
        else:
            raise ValueError(f"with_structured_output: method must be json_schema, json_mode or function_calling, "
                             f"not {method!r}")
        if not include_raw:
            return model | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=model) | parsed.with_fallbacks([unparsed], exception_key="parsing_error")

    # --- one call --------------------------------------------------------------------------------------------------

    def _call(self, messages: list[BaseMessage], kwargs: dict, callbacks) -> tuple[dict, dict, dict | None]:
        inputs: dict[str, Any] = {"messages": [m.model_copy() for m in messages]}
        if kwargs.get("tools"):
            inputs["tools"] = kwargs["tools"]
            inputs["tool_choice"] = kwargs.get("tool_choice")
        sampling = {key: kwargs[key] for key in SAMPLING_PARAMS if kwargs.get(key) is not None}
        if sampling:
            inputs["sampling"] = sampling
        config: dict[str, Any] = {"callbacks": callbacks, "run_name": RUN_NAME}
        if self.graph.checkpointer is not None:
            config["configurable"] = {"thread_id": uuid.uuid4().hex}  # stateless: the conversation comes in
        return inputs, config, self._context(kwargs.get("context"))

    def _context(self, given: dict | None) -> dict | None:
        """The run context: the model's, then the router's fields of the caller's `configurable` (many LangChain
        users set per-call options there, e.g. `with_config(configurable={"expert": ...})`), then `context=`."""
        given_configurable = caller_configurable()
        check_configurable(given_configurable, "configurable (pass per-call options as context=)")
        configurable = {key: value for key, value in given_configurable.items() if key in RouterContext.model_fields}
        return {**(self.context or {}), **configurable, **(given or {})} or None

    @staticmethod
    def _answer(result: dict, config: dict | None = None) -> AIMessage:
        if "__interrupt__" in result:
            thread_id = ((config or {}).get("configurable") or {}).get("thread_id")
            raise NeedsReviewError(thread_id, result["__interrupt__"][0].value)
        return result["messages"][-1]

    @staticmethod
    def _thread(review: NeedsReviewError | str) -> dict:
        thread_id = review.thread_id if isinstance(review, NeedsReviewError) else review
        return {"configurable": {"thread_id": thread_id}, "run_name": RUN_NAME}

    def resume(self, review: NeedsReviewError | str, answer: dict, config: RunnableConfig | None = None) -> AIMessage:
        """Answer a paused review (the error, or its thread id) with `{"task": ...}` or `{"expert": ...}`: the run
        continues on its thread and returns the expert's message. A wrong answer raises NeedsReviewError again,
        with the reason in `request["error"]`."""
        thread = {**(config or {}), **self._thread(review)}
        move_pause_to_review(self.graph, thread)
        return self._answer(self.graph.invoke(Command(resume=answer), thread), thread)

    async def aresume(self, review: NeedsReviewError | str, answer: dict,
                      config: RunnableConfig | None = None) -> AIMessage:
        thread = {**(config or {}), **self._thread(review)}
        await amove_pause_to_review(self.graph, thread)
        return self._answer(await self.graph.ainvoke(Command(resume=answer), thread), thread)

    @staticmethod
    def _result(message: AIMessage) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=message)],
                          llm_output={"model_name": message.response_metadata.get("model_name")})

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        inputs, config, context = self._call(messages, {**kwargs, "stop": stop}, child_callbacks(run_manager))
        result = without_ambient_config().run(self.graph.invoke, inputs, config, context=context)
        return self._result(self._answer(result, config))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        inputs, config, context = self._call(messages, {**kwargs, "stop": stop}, child_callbacks(run_manager))
        result = await asyncio.create_task(self.graph.ainvoke(inputs, config, context=context),
                                           context=without_ambient_config())
        return self._result(self._answer(result, config))

    # --- streaming ------------------------------------------------------------------------------------------------

    @staticmethod
    def _token(payload) -> ChatGenerationChunk | None:
        """An answer token of the inner graph's message stream (tagged coe:answer), or None."""
        chunk, meta = payload
        if ANSWER_TAG not in (meta.get("tags") or []) or not isinstance(chunk, AIMessageChunk):
            return None
        if not chunk.content and not chunk.tool_call_chunks:
            return None
        return ChatGenerationChunk(message=AIMessageChunk(content=chunk.content,
                                                          tool_call_chunks=chunk.tool_call_chunks))

    def _last_chunk(self, final: dict | None, streamed: bool, config: dict) -> ChatGenerationChunk:
        """The answer's metadata (decision, expert, usage); its text and tool calls too when nothing streamed
        (a multiple-choice answer scored by likelihood, a fan-out vote)."""
        message = self._answer(final, config) if final else None
        if message is None:
            raise RuntimeError("the router graph ended without an answer")
        calls = [] if streamed else [tool_call_chunk(name=c["name"], args=json.dumps(c["args"], ensure_ascii=False), id=c["id"], index=i)
                                     for i, c in enumerate(message.tool_calls)]
        return ChatGenerationChunk(message=AIMessageChunk(
            content="" if streamed else message.content, name=message.name, tool_call_chunks=calls,
            response_metadata=message.response_metadata, usage_metadata=message.usage_metadata))

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        with called_with(config):
            return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        with called_with(config):
            return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        config = with_run_id(config)
        chunks = super().stream(input, config, stop=stop, **kwargs)
        with called_with(config):
            first = next(chunks, None)  # the inner graph starts (and reads the call) before the first chunk
        if first is not None:
            yield first
            yield from chunks

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        config = with_run_id(config)
        chunks = super().astream(input, config, stop=stop, **kwargs)
        with called_with(config):
            first = await anext(chunks, None)
        if first is not None:
            yield first
            async for chunk in chunks:
                yield chunk

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        parent = run_manager or opened_run(self, CallbackManager)
        inputs, config, context = self._call(messages, {**kwargs, "stop": stop}, child_callbacks(parent))
        final, streamed = None, False
        for mode, payload in run_in(without_ambient_config(), lambda: self.graph.stream(
                inputs, config, context=context, stream_mode=["messages", "values"])):
            if mode == "values":
                final = payload
            elif (token := self._token(payload)) is not None:
                streamed = True
                if run_manager:
                    run_manager.on_llm_new_token(token.text, chunk=token)
                yield token
        yield self._last_chunk(final, streamed, config)

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        parent = run_manager or opened_run(self, AsyncCallbackManager)
        inputs, config, context = self._call(messages, {**kwargs, "stop": stop}, child_callbacks(parent))
        final, streamed = None, False
        async for mode, payload in arun_in(without_ambient_config(), lambda: self.graph.astream(
                inputs, config, context=context, stream_mode=["messages", "values"])):
            if mode == "values":
                final = payload
            elif (token := self._token(payload)) is not None:
                streamed = True
                if run_manager:
                    await run_manager.on_llm_new_token(token.text, chunk=token)
                yield token
        yield self._last_chunk(final, streamed, config)
