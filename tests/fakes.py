"""Fakes for unit tests of graph mechanics: a deterministic encoder and chat models that need no model files."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tracers.base import BaseTracer


class BagOfWordsEncoder:
    """Hashes words into a fixed-size unit vector: texts sharing words are similar, like a (much worse) MiniLM."""

    def __init__(self, dim: int = 256):
        self.dim = dim
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else out[row]
        return out


class RecordingEncoder(BagOfWordsEncoder):
    """BagOfWordsEncoder that records each call's texts, can be slow, can fail, and tracks concurrent calls."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        super().__init__()
        self.delay = delay
        self.fail = fail
        self.batches: list[list[str]] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def encode(self, texts):
        with self._lock:
            self.batches.append(list(texts))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.fail:
                raise RuntimeError("encoder down")
            return super().encode(texts)
        finally:
            with self._lock:
                self.active -= 1



class ScriptedChat(BaseChatModel):
    """A chat model whose reply is computed from the prompt; records every prompt it saw."""

    reply: Callable[[str], str] = lambda prompt: "ok"
    seen: list = []
    label: str = "scripted"

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        prompt = "\n".join(str(m.content) for m in messages)
        self.seen.append(prompt)
        text = self.reply(prompt)
        usage = {"input_tokens": len(prompt.split()), "output_tokens": len(text.split()),
                 "total_tokens": len(prompt.split()) + len(text.split())}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text, usage_metadata=usage))])


class ToolCallingChat(BaseChatModel):
    """An expert that can call tools: with tools bound it calls the first one with `args`, and once the tool's
    result is in the conversation it answers with it. Records every conversation it was sent."""

    args: dict = {}
    seen: list = []

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice, **kwargs)

    def _generate(self, messages, stop=None, run_manager=None, tools=None, tool_choice=None, **kwargs) -> ChatResult:
        from langchain_core.messages import ToolMessage

        self.seen.append(list(messages))
        if isinstance(messages[-1], ToolMessage):
            message = AIMessage(content=f"The tool says {messages[-1].content}.")
        elif tools:
            name = tools[0]["function"]["name"]
            message = AIMessage(content="", tool_calls=[{"name": name, "args": self.args, "id": f"call-{len(self.seen)}"}])
        else:
            message = AIMessage(content="no tools were given")
        message.usage_metadata = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
        return ChatResult(generations=[ChatGeneration(message=message)])


class FailingChat(BaseChatModel):
    """An expert that is down."""

    error: str = "connection refused"

    @property
    def _llm_type(self) -> str:
        return "failing-fake"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        raise ConnectionError(self.error)


class FakeScorer:
    """Stands in for a local model's likelihoods: scores continuations by a given table (prompt-independent)."""

    def __init__(self, table: dict[str, float]):
        self.table = table
        self.prompts: list[str] = []
        self.configs: list[dict] = []

    def score(self, prompt: str, continuations: Sequence[str], config: dict | None = None) -> list[tuple[float, int]]:
        self.prompts.append(prompt)
        self.configs.append(config or {})
        return [(self.table.get(c.removesuffix(" ***"), -10.0), 1) for c in continuations]


class LocalFakeChat(ScriptedChat):
    """A chat model that is a LikelihoodScorer (as LlamaCppChat is), scoring through a FakeScorer table."""

    local: Any = None

    def score_continuations(self, prompt: str, continuations: Sequence[str], *, config=None) -> list[tuple[float, int]]:
        return self.local.score(prompt, continuations, config)


class CollectingTracer(BaseTracer):
    """Keeps every run it sees (the way LangSmith's tracer would send them), in-process: nothing leaves."""

    def __init__(self):
        super().__init__()
        self.runs = []

    def _persist_run(self, run):
        pass

    def _on_run_update(self, run):
        self.runs.append(run)

    def all_runs(self) -> list:
        """Every distinct run, children included."""
        seen, stack = {}, list(self.runs)
        while stack:
            run = stack.pop()
            seen[run.id] = run
            stack.extend(run.child_runs)
        return list(seen.values())

