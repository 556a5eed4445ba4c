"""A local stand-in for the LangSmith API that captures the runs langsmith's Client sends, so tests read a trace the
way LangSmith would store it, with nothing leaving 127.0.0.1.

It answers `GET /info` and accepts every way the client sends runs:

- `POST /runs/multipart` (the default): multipart/form-data, one part per run operation (`post.<id>` or
  `patch.<id>` holds the run minus its big fields, `post.<id>.extra`, `.inputs`, `.outputs`, `.events`, `.error`,
  `.serialized` hold those), zstd-compressed (`Content-Encoding: zstd`) when the server's
  `instance_flags.zstd_compression_enabled` is on;
- `POST /runs/batch`: JSON `{"post": [...], "patch": [...]}` (when `/info` says `use_multipart_endpoint: false`);
- `POST /runs` and `PATCH /runs/<id>` (a client without auto-batching).

`runs()` folds the operations into each run's final state the way LangSmith does: a run's create, then its
updates' non-null fields on top (the client itself merges a create and an update queued together).
"""

from __future__ import annotations

import io
import json
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

PORTS = range(25000, 26000)
INGEST_MODES = ("multipart", "batch", "zstd")
RUN_FIELDS = ("inputs", "outputs", "events", "extra", "error", "serialized")


def _info(ingest: str) -> dict:
    return {
        "version": "0.10.0",
        "batch_ingest_config": {
            "use_multipart_endpoint": ingest != "batch",
            "scale_up_qsize_trigger": 1000,
            "scale_up_nthreads_limit": 1,
            "scale_down_nempty_trigger": 4,
            "size_limit": 100,
            "size_limit_bytes": 20_971_520,
        },
        "instance_flags": {"zstd_compression_enabled": ingest == "zstd"},
    }


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        body = b"".join(chunks)
    else:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    if (handler.headers.get("Content-Encoding") or "").lower() == "zstd":
        import zstandard

        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)) as reader:
            body = reader.read()
    return body


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """(name, payload) of each part of a multipart/form-data body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise ValueError(f"no boundary in {content_type!r}")
    delimiter = b"--" + match.group(1).encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, payload = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head)
        if name:
            parts.append((name.group(1).decode(), payload.removesuffix(b"\r\n")))
    return parts


def multipart_operations(parts: list[tuple[str, bytes]]) -> list[tuple[str, dict]]:
    """Reassemble `post.<id>` / `patch.<id>[.<field>]` parts into (operation, run dict) pairs, in order."""
    ops: dict[tuple[str, str], dict] = {}
    for name, payload in parts:
        pieces = name.split(".")
        if pieces[0] not in ("post", "patch"):
            continue  # attachments and feedback
        op = ops.setdefault((pieces[0], pieces[1]), {"id": pieces[1]})
        value = json.loads(payload) if payload else None
        if len(pieces) == 2:
            op.update(value or {})
        elif pieces[2] in RUN_FIELDS:
            op[pieces[2]] = value
    return [(operation, run) for (operation, _), run in ops.items()]


class LangSmithCapture:
    """`with LangSmithCapture() as server: client = server.client()`; then `server.runs()` after a flush."""

    def __init__(self, ingest: str = "multipart"):
        if ingest not in INGEST_MODES:
            raise ValueError(f"ingest must be one of {INGEST_MODES}")
        self.ingest = ingest
        self.requests: list[tuple[str, str, str]] = []
        """(method, path, Content-Encoding) of every request, in order."""
        self.operations: list[tuple[str, dict]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- server ---------------------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        capture = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status: int, payload: Any = None) -> None:
                data = json.dumps(payload if payload is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                path = self.path.split("?")[0].rstrip("/")
                body = _read_body(self) if method in ("POST", "PATCH", "PUT") else b""
                with capture._lock:
                    capture.requests.append((method, path, self.headers.get("Content-Encoding") or ""))
                try:
                    status, payload = capture._dispatch(method, path, body, self.headers.get("Content-Type") or "")
                except Exception as exc:  # noqa: BLE001 - recorded for the test, answered as a server error
                    with capture._lock:
                        capture.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
                    status, payload = 500, {"detail": str(exc)}
                self._answer(status, payload)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PATCH(self):
                self._handle("PATCH")

        ports = list(PORTS)
        random.shuffle(ports)
        for port in ports:
            try:
                self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free port in 25000-25999")
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="langsmith-capture", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "use LangSmithCapture as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _record(self, operations: list[tuple[str, dict]]) -> None:
        with self._lock:
            self.operations.extend(operations)

    def _dispatch(self, method: str, path: str, body: bytes, content_type: str) -> tuple[int, Any]:
        if method == "GET" and path == "/info":
            return 200, _info(self.ingest)
        if method == "POST" and path == "/runs/multipart":
            self._record(multipart_operations(parse_multipart(body, content_type)))
            return 202, {}
        if method == "POST" and path == "/runs/batch":
            batch = json.loads(body)
            self._record([(op, run) for op in ("post", "patch") for run in batch.get(op) or []])
            return 202, {}
        if method == "POST" and path == "/runs":
            self._record([("post", json.loads(body))])
            return 202, {}
        if method == "PATCH" and path.startswith("/runs/"):
            self._record([("patch", {**json.loads(body), "id": path.removeprefix("/runs/")})])
            return 202, {}
        return 404, {"detail": f"not served here: {method} {path}"}

    # --- what was captured ----------------------------------------------------------------------------------------

    def client(self, **kwargs):
        """A langsmith Client that sends to this server only."""
        from langsmith import Client

        kwargs.setdefault("tracing_mode", "langsmith")
        return Client(api_url=self.url, api_key="test", **kwargs)

    def runs(self) -> dict[str, dict]:
        """Each run's final state by id: its create, then every update's non-null fields on top."""
        with self._lock:
            operations = list(self.operations)
        runs: dict[str, dict] = {}
        for operation, run in operations:
            if operation == "post":
                runs[str(run["id"])] = {**runs.get(str(run["id"]), {}), **run}
        for operation, run in operations:
            if operation == "patch":
                merged = runs.setdefault(str(run["id"]), {})
                merged.update({key: value for key, value in run.items() if value is not None})
        return runs

    def roots(self) -> list[dict]:
        return [run for run in self.runs().values() if not run.get("parent_run_id")]

    def named(self, name: str) -> list[dict]:
        return [run for run in self.runs().values() if run.get("name") == name]
