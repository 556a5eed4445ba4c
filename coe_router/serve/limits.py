"""Request bodies bounded in size and in time, before any work is done on them.

A client that promises more bytes than it sends would otherwise hold its connection forever, and a huge body costs
parsing and routing CPU before it is refused. `BodyLimits`, a pure ASGI middleware, reads each body itself:
over `max_bytes` (by its Content-Length or as it arrives) it is a 413 naming the limit, not received within
`timeout_s` a 408, a client gone before it arrived a 499; then the body is handed to the app as if it had just
arrived.
"""

from __future__ import annotations

import asyncio
import json
import time


class BodyLimits:
    def __init__(self, app, *, max_bytes: int, timeout_s: float):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, 413, f"the request body ({int(declared)} bytes) is larger than "
                                                 f"--max-body-bytes {self.max_bytes}", "request_too_large")
        deadline = time.monotonic() + self.timeout_s
        body, more = bytearray(), True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                return await self._refuse(send, 408, f"the request body did not arrive within --body-timeout-s "
                                                     f"{self.timeout_s:g}", "request_timeout")
            if message["type"] == "http.disconnect":  # gone before its body: a 499 nobody reads, not a missing
                return await self._refuse(send, 499, "the client went away before its request body arrived",
                                          "cancelled")  # response (which the app's guard would log as a 500)
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._refuse(send, 413, f"the request body is larger than --max-body-bytes "
                                                     f"{self.max_bytes}", "request_too_large")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: the client's disconnect, as usual

        return await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send, status: int, message: str, code: str) -> None:
        data = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": code,
                                     "param": None}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": data})
