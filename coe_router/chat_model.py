"""The router as a LangChain chat model: drop it wherever a chat model goes (LCEL chains, agents, other graphs).

    from coe_router import CoERouterChatModel
    router = CoERouterChatModel.from_config()                # the embedded default, or a YAML path
    (prompt | router | StrOutputParser()).invoke({...})
    router.invoke(messages, context={"expert": "coder"})     # per-call control (graphs/context.py)

Each call routes the conversation's last human turn and returns the answering expert's AIMessage: `name` and
`response_metadata["model_name"]` are the expert, `response_metadata["coe"]` the routing decision,
`usage_metadata` the expert's tokens. Tools bound with `bind_tools` (and so `with_structured_output`) go to the
routed expert; an expert whose model cannot call tools fails over to the next expert of the route, and when none
can, the error names each expert.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.pregel.main import Pregel
from pydantic import ConfigDict, Field

from coe_router.defaults import RUN_NAME
from coe_router.models.sampling import SAMPLING_PARAMS
from coe_router.routing.expert_call import ANSWER_TAG


class NeedsReviewError(RuntimeError):
    """The graph paused for human review (persistence.review_unknown), which a chat model call cannot answer."""


def _child_callbacks(run_manager) -> BaseCallbackManager | None:
    """Callbacks for the inner graph, a child of this model's run, without an enclosing graph's message
    streamer: this model streams the answer tokens itself, so the inner expert call must not reach an outer
    `stream_mode="messages"` a second time."""
    if run_manager is None:
        return None
    handlers = [h for h in run_manager.inheritable_handlers if type(h).__name__ != "StreamMessagesHandler"]
    kind = AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager
    return kind(handlers=handlers, inheritable_handlers=handlers, parent_run_id=run_manager.run_id,
                tags=run_manager.inheritable_tags, inheritable_tags=run_manager.inheritable_tags,
                metadata=run_manager.inheritable_metadata, inheritable_metadata=run_manager.inheritable_metadata)


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
        context = {**(self.context or {}), **(kwargs.get("context") or {})} or None
        return inputs, config, context

    @staticmethod
    def _answer(result: dict) -> AIMessage:
        if "__interrupt__" in result:
            raise NeedsReviewError("the router paused this query for human review (persistence.review_unknown)")
        return result["messages"][-1]

    @staticmethod
    def _result(message: AIMessage) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=message)],
                          llm_output={"model_name": message.response_metadata.get("model_name")})

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        inputs, config, context = self._call(messages, {**kwargs, "stop": stop}, _child_callbacks(run_manager))
        return self._result(self._answer(self.graph.invoke(inputs, config, context=context)))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        inputs, config, context = self._call(messages, {**kwargs, "stop": stop}, _child_callbacks(run_manager))
        return self._result(self._answer(await self.graph.ainvoke(inputs, config, context=context)))

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

    def _last_chunk(self, final: dict | None, streamed: bool) -> ChatGenerationChunk:
        """The answer's metadata (decision, expert, usage); its text and tool calls too when nothing streamed
        (a multiple-choice answer scored by likelihood, a fan-out vote)."""
        message = self._answer(final or {"messages": []}) if final else None
        if message is None:
            raise RuntimeError("the router graph ended without an answer")
        calls = [] if streamed else [tool_call_chunk(name=c["name"], args=json.dumps(c["args"], ensure_ascii=False), id=c["id"], index=i)
                                     for i, c in enumerate(message.tool_calls)]
        return ChatGenerationChunk(message=AIMessageChunk(
            content="" if streamed else message.content, name=message.name, tool_call_chunks=calls,
            response_metadata=message.response_metadata, usage_metadata=message.usage_metadata))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        inputs, config, context = self._call(messages, {**kwargs, "stop": stop}, _child_callbacks(run_manager))
        final, streamed = None, False
        for mode, payload in self.graph.stream(inputs, config, context=context, stream_mode=["messages", "values"]):
            if mode == "values":
                final = payload
            elif (token := self._token(payload)) is not None:
                streamed = True
                if run_manager:
                    run_manager.on_llm_new_token(token.text, chunk=token)
                yield token
        yield self._last_chunk(final, streamed)

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        inputs, config, context = self._call(messages, {**kwargs, "stop": stop}, _child_callbacks(run_manager))
        final, streamed = None, False
        async for mode, payload in self.graph.astream(inputs, config, context=context,
                                                      stream_mode=["messages", "values"]):
            if mode == "values":
                final = payload
            elif (token := self._token(payload)) is not None:
                streamed = True
                if run_manager:
                    await run_manager.on_llm_new_token(token.text, chunk=token)
                yield token
        yield self._last_chunk(final, streamed)
