"""A capturing fake OpenAI-compatible upstream: a tiny HTTP server that records every request (body and headers)
and behaves as told, so tests can inspect exactly what reached an expert and inject faults.

The behaviour is chosen per request by the request's `model` (so one server backs many experts of a config), and
can be overridden for every model at once with `Upstream.force`:

    answer            a chat completion (streamed when asked, with usage; a tool call when `tool_choice` names one)
    json              a JSON object as the answer (`json_reply`), for structured output
    plan              a two-step plan as JSON (for a `coe-plan` planner model)
    hang              accepts the request and never answers (notices when the client goes away)
    drip:<s>          answers with one token every <s> seconds, forever (streamed or not)
    status:<code>     that HTTP status with an OpenAI error body that echoes the caller's API key
    close             closes the connection without a response
    partial:<n>       streams <n> tokens of PARTIAL_TEXT, then closes cleanly with no finish_reason and no [DONE]
                      (a stream without chunked encoding: the client sees an ordinary end of body)
    cut:<n>           streams <n> tokens, then drops the connection mid-chunk
    sse-error:<n>     streams <n> tokens, then an SSE `error` event and the end of the stream
    trickle:<s>       a complete, valid answer sent one byte every <s> seconds
    limited:<s>       429 with `Retry-After: <s>`
    slow:<s>          answers normally after <s> seconds
    say:<text>        answers <text>
    echo              answers with the messages it received, as JSON

    with Upstream() as upstream:
        url = upstream.url          # http://127.0.0.1:PORT/v1
        ...
        upstream.last("answer").body["messages"]

Also here, for the service tests and benchmarks: `CoeServe`, a real `coe serve` process on a config, and
`llama_server`, llama.cpp's OpenAI-compatible server on SmolLM2. Every port is a free one in 27000-28999, or in
the range `$COE_TEST_PORTS` names (`LOW-HIGH`, both included), so test runs side by side on one machine keep apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self


def _port_range() -> range:
    low, _, high = os.environ.get("COE_TEST_PORTS", "27000-28999").partition("-")
    return range(int(low), int(high) + 1)


PORTS = _port_range()
_NEXT_PORT = [PORTS.start + (os.getpid() * 37) % min(1500, len(PORTS))]
_PORT_LOCK = threading.Lock()

PARTIAL_TEXT = "PARTIAL FLAKY TEXT that never ends"
PLAN = {"subtasks": [{"text": "compute the integral of x squared", "task": "math"},
                     {"text": "write a python function that returns it", "task": "code"}]}
DEFAULT_JSON = {"name": "Ada Lovelace", "age": 36}


def free_port() -> int:
    """A free TCP port in 27000-28999 ($COE_TEST_PORTS: the range these tests may use), different on each call."""
    with _PORT_LOCK:
        for _ in range(len(PORTS)):
            port = _NEXT_PORT[0]
            _NEXT_PORT[0] = PORTS.start + (port + 1 - PORTS.start) % len(PORTS)
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@dataclass
class Captured:
    """One request the upstream received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)

    @property
    def model(self) -> str:
        return str(self.body.get("model"))

    @property
    def api_key(self) -> str:
        return self.headers.get("authorization", "").partition(" ")[2]


def _words(messages: list) -> int:
    count = 0
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        count += len(str(content or "").split()) + 3
    return max(count, 1)


