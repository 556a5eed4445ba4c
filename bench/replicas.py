"""One `coe serve` replica against two, on one PostgreSQL and one Chroma server, all on this machine.

    python -m bench.replicas                         # 32 requests per setting, 4 at a time
    python -m bench.replicas --requests 48 --concurrency 6 --json out.json

Both settings run the embedded default's local experts (llama.cpp, in each replica's process) with short answers,
behind `persistence.checkpointer: postgres` and `retriever.chroma_url`, and send the same questions (labelled
examples, so none pauses for review) round-robin to the replicas. Reported: requests/s of each setting and
two/one. Every replica shares the machine's cores with the other, with PostgreSQL and with Chroma: on 2 cores two
replicas cannot double the rate of one (the experts' generation is CPU-bound); on a machine with a core budget per
replica, or with experts behind a GPU server, the ratio is what the stateless design buys.

The process helpers (PostgreSQL from the `pgserver` package, `chroma run`, `coe serve` subprocesses) are the ones
tests/integration/test_replicas.py uses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import yaml

QUIET_ENV = {"ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
             "TOKENIZERS_PARALLELISM": "false", "LANGGRAPH_NO_VERSION_CHECK": "true"}


def free_port() -> int:
    """A port on 127.0.0.1 the system has just handed out (free when the caller binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@contextlib.contextmanager
def postgres_server(folder: Path | None = None) -> Iterator[str]:
    """A real PostgreSQL (binaries shipped by the `pgserver` package; a Unix socket, no TCP port); yields its
    connection string, stops it and removes its data on exit.

    The data folder defaults to a new one directly under the system's temporary folder: run as root, pgserver
    starts the server as an unprivileged user, who must be able to traverse every parent folder (pytest's own
    temporary root is private to its owner)."""
    import shutil
    import tempfile
    import warnings

    data = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="coe-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR on CI machines
        import pgserver

        server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        if folder is None:
            shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def chroma_server(folder: Path, log_dir: Path, timeout_s: float = 60) -> Iterator[str]:
    """`chroma run --path folder --port P` (the server shipped with chromadb); yields http://127.0.0.1:P."""
    import httpx

    port = free_port()
    chroma = Path(sys.executable).with_name("chroma")
    log_path = log_dir / f"chroma-{port}.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([str(chroma), "run", "--path", str(folder), "--host", "127.0.0.1", "--port",
                                   str(port)], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **QUIET_ENV})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chroma run did not start: {_tail(log_path)}")
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def replica_config(base: dict, folder: Path, chroma_url: str, *, collection: str, review_unknown: bool,
                   min_confidence: float = 0.0, max_tokens: int = 24, n_threads: int | None = None) -> Path:
    """The embedded default made shareable: checkpoints in PostgreSQL ($COE_POSTGRES_DSN), examples on the Chroma
    server, the knn classifier (no model call to classify), short answers; `n_threads` caps each local model's
    llama.cpp threads (several processes sharing 2 cores each spinning 2 threads slow one another down many times
    over). `base` is the embedded default with its relative paths made absolute."""
    data = json.loads(json.dumps(base))
    data["retriever"].pop("persist_dir", None)
    data["retriever"].update(chroma_url=chroma_url, collection=collection)
    data["persistence"] = {"checkpointer": "postgres", "dsn_env": "COE_POSTGRES_DSN", "review_unknown": review_unknown}
    data["classifier"] = {"kind": "knn", "min_confidence": min_confidence}
    data.pop("planner", None)  # review pauses work in mode single; a planner would add the plan graph
    for model in data["models"].values():
        model["max_tokens"] = max_tokens
        if n_threads is not None:
            model["n_threads"] = n_threads
    path = folder / f"{collection}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/v1/models", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def coe_replicas(config: Path, count: int, dsn: str, log_dir: Path, timeout_s: float = 240) -> Iterator[list[str]]:
    """`count` separate `coe serve` processes on one config (python -m coe_router.cli serve); yields their base
    URLs once every one answers, stops them on exit."""
    env = {**os.environ, **QUIET_ENV, "COE_POSTGRES_DSN": dsn}
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "COE_API_TOKEN"):
        env.pop(name, None)
    servers, urls, logs = [], [], []
    try:
        for _ in range(count):
            port = free_port()
            logs.append(log_dir / f"coe-serve-{port}.log")
            with logs[-1].open("w") as log:
                servers.append(subprocess.Popen(
                    [sys.executable, "-m", "coe_router.cli", "serve", "--config", str(config), "--port", str(port)],
                    stdout=log, stderr=subprocess.STDOUT, env=env))
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + timeout_s
        waiting = list(range(count))
        while waiting:
            for i in list(waiting):
                if servers[i].poll() is not None:
                    raise RuntimeError(f"coe serve exited with {servers[i].returncode}: {_tail(logs[i])}")
                if _ready(urls[i]):
                    waiting.remove(i)
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"coe serve did not start in {timeout_s:.0f} s: {_tail(logs[waiting[0]])}")
            time.sleep(0.3)
        yield urls
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)


