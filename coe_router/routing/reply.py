"""The answer as a chat message: what the graphs append to the conversation and what a chat model returns."""

from __future__ import annotations

from langchain_core.messages import AIMessage

from coe_router.schema import RoutingDecision


def answer_message(text: str, decision: RoutingDecision, reply: AIMessage | None = None,
                   author: str | None = None) -> AIMessage:
    """An AIMessage named after who wrote it (the answering expert, or `author`: a plan's synthesizer), with the
    routing decision in `response_metadata["coe"]`, `model_name` that name, and the writer's token usage and tool
    calls when its model reported them."""
    author = author or decision.expert
    metadata = {**(reply.response_metadata if reply is not None else {})}
    upstream = metadata.pop("model_name", None)
    metadata.update({"model_name": author, "coe": decision.model_dump(mode="json")})
    if upstream:
        metadata["expert_model"] = upstream
    extra = {}
    if reply is not None:
        extra = {"tool_calls": reply.tool_calls, "usage_metadata": reply.usage_metadata}
    if reply is not None and reply.id:
        extra["id"] = reply.id  # the id its streamed tokens carried, so a chat UI merges them into this message
    return AIMessage(content=text, name=author, response_metadata=metadata, **extra)