class Upstream:
    """The fake server; a context manager that starts it on a free port in a thread and stops it on exit."""

    def __init__(self, reply: str = "upstream answer", port: int | None = None):
        self.reply = reply
        self.json_reply: dict = dict(DEFAULT_JSON)
        self.force: str | None = None
        self.requests: list[Captured] = []
        self.disconnects: list[str] = []  # models whose caller went away before the answer was complete
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.port = port or free_port()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": "answer", "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                captured = Captured(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with upstream._lock:
                    upstream.requests.append(captured)
                upstream._answer(self, captured)

            def _json(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._handler = Handler
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    # -- inspection ---------------------------------------------------------------------------------------------

    def of(self, model: str | None = None) -> list[Captured]:
        with self._lock:
            return [r for r in self.requests if model is None or r.model == model]

    def last(self, model: str | None = None) -> Captured:
        found = self.of(model)
        if not found:
            raise AssertionError(f"the upstream saw no request for model {model!r}")
        return found[-1]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.disconnects.clear()

    # -- behaviours ---------------------------------------------------------------------------------------------

    def _answer(self, handler, captured: Captured) -> None:
        mode = self.force or captured.model
        kind, _, arg = mode.partition(":")
        try:
            if kind == "hang":
                self._hang(handler, captured)
            elif kind == "close":
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
            elif kind == "status":
                key = captured.api_key
                handler._json(int(arg or 500), {"error": {
                    "message": f"Incorrect API key provided: {key}. Authorization: Bearer {key}",
                    "type": "invalid_request_error", "code": "upstream_" + (arg or "500")}})
            elif kind == "drip":
                self._drip(handler, captured, float(arg or 1.0))
            elif kind in ("partial", "cut", "sse-error"):
                self._broken_stream(handler, captured, kind, int(arg or 3))
            elif kind == "trickle":
                self._trickle(handler, captured, float(arg or 1.0))
            elif kind == "limited":
                data = json.dumps({"error": {"message": "rate limited", "type": "rate_limit", "code": "429"}}).encode()
                handler.send_response(429)
                handler.send_header("content-type", "application/json")
                handler.send_header("retry-after", arg or "1")
                handler.send_header("content-length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
            else:
                if kind == "slow":
                    time.sleep(float(arg or 1.0))
                self._complete(handler, captured, kind, arg)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            with self._lock:
                self.disconnects.append(captured.model)

    def _content(self, captured: Captured, kind: str, arg: str = "") -> str:
        if kind == "say":
            return arg
        if kind == "json":
            return json.dumps(self.json_reply)
        if kind == "plan":
            return json.dumps(PLAN)
        if kind == "echo":
            return "echo: " + json.dumps(captured.body.get("messages"), ensure_ascii=False)
        return self.reply

    def _tool_call(self, captured: Captured) -> dict | None:
        tools, choice = captured.body.get("tools"), captured.body.get("tool_choice")
        if not tools:
            return None
        if isinstance(choice, dict):
            name = choice.get("function", {}).get("name")
        elif choice == "required":
            name = tools[0]["function"]["name"]
        else:
            return None
        return {"id": f"call_{uuid.uuid4().hex[:8]}", "type": "function",
                "function": {"name": name, "arguments": json.dumps({"city": "Paris"})}}

    def _complete(self, handler, captured: Captured, kind: str, arg: str = "") -> None:
        body = captured.body
        text = self._content(captured, kind, arg)
        call = self._tool_call(captured)
        prompt = _words(body.get("messages"))
        usage = {"prompt_tokens": prompt, "completion_tokens": len(text.split()) if not call else 7,
                 "total_tokens": 0}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = str(body.get("model"))
        ident = f"chatcmpl-up{uuid.uuid4().hex[:8]}"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if call else text}
            if call:
                message["tool_calls"] = [call]
            handler._json(200, {"id": ident, "object": "chat.completion", "created": int(time.time()),
                                "model": model, "usage": usage,
                                "choices": [{"index": 0, "message": message,
                                             "finish_reason": "tool_calls" if call else "stop"}]})
            return
        self._start_stream(handler)
        base = {"id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def send(choices, **extra):
            self._event(handler, {**base, "choices": choices, **extra})

        send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        if call:
            send([{"index": 0, "delta": {"tool_calls": [{"index": 0, **call}]}, "finish_reason": None}])
        else:
            pieces = text.split(" ")
            for number, piece in enumerate(pieces):
                send([{"index": 0, "delta": {"content": piece + (" " if number < len(pieces) - 1 else "")},
                       "finish_reason": None}])
        send([{"index": 0, "delta": {}, "finish_reason": "tool_calls" if call else "stop"}])
        if (body.get("stream_options") or {}).get("include_usage"):
            send([], usage=usage)
        self._raw(handler, b"data: [DONE]\n\n")
        self._raw(handler, b"")

    def _start_stream(self, handler) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()

    def _raw(self, handler, data: bytes) -> None:
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        handler.wfile.flush()

    def _event(self, handler, body: dict) -> None:
        self._raw(handler, f"data: {json.dumps(body)}\n\n".encode())

    def _hang(self, handler, captured: Captured) -> None:
        """Never answer; record when the caller closes its end."""
        conn = handler.connection
        conn.settimeout(0.2)
        while not self._stop.is_set():
            try:
                if conn.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        handler.close_connection = True
        if not self._stop.is_set():
            with self._lock:
                self.disconnects.append(captured.model)

    def _broken_stream(self, handler, captured: Captured, kind: str, tokens: int) -> None:
        """A stream that starts well and breaks after `tokens` tokens (see the modes)."""
        handler.close_connection = True
        chunked = kind != "partial"
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        if chunked:
            handler.send_header("transfer-encoding", "chunked")
        else:
            handler.send_header("connection", "close")
        handler.end_headers()
        base = {"id": "chatcmpl-broken", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": captured.model}

        def event(body: dict) -> None:
            data = f"data: {json.dumps(body)}\n\n".encode()
            if chunked:
                self._raw(handler, data)
            else:
                handler.wfile.write(data)
                handler.wfile.flush()

        event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        for word in PARTIAL_TEXT.split()[:tokens]:
            event({**base, "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]})
            time.sleep(0.01)
        if kind == "sse-error":
            event({"error": {"message": "upstream overloaded mid-stream", "type": "server_error", "code": 500}})
            self._raw(handler, b"")
        elif kind == "cut":
            handler.wfile.write(b"40\r\ndata: {\"id\"")  # half a chunk, then the connection goes
            handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)

    def _trickle(self, handler, captured: Captured, every_s: float) -> None:
        """A correct answer, one byte at a time: per-read timeouts never fire."""
        handler.close_connection = True
        stream = bool(captured.body.get("stream"))
        if stream:
            base = {"id": "chatcmpl-trickle", "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": captured.model}
            data = "".join(f"data: {json.dumps({**base, 'choices': [choice]})}\n\n" for choice in (
                {"index": 0, "delta": {"role": "assistant", "content": "trickled answer"}, "finish_reason": None},
                {"index": 0, "delta": {}, "finish_reason": "stop"})) + "data: [DONE]\n\n"
        else:
            data = json.dumps({"id": "chatcmpl-trickle", "object": "chat.completion", "created": int(time.time()),
                               "model": captured.model, "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": "trickled answer"}}]})
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream" if stream else "application/json")
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        for byte in data.encode():
            if self._stop.is_set():
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(every_s)

    def _drip(self, handler, captured: Captured, every_s: float) -> None:
        """One token every `every_s` seconds, never finishing (a stream), or a JSON body that never completes."""
        handler.close_connection = True
        if captured.body.get("stream"):
            self._start_stream(handler)
            base = {"id": "chatcmpl-drip", "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": captured.model}
            while not self._stop.is_set():
                self._event(handler, {**base, "choices": [{"index": 0, "delta": {"content": "drip "},
                                                           "finish_reason": None}]})
                time.sleep(every_s)
        else:
            handler.send_response(200)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", "100000")
            handler.end_headers()
            while not self._stop.is_set():
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(every_s)


if __name__ == "__main__":  # a standalone fake in its own process: python -m tests.service_upstream [PORT]
    import sys

    with Upstream(port=int(sys.argv[1]) if len(sys.argv) > 1 else None) as server:
        print(server.url, flush=True)
        threading.Event().wait()


def answers_before_exit(process, url: str, timeout_s: float, poll_s: float) -> bool:
    """Whether `url` answers before `process` exits or `timeout_s` pass (the health wait of every server started
    here)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return True
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(poll_s)


class ServerProcess:
    """A server process a test started: `url` on `self.port`, ready once `health_path` answers, its output in
    `self.log_path` (quoted when it fails to start). Subclasses set `kind`, `health_path` and start it."""

    kind = "server"
    health_path = "/healthz"
    name: str
    port: int
    log_path: Path
    process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout_s: float = 180) -> Self:
        if not answers_before_exit(self.process, f"{self.url}{self.health_path}", timeout_s, poll_s=0.2):
            self.stop()
            raise RuntimeError(f"{self.kind} {self.name!r} did not start:\n{self.log()[-3000:]}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except Exception:  # noqa: BLE001 - a server that ignores SIGTERM is killed
                self.process.kill()
                self.process.wait(timeout=5)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None


class CoeServe(ServerProcess):
    """A real `coe serve` process (python -m coe_router.cli serve) on a free port in 27000-28999.

    `start()` launches it and returns at once (several can start side by side); `wait()` blocks until /healthz
    answers. Its output goes to `<folder>/<name>.log`, quoted when it fails to start.
    """

    kind = "coe serve"

    def __init__(self, config: dict | str | os.PathLike, folder: os.PathLike, name: str = "coe", *,
                 args: tuple[str, ...] = (), env: dict[str, str] | None = None):
        import pathlib

        import yaml

        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        if isinstance(config, dict):
            self.config_path = self.folder / f"{name}.yaml"
            self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        else:
            self.config_path = pathlib.Path(config)
        self.args, self.env = tuple(args), dict(env or {})
        self.port = free_port()
        self.process = None
        self.log_path = self.folder / f"{name}.log"

    def start(self) -> CoeServe:
        import subprocess
        import sys

        env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("LANGSMITH_TRACING", None)  # never traced from the test process's settings; a test's own `env` may
        env.pop("LANGCHAIN_TRACING_V2", None)
        env.update(self.env)
        self._log = self.log_path.open("w")
        command = [sys.executable, "-m", "coe_router.cli", "serve", "--config", str(self.config_path),
                   "--port", str(self.port), *self.args]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        return self

    def __enter__(self) -> Self:
        return self.start().wait()

    def __exit__(self, *exc) -> None:
        self.stop()


def closed_port_url() -> str:
    """A base URL on which nothing listens."""
    return f"http://127.0.0.1:{free_port()}/v1"


@contextlib.contextmanager
def llama_server(folder: os.PathLike, alias: str = "smollm2"):
    """llama.cpp's OpenAI-compatible server on SmolLM2 (tests/integration/openai_expert.py) on a port in
    27000-28999; yields its base URL (.../v1)."""
    import pathlib
    from unittest import mock

    from tests.integration import openai_expert

    with mock.patch.object(openai_expert, "free_port", free_port), \
            openai_expert.llama_cpp_server(pathlib.Path(folder), alias=alias, timeout_s=120) as url:
        yield url


FAULTS = {  # expert -> the fake upstream's behaviour: the faults an operator sees, each with `healthy` as fallback
    "hang": "hang",
    "trickle": "trickle:1",
    "partial": "partial:3",
    "cut": "cut:3",
    "sse_error": "sse-error:3",
    "limited": "limited:50",
    "errors": "status:500",
    "dropped": "close",
}
HEALTHY_TEXT = "The capital of France is Paris."


def fault_config(upstream_url: str, frozen_url: str | None = None, copies: tuple[str, ...] = ("",)) -> dict:
    """A config with an expert per fault (and per suffix in `copies`, each with its own breaker), `healthy` the
    fallback of every route, `other` a healthy expert of another task, `closed` on a port nobody listens on and,
    given a second upstream process, `frozen` on it. Defaults everywhere else: no timeout, retry or breaker set."""
    models = {f"m-{name}{copy}": {"provider": "openai", "model": behaviour, "base_url": upstream_url}
              for name, behaviour in FAULTS.items() for copy in copies}
    models["m-healthy"] = {"provider": "openai", "model": f"say:{HEALTHY_TEXT}", "base_url": upstream_url}
    models["m-other"] = {"provider": "openai", "model": "say:another healthy expert", "base_url": upstream_url}
    for copy in copies:
        models[f"m-closed{copy}"] = {"provider": "openai", "model": "answer", "base_url": closed_port_url()}
        if frozen_url:
            models[f"m-frozen{copy}"] = {"provider": "openai", "model": "answer", "base_url": frozen_url}
    experts = {name[2:]: {"model": name, "style": "plain"} for name in models}
    return {"models": models, "tasks": {"general": "anything", "other": "the other task"}, "experts": experts,
            "task_map": {"general": ["healthy"], "other": ["other"]}, "default_expert": "healthy",
            "classifier": {"kind": "rules", "rules": {"other": ["^OTHER"], "general": ["."]}}}


class UpstreamProcess:
    """The fake upstream in a process of its own, so it can be frozen: `pause()` sends SIGSTOP (the kernel still
    accepts connections, nothing answers: what a stuck server looks like), `resume()` SIGCONT."""

    def __init__(self):
        self.port = free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Self:
        import pathlib
        import subprocess
        import sys

        root = pathlib.Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen([sys.executable, "-m", "tests.service_upstream", str(self.port)], cwd=root,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not answers_before_exit(self.process, f"{self.url}/models", 30, poll_s=0.1):
            raise RuntimeError("the fake upstream process did not start")
        return self

    def pause(self) -> None:
        import signal

        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        import signal

        self.process.send_signal(signal.SIGCONT)

    def __exit__(self, *exc) -> None:
        import signal

        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
