"""Tokens of every model call of one run, by caller, and what they cost: the figure on the response (`coe.cost`),
on the metrics and on the router's LangSmith run (tracing/annotations.py).

`CallUsage` rides along as a callback. Usage is what the servers reported; a streamed call whose server reported
none (llama.cpp's server does not send usage in streams) is estimated (prompt characters / 3, one token per
streamed chunk) and marked so. With prices (`serve.costs.call_prices(config)`) the nodes that write the routing
decision on the trace write the run's cost next to it; a run made in Python gets it the same way:

    usage = CallUsage(call_prices(config))         # one per run: it sums every call it sees
    graph.invoke(inputs, config={"callbacks": [usage, tracer]})
"""

from __future__ import annotations

import math
import threading
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

CHARS_PER_TOKEN = 3  # usage estimate for a streamed call whose server reported none (as routing/context_window.py)


class CallUsage(BaseCallbackHandler):
    """Sums the usage of every model call it sees; `cost()` prices it when the tally was given prices."""

    run_inline = True

    def __init__(self, prices: dict | None = None):
        self.prices = prices
        self._lock = threading.Lock()
        self.prompt = self.completion = 0
        self.estimated = False
        self.calls = 0
        self.by_model: dict[str, list[int]] = {}  # who made each call (expert, else model id) -> [input, output]
        self._streamed: dict[UUID, int] = {}
        self._prompt_chars: dict[UUID, int] = {}
        self._caller: dict[UUID, str] = {}

    def on_llm_start(self, serialized: Any, prompts: list[str], *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._prompt_chars[run_id] = sum(len(p) for p in prompts)
            self._caller[run_id] = _caller(kwargs.get("metadata"))

    def on_chat_model_start(self, serialized: Any, messages: list, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._prompt_chars[run_id] = sum(len(m.text) + 4 * CHARS_PER_TOKEN for batch in messages for m in batch)
            self._caller[run_id] = _caller(kwargs.get("metadata"))

    def on_llm_new_token(self, token: str, *, run_id: UUID, chunk: Any = None, **kwargs: Any) -> None:
        message = getattr(chunk, "message", None)
        counts = bool(token) or bool(getattr(message, "tool_call_chunks", None))  # not the role or finish chunks
        with self._lock:
            self._streamed[run_id] = self._streamed.get(run_id, 0) + counts

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        counts = None
        for generations in getattr(response, "generations", None) or []:
            for generation in generations:
                message = getattr(generation, "message", None)
                counts = counts or getattr(message, "usage_metadata", None)
        with self._lock:
            chars, streamed = self._prompt_chars.pop(run_id, 0), self._streamed.pop(run_id, None)
            caller = self._caller.pop(run_id, "")
            self.calls += 1
            if counts and (counts.get("input_tokens") or counts.get("output_tokens")):
                used = (int(counts.get("input_tokens") or 0), int(counts.get("output_tokens") or 0))
            elif streamed is not None:
                used = (math.ceil(chars / CHARS_PER_TOKEN), streamed)
                self.estimated = True
            else:
                used = (0, 0)
            self.prompt += used[0]
            self.completion += used[1]
            tally = self.by_model.setdefault(caller, [0, 0])
            tally[0] += used[0]
            tally[1] += used[1]

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._prompt_chars.pop(run_id, None)
            self._streamed.pop(run_id, None)
            self._caller.pop(run_id, None)

    def usage(self) -> dict[str, Any]:
        """OpenAI's `usage` of everything so far (`estimated: true` when a call's tokens were estimated)."""
        with self._lock:
            body: dict[str, Any] = {"prompt_tokens": self.prompt, "completion_tokens": self.completion,
                                    "total_tokens": self.prompt + self.completion}
            if self.estimated:
                body["estimated"] = True
            return body

    def cost(self) -> dict | None:
        """The response's `coe.cost` of everything so far (serve/costs.py); None without prices."""
        if self.prices is None:
            return None
        from coe_router.serve.costs import request_cost

        with self._lock:
            by_model = {caller: list(used) for caller, used in self.by_model.items()}
        return request_cost(by_model, self.prices)

    def run_cost(self) -> dict | None:
        """`cost()` with the tokens it was computed from, as the router's run carries it; None without prices."""
        cost = self.cost()
        if cost is None:
            return None
        with self._lock:
            tokens = {caller: {"input": used[0], "output": used[1]}
                      for caller, used in sorted(self.by_model.items()) if used[0] or used[1]}
            estimated = self.estimated
        return {**cost, "tokens": {"input": sum(t["input"] for t in tokens.values()),
                                   "output": sum(t["output"] for t in tokens.values()),
                                   "by_model": tokens, **({"estimated": True} if estimated else {})}}


def _caller(metadata: dict | None) -> str:
    """Who a model call belongs to: the expert (expert calls carry it), else the model id LangChain records."""
    metadata = metadata or {}
    return str(metadata.get("expert") or metadata.get("ls_model_name") or "")
