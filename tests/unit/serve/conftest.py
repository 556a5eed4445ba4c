"""An app of the service on a real socket in this process (uvicorn in a thread), stopped after the test."""

import threading
import time

import pytest
import uvicorn

from tests.service_upstream import free_port


@pytest.fixture
def run_app():
    servers = []

    def start(app) -> str:
        """Serve `app` on 127.0.0.1; returns its base URL once it accepts connections."""
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(5)
