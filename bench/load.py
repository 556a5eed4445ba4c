"""Load check of the OpenAI-compatible service (not a test): N concurrent chat requests to `coe serve`'s app on
127.0.0.1 with instant fake experts, so what is measured is the service and the routing, not a model.

Reports requests/s, p50/p95 latency, and that every request got exactly one response (each request carries a
unique marker that its answer must echo; a lost, duplicated or crossed answer is counted).

    python -m bench.load [--requests 400] [--concurrency 32] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coe_router import build_graph, load_config  # noqa: E402
from coe_router.retrieval.encoder import load_encoder  # noqa: E402
from coe_router.retrieval.store import ExampleStore, chroma_collection, read_examples  # noqa: E402
from coe_router.serve.app import create_app  # noqa: E402
from tests.fakes import ScriptedChat  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "configs" / "local-examples.jsonl"


def _config(folder: Path):
    tasks = sorted({e.task for e in read_examples(EXAMPLES)})
    data = {
        "models": {"echo": {"provider": "openai", "model": "echo", "base_url": "http://127.0.0.1:9/v1"}},
        "tasks": {t: t for t in tasks},
        "experts": {"echo-expert": {"model": "echo"}},
        "task_map": {t: "echo-expert" for t in tasks},
        "classifier": {"kind": "knn"},
    }
    path = folder / "load.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def _serve(app) -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}"


async def _load(url: str, n: int, concurrency: int) -> dict:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    answers: dict[int, list[str]] = {i: [] for i in range(n)}
    errors = 0
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(i: int) -> None:
            nonlocal errors
            async with gate:
                started = time.perf_counter()
                response = await client.post(f"{url}/v1/chat/completions", json={
                    "model": "coe", "messages": [{"role": "user", "content": f"request {i}: what is {i} + {i}?"}]})
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1
                    return
                answers[i].append(response.json()["choices"][0]["message"]["content"])

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - started
    exactly_one = sum(1 for i, got in answers.items() if len(got) == 1 and f"request {i}:" in got[0])
    latencies.sort()
    return {
        "requests": n, "concurrency": concurrency, "wall_s": round(wall, 2),
        "requests_per_s": round(n / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1),
        "answered_exactly_once": exactly_one, "errors": errors, "lost_or_crossed": n - exactly_one,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = _config(Path(folder))
        store = ExampleStore(chroma_collection("load", Path(folder) / "chroma"), load_encoder())
        store.add(read_examples(EXAMPLES))
        echo = ScriptedChat(reply=lambda prompt: prompt.split("\n")[0], seen=[])
        graph = build_graph(config, models={"echo": echo}, store=store)
        server, url = _serve(create_app(graph, token_env=None))
        try:
            result = asyncio.run(_load(url, args.requests, args.concurrency))
        finally:
            server.should_exit = True
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['requests']} requests, concurrency {result['concurrency']}: {result['requests_per_s']} req/s, "
          f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms")
    print(f"answered exactly once: {result['answered_exactly_once']}/{result['requests']}, "
          f"errors {result['errors']}, lost or crossed {result['lost_or_crossed']}")


if __name__ == "__main__":
    main()