def chat(client, url: str, text: str):
    """One OpenAI-style chat completion on model `coe` (an httpx client, sync or async: returns what post returns)."""
    return client.post(f"{url}/v1/chat/completions", json={"model": "coe", "messages": [{"role": "user",
                                                                                          "content": text}]})


async def _drive(urls: list[str], questions: list[str], concurrency: int) -> dict:
    """Send `questions` round-robin to `urls`, `concurrency` at a time; wall time, statuses, latencies."""
    import asyncio

    import httpx

    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async with httpx.AsyncClient(timeout=300) as client:
        async def one(i: int, text: str) -> None:
            async with semaphore:
                t = time.perf_counter()
                reply = await chat(client, urls[i % len(urls)], text)
                latencies.append(time.perf_counter() - t)
                statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one(i, q) for i, q in enumerate(questions)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(questions), "wall_s": round(wall, 2), "rps": round(len(questions) / wall, 3),
            "p50_s": round(latencies[len(latencies) // 2], 3), "p95_s": round(latencies[int(len(latencies) * 0.95) - 1], 3),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}}


def _base_config() -> dict:
    """The embedded default with its relative files made absolute (it is rewritten into a temporary folder)."""
    from coe_router.config import default_config_path

    source = default_config_path()
    data = yaml.safe_load(source.read_text())
    data["retriever"]["examples"] = str(source.parent / data["retriever"]["examples"])
    data["task_map"]["from"] = str(source.parent / data["task_map"]["from"])
    return data


def run_replicas(requests: int = 32, concurrency: int = 4, max_tokens: int = 16, warmup: int = 4,
                 log=lambda message: None) -> dict:
    """requests/s of one replica and of two (same questions, same concurrency), and two/one."""
    import asyncio
    import tempfile

    from coe_router.retrieval.store import read_examples

    base = _base_config()
    examples = read_examples(base["retriever"]["examples"])
    rng = random.Random(0)
    questions = [e.question for e in rng.sample(examples, min(requests, len(examples)))]
    while len(questions) < requests:
        questions.append(rng.choice(examples).question)
    results: dict = {"settings": {"requests": requests, "concurrency": concurrency, "max_tokens": max_tokens,
                                  "cpus": os.cpu_count(), "experts": "embedded default (llama.cpp, in-process)"},
                     "load_avg_1m": {"start": round(os.getloadavg()[0], 2)}}
    with tempfile.TemporaryDirectory(prefix="coe-replicas-") as tmp:
        folder = Path(tmp)
        (folder / "logs").mkdir()
        log("starting PostgreSQL (pgserver) and a Chroma server")
        with postgres_server() as dsn, chroma_server(folder / "chroma", folder / "logs") as chroma_url:
            log("checkpoint cost per run: none, memory, sqlite, postgres")
            results["checkpoint_ms"] = checkpoint_costs(dsn, folder)
            config = replica_config(base, folder, chroma_url, collection="bench-replicas", review_unknown=False,
                                    max_tokens=max_tokens)
            for count in (1, 2):
                log(f"{count} replica(s): starting")
                t = time.perf_counter()
                with coe_replicas(config, count, dsn, folder / "logs") as urls:
                    started = round(time.perf_counter() - t, 1)
                    asyncio.run(_drive(urls, questions[:warmup * count], concurrency))  # model pages, first calls
                    log(f"{count} replica(s): {requests} requests, {concurrency} at a time")
                    row = asyncio.run(_drive(urls, questions, concurrency))
                results[f"replicas_{count}"] = {**row, "start_s": started}
    results["load_avg_1m"]["end"] = round(os.getloadavg()[0], 2)
    one, two = results["replicas_1"]["rps"], results["replicas_2"]["rps"]
    results["ratio_two_over_one"] = round(two / one, 3) if one else None
    return results


def checkpoint_costs(dsn: str, folder: Path, runs: int = 100) -> dict:
    """Milliseconds per routed run by checkpointer (none, memory, sqlite, postgres), the expert an instant fake and
    the examples in memory, so the difference is what saving the run's checkpoints costs. Sequential runs on the
    service's async path (ainvoke), each on a new thread id."""
    import asyncio

    from coe_router import build_graph, load_config
    from coe_router.persistence import open_async_checkpointer
    from coe_router.retrieval.store import ExampleStore, chroma_collection
    from tests.fakes import BagOfWordsEncoder, ScriptedChat
    from tests.unit.conftest import EXAMPLES, write_config

    store = ExampleStore(chroma_collection("bench-checkpoints", None), BagOfWordsEncoder())
    store.add(EXAMPLES)
    models = {name: ScriptedChat(reply=lambda prompt: "ok", seen=[])
              for name in ("math-model", "code-model", "general-model")}
    os.environ["COE_POSTGRES_DSN"] = dsn

    async def per_run(kind: str) -> float:
        config = load_config(write_config(folder, persistence={"checkpointer": kind, "path": str(folder / "c.sqlite")}))
        async with open_async_checkpointer(config) as saver:
            graph = build_graph(config, models=models, store=store, checkpointer=saver)
            for i in range(5):
                await graph.ainvoke({"query": "solve 2x + 3 = 7"}, {"configurable": {"thread_id": f"w-{kind}-{i}"}})
            started = time.perf_counter()
            for i in range(runs):
                await graph.ainvoke({"query": "solve 2x + 3 = 7"}, {"configurable": {"thread_id": f"{kind}-{i}"}})
            return round((time.perf_counter() - started) / runs * 1000, 2)

    return {kind: asyncio.run(per_run(kind)) for kind in ("none", "memory", "sqlite", "postgres")}


def format_results(results: dict) -> str:
    s = results["settings"]
    lines = [(f"coe serve replicas on one PostgreSQL + one Chroma server ({s['cpus']} CPUs, {s['requests']} requests, "
              f"concurrency {s['concurrency']}, max_tokens {s['max_tokens']}, {s['experts']})")]
    for count in (1, 2):
        row = results[f"replicas_{count}"]
        lines.append(f"  {count} replica{'s' if count > 1 else ' '}: {row['rps']:.2f} req/s  p50 {row['p50_s']:.2f} s  "
                     f"p95 {row['p95_s']:.2f} s  statuses {row['statuses']}  (start {row['start_s']} s)")
    lines.append(f"  two / one: {results['ratio_two_over_one']}  (1-minute load average {results['load_avg_1m']['start']} "
                 f"at the start, {results['load_avg_1m']['end']} at the end)")
    if "checkpoint_ms" in results:
        costs = ", ".join(f"{kind} {ms} ms" for kind, ms in results["checkpoint_ms"].items())
        lines.append(f"  one routed run (instant fake expert), by checkpointer: {costs}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16, help="answer length of the local experts")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    results = run_replicas(args.requests, args.concurrency, args.max_tokens,
                           log=lambda m: print(f"[bench.replicas {time.strftime('%H:%M:%S')}] {m}", file=sys.stderr,
                                               flush=True))
    print(format_results(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
